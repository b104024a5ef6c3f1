"""MagVenture MagPro (R30/X100) over its RS-232 port.

Written from the public protocol description (docs/devices.md): 38400 baud 8N1;
frames ``0xFE, LEN, CMD, payload…, CRC8, 0xFF`` where LEN counts CMD and
payload and CRC8 is Dallas/Maxim (x⁸+x⁵+x⁴+1) over CMD and payload
(:func:`~closedloop.adapters.crc.crc8_maxim`).

=======  =============================================================
``0x00``  status
``0x01``  amplitude A (and B) in % of maximum output
``0x02``  enable (1) / disable (0)
``0x03``  fire one pulse
``0x04``  start the programmed train
``0x06``  train settings: rate×10, pulses, trains, ITI×10 (u16, MSB first)
=======  =============================================================

Every setting is read back from the reply (amplitude, enabled bit) and a
mismatch is an error reply; fire and start-train are never retried. The
reply layouts are those of the public description (see
:mod:`closedloop.adapters.emulators.magpro`) and need checking on a real
unit. The status poll every ``heartbeat_s`` (1 s) is closedloop's link check,
not a requirement of the MagPro.

Intensities arrive in %MT and are set in %MSO with the participant's
motor threshold (:class:`~closedloop.adapters.motor_threshold.MotorThresholdMixin`);
arm = enable, disarm / emergency stop / train abort = disable.

``[adapter_options]``: ``port``, ``baudrate`` (38400), ``heartbeat_s`` (1.0),
``motor_threshold_pct_mso``, plus those of :class:`~closedloop.adapters.threaded.ThreadedAdapter`.
"""

from __future__ import annotations

import struct
from typing import Any

from closedloop.adapters.base import DeviceFault
from closedloop.adapters.crc import crc8_maxim
from closedloop.adapters.serial_rtms import SerialRTMSAdapter
from closedloop.adapters.transport import GarbledReply
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command

STATUS, AMPLITUDE, ENABLE, FIRE, START_TRAIN, TRAIN_SETTINGS = 0x00, 0x01, 0x02, 0x03, 0x04, 0x06


def frame(cmd: int, payload: bytes = b"") -> bytes:
    """One MagPro frame: ``FE LEN CMD payload CRC8 FF``."""
    body = bytes([cmd]) + payload
    return bytes([0xFE, len(body)]) + body + bytes([crc8_maxim(body), 0xFF])


class MagProAdapter(SerialRTMSAdapter):
    """Drive a MagVenture MagPro (rTMS) through its serial protocol."""

    adapter_name = "magpro"
    default_baudrate = 38400
    armed_word = "enabled"
    lost_link_advice = "disable the unit at its front panel"

    def __init__(self, profile: DeviceProfile, *, motor_threshold_pct_mso: float | None = None, **kwargs: Any) -> None:
        super().__init__(profile, motor_threshold_pct_mso=motor_threshold_pct_mso, **kwargs)
        self.heartbeat_s = self.option("heartbeat_s", 1.0)
        self.iti_s = profile.limit("min_inter_train_interval_s")
        self.unit: dict[str, object] = {}
        self.train_settings: tuple[int, int, int, int] | None = None
        self.fired = 0

    def heartbeat_interval(self) -> float | None:
        """Return how often the device must hear from us when idle (s), or ``None``."""
        return self.heartbeat_s

    # -- wire ---------------------------------------------------------------------
    def _read_frame(self, expect: int, what: str) -> bytes:
        for _ in range(64):
            b = self.link.read_exact(1, self.reply_timeout_s, what)
            if b[0] == 0xFE:
                break
        else:
            raise GarbledReply("no start byte 0xFE in 64 bytes")
        length = self.link.read_exact(1, self.reply_timeout_s, what)[0]
        if length == 0:
            raise GarbledReply("frame of length 0")
        rest = self.link.read_exact(length + 2, self.reply_timeout_s, what)
        body, crc, end = rest[:length], rest[length], rest[length + 1]
        if end != 0xFF:
            raise GarbledReply(f"frame ends with 0x{end:02x}, not 0xFF")
        if crc8_maxim(body) != crc:
            raise GarbledReply(f"bad CRC8: got 0x{crc:02x}, expected 0x{crc8_maxim(body):02x}")
        if body[0] != expect:
            raise GarbledReply(f"reply to command 0x{body[0]:02x}, expected 0x{expect:02x}")
        return body[1:]

    def _command(self, cmd: int, payload: bytes, what: str, *, retry: bool = True) -> bytes:
        msg = frame(cmd, payload)

        def exchange() -> bytes:
            self.link.write(msg, what)
            return self._read_frame(cmd, what)

        reply = self._transact(exchange, what, retry=retry)
        if cmd == STATUS and len(reply) >= 8:
            mode, amp_a, amp_b = reply[0], reply[6], reply[7]
        elif len(reply) >= 3:
            amp_a, amp_b, mode = reply[0], reply[1], reply[2]
        else:
            raise DeviceFault(f"{self.name}: reply to {what} too short ({reply.hex()})")
        self.unit = {
            "amplitude_a_pct": amp_a,
            "amplitude_b_pct": amp_b,
            "enabled": bool(mode >> 4 & 1),
            "model": mode >> 5 & 7,
            "waveform": mode >> 2 & 3,
            "mode": mode & 3,
        }
        return reply

    def _enable(self, on: bool, what: str) -> None:
        self._command(ENABLE, bytes([1 if on else 0]), what)
        if self.unit["enabled"] != on:
            raise DeviceFault(f"{self.name}: error reply: the unit did not {'enable' if on else 'disable'}")

    # -- hooks -----------------------------------------------------------------------
    def _io_open(self) -> None:
        self._open_serial()
        self._command(STATUS, b"", "status")

    def _io_arm(self) -> None:
        self._enable(True, "enable")

    def _io_disarm(self) -> None:
        self._enable(False, "disable")

    def _io_heartbeat(self) -> None:
        self._command(STATUS, b"", "status poll")
        if self.armed and not self.unit["enabled"]:
            raise DeviceFault(f"{self.name}: the unit disabled itself")

    def _fire(self, command: Command) -> None:
        """Program amplitude and train (only what changed) and fire."""
        x = command.extra
        amp = self.output_pct_mso(x.get("intensity_pct", 0.0))
        if self.unit.get("amplitude_a_pct") != amp:
            self._command(AMPLITUDE, bytes([amp]), f"set amplitude {amp} %MSO")
            if self.unit["amplitude_a_pct"] != amp:
                raise DeviceFault(
                    f"{self.name}: error reply: amplitude {amp} % not accepted "
                    f"(unit reports {self.unit['amplitude_a_pct']} %)"
                )
        pulses = int(x.get("pulses", 1))
        if pulses > 1:
            settings = (int(round(command.frequency_Hz * 10)), pulses, 1, int(round(self.iti_s * 10)))
            if settings != self.train_settings:
                self._command(
                    TRAIN_SETTINGS,
                    struct.pack(">4H", *settings),
                    f"train settings {settings[0] / 10} Hz × {pulses} pulses",
                )
                self.train_settings = settings
            self._command(START_TRAIN, b"", "start train", retry=False)
        else:
            self._command(FIRE, b"\x01", "fire", retry=False)
        self.fired += 1

    def _io_safe(self) -> None:
        try:
            self._enable(False, "disable (safe state)")
        finally:
            self.armed = False
            self._command(AMPLITUDE, b"\x00", "amplitude 0 (safe state)")

    def _io_emergency(self) -> None:
        self._enable(False, "disable (emergency stop)")
        self.armed = False

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(unit=dict(self.unit), fired=self.fired)
        return st
