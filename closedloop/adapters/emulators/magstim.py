"""Emulator of a Magstim 200²/BiStim²/Rapid² on its RS-232 remote-control port.

Protocol facts from the public description (docs/devices.md): a command byte,
ASCII data, then a checksum byte ``(~sum) & 0xFF``; the reply echoes the
command byte, carries the instrument status (and, on a Rapid², the rTMS
status), then a checksum; ``?`` in the data position means invalid data,
``S`` a conflict with the current settings, a bare ``?`` an unknown command.
Details not confirmed against Magstim's own manual, and so only as good as
this emulator: the reply to a bad checksum (a bare ``?``), the ``J@`` layout
(power 3 digits, rate 4 digits in 0.1 Hz, pulses and duration per the
firmware's digit counts) and the time after which an armed unit that is no
longer polled disarms itself (``armed_timeout_s``, default 1 s).
"""

from __future__ import annotations

import time

from closedloop.adapters.crc import magstim_crc
from closedloop.adapters.emulators.base import StreamEmulator, serial_demo_parser, serve_serial_demo


def _framed(body: bytes) -> bytes:
    return body + bytes([magstim_crc(body)])


class MagstimEmulator(StreamEmulator):
    """A Magstim stimulator's remote-control side.

    Parameters
    ----------
    model : {"rapid2", "200"}
        ``rapid2`` adds the rTMS status byte and the train commands.
    armed_timeout_s : float
        An armed unit disarms itself when no command arrives for this long.
    charge_s : float
        Arm (or end of a train) → ready to fire.
    pulses_digits, duration_digits : int
        ASCII digits of the ``D`` (pulses) and ``[`` (train duration) commands.

    Attributes
    ----------
    trains : list of (time, power_pct, rate_Hz, pulses)
        Every train (or single pulse) fired.
    auto_disarms : int
        Times the unit disarmed itself because polling stopped.
    """

    def __init__(
        self,
        model: str = "rapid2",
        armed_timeout_s: float = 1.0,
        charge_s: float = 0.05,
        pulses_digits: int = 4,
        duration_digits: int = 3,
    ) -> None:
        super().__init__()
        if model not in ("rapid2", "200"):
            raise ValueError("model must be 'rapid2' or '200'")
        self.model = model
        self.armed_timeout_s = armed_timeout_s
        self.charge_s = charge_s
        self.data_len = {ord("Q"): 1, ord("R"): 1, ord("J"): 1, ord("E"): 1, ord("@"): 3}
        if model == "rapid2":
            self.data_len.update({ord("B"): 4, ord("D"): pulses_digits, ord("["): duration_digits})
        self.pulses_digits, self.duration_digits = pulses_digits, duration_digits
        self.remote = False
        self.armed = False
        self.ready = False
        self.power = 30
        self.rate_dHz = 10
        self.pulses = 1
        self.duration_ds = 10
        self.trains: list[tuple[float, int, float, int]] = []
        self.auto_disarms = 0
        self.last_rx = time.monotonic()
        self._ready_at = float("inf")
        self._train_end = float("-inf")

    # -- framing -------------------------------------------------------------------
    def parse(self, buf: bytearray) -> list[bytes]:
        """Split complete messages off the front of ``buf``; return them."""
        out = []
        while buf:
            n = self.data_len.get(buf[0])
            if n is None:  # unknown command byte: answered by a bare '?'
                out.append(bytes(buf[:1]))
                del buf[:1]
                continue
            if len(buf) < n + 2:
                break
            out.append(bytes(buf[: n + 2]))
            del buf[: n + 2]
        return out

    def _instr(self) -> int:
        return (not self.armed) << 0 | self.armed << 1 | self.ready << 2 | 1 << 3 | self.remote << 7

    def _rapid(self, now: float) -> int:
        in_train = now < self._train_end
        return in_train << 1 | (self.armed and not self.ready) << 2 | (self.pulses <= 1) << 3 | 1 << 4 | 1 << 5

    def _status(self, cmd: int) -> bytes:
        body = bytes([cmd, self._instr()])
        if self.model == "rapid2":
            body += bytes([self._rapid(time.monotonic())])
        return _framed(body)

    def _refuse(self, cmd: int, code: bytes) -> bytes:
        return _framed(bytes([cmd]) + code)

    # -- behaviour --------------------------------------------------------------------
    def execute(self, msg: bytes) -> bytes | None:
        """Carry out one message as the device would; return the reply."""
        now = time.monotonic()
        self.last_rx = now
        if len(msg) == 1 or magstim_crc(msg[:-1]) != msg[-1]:
            return b"?"
        cmd, data = msg[0], msg[1:-1]
        c = chr(cmd)
        if c == "Q":
            self.remote = True
            return self._status(cmd)
        if c == "R":
            self.remote = False
            self._disarm()
            return self._status(cmd)
        if c == "J":
            return self._params(cmd)
        if not self.remote:
            return self._refuse(cmd, b"S")
        if c == "E":
            return self._arm_fire(cmd, data, now)
        if not data.isdigit():
            return self._refuse(cmd, b"?")
        value = int(data)
        if c == "@":
            if value > 100:
                return self._refuse(cmd, b"?")
            self.power = value
        elif c == "B":
            if not 1 <= value <= 1000:  # 0.1-100 Hz
                return self._refuse(cmd, b"?")
            self.rate_dHz = value
        elif c == "D":
            if value < 1:
                return self._refuse(cmd, b"?")
            self.pulses = value
        elif c == "[":
            if value < 1:
                return self._refuse(cmd, b"?")
            self.duration_ds = value
        return self._status(cmd)

    def _arm_fire(self, cmd: int, data: bytes, now: float) -> bytes:
        if data == b"B":
            if not self.armed:
                self.armed = True
                self.ready = False
                self._ready_at = now + self.charge_s
        elif data == b"A":
            self._disarm()
        elif data == b"H":
            if not (self.armed and self.ready):
                return self._refuse(cmd, b"S")
            rate = self.rate_dHz / 10.0
            n = self.pulses if self.model == "rapid2" else 1
            self.trains.append((now, self.power, rate, n))
            self._train_end = now + (n - 1) / rate if n > 1 else now
            self.ready = False
            self._ready_at = self._train_end + self.charge_s
        else:
            return self._refuse(cmd, b"?")
        return self._status(cmd)

    def _params(self, cmd: int) -> bytes:
        body = bytes([cmd, self._instr()])
        if self.model == "rapid2":
            body += bytes([self._rapid(time.monotonic())])
            body += (
                f"{self.power:03d}{self.rate_dHz:04d}{self.pulses:0{self.pulses_digits}d}"
                f"{self.duration_ds:0{self.duration_digits}d}"
            ).encode()
        else:
            body += f"{self.power:03d}".encode()
        return _framed(body)

    def _disarm(self) -> None:
        self.armed = False
        self.ready = False
        self._ready_at = float("inf")
        self._train_end = min(self._train_end, time.monotonic())

    def error_reply(self, msg: bytes) -> bytes | None:
        """Return the device's refusal of ``msg`` (the command is not carried out)."""
        return self._refuse(msg[0], b"S")

    def tick(self, now: float) -> None:
        """Advance time-driven state to ``now``."""
        if self.armed and now - self.last_rx > self.armed_timeout_s:
            self._disarm()
            self.auto_disarms += 1
        if self.armed and not self.ready and now >= self._ready_at:
            self.ready = True

    @property
    def safe(self) -> bool:
        """Disarmed (the Magstim's safe state)."""
        return not self.armed


def main() -> None:
    """Run the emulator from the command line (for demos)."""
    ap = serial_demo_parser("Magstim remote-control emulator (for demos)")
    ap.add_argument("--model", default="rapid2", choices=["rapid2", "200"])
    args = ap.parse_args()
    serve_serial_demo(MagstimEmulator(model=args.model), "Magstim", args.tcp)


if __name__ == "__main__":
    main()
