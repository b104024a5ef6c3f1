"""Emulator of a MagVenture MagPro stimulator on its RS-232 port (38400 baud).

Protocol facts (docs/devices.md, public description of the MAGIC toolbox):
frames ``0xFE, LEN, CMD, payload…, CRC8, 0xFF`` where LEN counts CMD and
payload and CRC8 is Dallas/Maxim over CMD and payload. Commands: 0x00
status, 0x01 amplitude (A, or A and B, in %), 0x02 enable (1) / disable
(0), 0x03 fire, 0x04 start train, 0x06 train settings (rate×10, pulses,
trains, ITI×10; big-endian u16 each).

Reply layouts — taken from how that description parses replies, not
confirmed against MagVenture's manual, so only as good as this emulator —:
status ``FE 09 00 mode serial×3 temperature coil ampA ampB CRC FF``; other
commands ``FE 04 CMD ampA ampB mode CRC FF``, where the mode byte carries
model (bits 7-5), enabled (bit 4), waveform (bits 3-2) and mode (bits 1-0).
A command the unit does not carry out (the ``"error"`` fault) is answered
with the unchanged state, so the adapter's read-back check catches it.
"""

from __future__ import annotations

import struct
import time

from closedloop.adapters.crc import crc8_maxim
from closedloop.adapters.emulators.base import StreamEmulator, serial_demo_parser, serve_serial_demo


def magpro_frame(cmd: int, payload: bytes = b"") -> bytes:
    """``FE LEN CMD payload CRC FF``."""
    body = bytes([cmd]) + payload
    return bytes([0xFE, len(body)]) + body + bytes([crc8_maxim(body), 0xFF])


class MagProEmulator(StreamEmulator):
    """A MagPro's serial-port side.

    Attributes
    ----------
    pulses : list of (time, amplitude_pct, kind)
        Every single pulse (``"single"``) or train start (``"train"``).
    train : tuple
        Last train settings ``(rate_Hz, pulses, trains, iti_s)``.
    """

    def __init__(self, model_bits: int = 1) -> None:
        super().__init__()
        self.model_bits = model_bits  # 1 = X100 in the public description
        self.enabled = False
        self.amp_a = 0
        self.amp_b = 0
        self.train = (1.0, 1, 1, 1.0)
        self.pulses: list[tuple[float, int, str]] = []
        self.bad_frames = 0

    def parse(self, buf: bytearray) -> list[bytes]:
        """Split complete messages off the front of ``buf``; return them."""
        out = []
        while buf:
            if buf[0] != 0xFE:  # resynchronise on the start byte
                del buf[:1]
                self.bad_frames += 1
                continue
            if len(buf) < 2:
                break
            total = buf[1] + 4
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    def _mode(self) -> int:
        return (self.model_bits & 7) << 5 | self.enabled << 4 | 1 << 2  # biphasic, standard mode

    def _reply(self, cmd: int) -> bytes:
        if cmd == 0x00:
            payload = bytes([self._mode(), 0x01, 0x02, 0x03, 25, 0x40, self.amp_a, self.amp_b])
            return magpro_frame(0x00, payload)
        return magpro_frame(cmd, bytes([self.amp_a, self.amp_b, self._mode()]))

    def execute(self, msg: bytes) -> bytes | None:
        """Carry out one message as the device would; return the reply."""
        body = msg[2:-2]
        if msg[-1] != 0xFF or not body or crc8_maxim(body) != msg[-2]:
            self.bad_frames += 1
            return None  # a frame with a bad checksum is ignored (no reply)
        cmd, payload = body[0], body[1:]
        now = time.monotonic()
        if cmd == 0x01 and payload:
            if any(v > 100 for v in payload):
                return self._reply(cmd)  # out of range: not applied
            self.amp_a = payload[0]
            if len(payload) > 1:
                self.amp_b = payload[1]
        elif cmd == 0x02 and payload:
            self.enabled = payload[0] == 1
        elif cmd == 0x03:
            if self.enabled and self.amp_a > 0:
                self.pulses.append((now, self.amp_a, "single"))
        elif cmd == 0x04:
            if self.enabled and self.amp_a > 0:
                self.pulses.append((now, self.amp_a, "train"))
        elif cmd == 0x06 and len(payload) == 8:
            rate, n, trains, iti = struct.unpack(">4H", payload)
            self.train = (rate / 10.0, n, trains, iti / 10.0)
        return self._reply(cmd)

    def error_reply(self, msg: bytes) -> bytes | None:
        """Return the device's refusal of ``msg`` (the command is not carried out)."""
        body = msg[2:-2]
        return self._reply(body[0] if body else 0)

    def corrupt(self, reply: bytes) -> bytes:
        """Return ``reply`` with a broken checksum (fault injection)."""
        return reply[:-2] + bytes([(reply[-2] + 1) & 0xFF, 0xFF])

    @property
    def safe(self) -> bool:
        """Disabled (the MagPro's safe state)."""
        return not self.enabled


def main() -> None:
    """Run the emulator from the command line (for demos)."""
    ap = serial_demo_parser("MagVenture MagPro serial emulator (for demos)")
    args = ap.parse_args()
    serve_serial_demo(MagProEmulator(), "MagPro", args.tcp)


if __name__ == "__main__":
    main()
