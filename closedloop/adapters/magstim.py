"""Magstim 200² / BiStim² / Rapid² over the RS-232 remote-control port.

Written from the public protocol description (docs/devices.md): 9600 baud 8N1;
a message is an ASCII command byte, ASCII data and a checksum byte
``(~sum) & 0xFF`` (:func:`~closedloop.adapters.crc.magstim_crc`); the reply
echoes the command byte, then the instrument status byte (a Rapid² adds its
rTMS status byte), then a checksum; ``?`` in place of the status means
invalid data, ``S`` a conflict with the current settings.

=========  =======================================
``Q@``     remote control on (also the keep-alive poll)
``R@``     remote control off
``J@``     read parameters
``@NNN``   power, % of maximum stimulator output
``EB``     arm · ``EA`` disarm · ``EH`` fire
``BNNNN``  train rate in 0.1 Hz (Rapid²)
``DNNNN``  pulses per train (Rapid²; digits per firmware)
``[NNN``   train duration in 0.1 s (Rapid²; digits per firmware)
=========  =======================================

The unit disarms itself when polling stops, so the adapter polls with
``Q@`` every ``poll_armed_s`` (0.5 s) while armed and ``poll_disarmed_s``
(5 s) otherwise. A fire is never retried (a lost reply may hide a delivered
train); parameter settings and polls are. Serial fire has jitter: for
pulse-exact timing use a TTL trigger (:mod:`closedloop.adapters.ttl`).

Intensities arrive in %MT and are set in %MSO with the participant's
motor threshold (:class:`~closedloop.adapters.motor_threshold.MotorThresholdMixin`).
Parameters are programmed only for a train that fires, and only those that
changed; a train abort (``Command.abort``) disarms at once.

``[adapter_options]``: ``port`` (device path or pyserial URL), ``baudrate``
(9600), ``model`` (``rapid2`` | ``200`` | ``bistim``), ``poll_armed_s``,
``poll_disarmed_s``, ``ready_timeout_s`` (3), ``pulses_digits`` (4),
``duration_digits`` (3), ``motor_threshold_pct_mso``, plus those of
:class:`~closedloop.adapters.threaded.ThreadedAdapter`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from closedloop.adapters.base import DeviceFault
from closedloop.adapters.command_checks import train_duration_s
from closedloop.adapters.crc import magstim_crc
from closedloop.adapters.serial_rtms import SerialRTMSAdapter
from closedloop.adapters.transport import ErrorReply, GarbledReply
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command

_ERRORS = {ord("?"): "invalid data", ord("S"): "command conflicts with the current settings"}


def decode_instrument_status(byte: int) -> dict[str, bool]:
    """Bits of the instrument status byte (public description of the Magstim protocol)."""
    names = ("standby", "armed", "ready", "coil_present", "replace_coil", "error_present", "error_type", "remote")
    return {n: bool(byte >> i & 1) for i, n in enumerate(names)}


def decode_rapid_status(byte: int) -> dict[str, bool]:
    """Bits of the Rapid² rTMS status byte."""
    names = (
        "enhanced_power",
        "train",
        "wait",
        "single_pulse_mode",
        "hvpsu_connected",
        "coil_ready",
        "theta_psu",
        "modified_coil_algorithm",
    )
    return {n: bool(byte >> i & 1) for i, n in enumerate(names)}


class MagstimAdapter(SerialRTMSAdapter):
    """Drive a Magstim stimulator (rTMS) through its serial remote-control protocol."""

    adapter_name = "magstim"
    default_baudrate = 9600
    lost_link_advice = "the unit disarms itself when polling stops (about a second)"

    def __init__(self, profile: DeviceProfile, *, motor_threshold_pct_mso: float | None = None, **kwargs: Any) -> None:
        super().__init__(profile, motor_threshold_pct_mso=motor_threshold_pct_mso, **kwargs)
        self.model = self.option("model", "rapid2")
        if self.model not in ("rapid2", "200", "bistim"):
            raise ValueError(f"device profile {self.name!r}: adapter_options.model must be rapid2, 200 or bistim")
        self.rapid = self.model == "rapid2"
        self.poll_armed_s = self.option("poll_armed_s", 0.5)
        self.poll_disarmed_s = self.option("poll_disarmed_s", 5.0)
        self.ready_timeout_s = self.option("ready_timeout_s", 3.0)
        self.pulses_digits = self.option("pulses_digits", 4)
        self.duration_digits = self.option("duration_digits", 3)
        self.instrument: dict[str, bool] = {}
        self.rapid_status: dict[str, bool] = {}
        self.settings: dict[str, int] = {}
        self.trains_fired = 0

    def heartbeat_interval(self) -> float | None:
        """Return how often the device must hear from us when idle (s), or ``None``."""
        return self.poll_armed_s if self.armed else self.poll_disarmed_s

    # -- wire ---------------------------------------------------------------------
    def _read_reply(self, cmd: int, length: int, what: str) -> bytes:
        first = self.link.read_exact(1, self.reply_timeout_s, what)
        if first == b"?":
            raise ErrorReply(f"{what}: the unit does not know this command ('?')")
        if first[0] != cmd:
            raise GarbledReply(f"reply starts with {first!r}, expected the echo {chr(cmd)!r}")
        second = self.link.read_exact(1, self.reply_timeout_s, what)
        if second[0] in _ERRORS:
            crc = self.link.read_exact(1, self.reply_timeout_s, what)
            if magstim_crc(first + second) != crc[0]:
                raise GarbledReply("bad checksum on an error reply")
            raise ErrorReply(_ERRORS[second[0]])
        rest = self.link.read_exact(length - 2, self.reply_timeout_s, what)
        reply = first + second + rest
        if magstim_crc(reply[:-1]) != reply[-1]:
            raise GarbledReply(f"bad checksum: got 0x{reply[-1]:02x}, expected 0x{magstim_crc(reply[:-1]):02x}")
        return reply

    def _command(self, body: bytes, what: str, *, retry: bool = True, reply_data: int = 0) -> bytes:
        """Send ``body`` + checksum, read and check the reply, update the status."""
        msg = body + bytes([magstim_crc(body)])
        n_status = 2 if self.rapid else 1
        length = 1 + n_status + reply_data + 1

        def exchange() -> bytes:
            self.link.write(msg, what)
            return self._read_reply(body[0], length, what)

        reply = self._transact(exchange, what, retry=retry)
        self.instrument = decode_instrument_status(reply[1])
        if self.rapid:
            self.rapid_status = decode_rapid_status(reply[2])
        if self.instrument["error_present"]:
            raise DeviceFault(f"{self.name}: the unit reports an error after {what} (status 0x{reply[1]:02x})")
        return reply

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._command(b"Q@", "poll (waiting for ready)")
            if not self.instrument["armed"]:
                raise DeviceFault(f"{self.name}: the unit is not armed (it disarmed itself)")
            if self.instrument["ready"]:
                return
            if time.monotonic() > deadline:
                raise DeviceFault(f"{self.name}: not ready to fire within {timeout_s} s")
            time.sleep(0.02)

    # -- hooks -----------------------------------------------------------------------
    def _io_open(self) -> None:
        self._open_serial()
        self._command(b"Q@", "remote control on")
        if not self.instrument["remote"]:
            raise DeviceFault(f"{self.name}: the unit did not enter remote control")
        if self.rapid:
            reply = self._command(
                b"J@", "read parameters", reply_data=3 + 4 + self.pulses_digits + self.duration_digits
            )
            text = reply[3:-1].decode("ascii", "replace")
            p, d = self.pulses_digits, self.duration_digits
            try:
                self.settings = {
                    "power": int(text[0:3]),
                    "rate_dHz": int(text[3:7]),
                    "pulses": int(text[7 : 7 + p]),
                    "duration_ds": int(text[7 + p : 7 + p + d]),
                }
            except ValueError:
                raise DeviceFault(f"{self.name}: unreadable parameters {text!r}") from None

    def _io_arm(self) -> None:
        self._command(b"EB", "arm")
        self._wait_ready(self.ready_timeout_s)

    def _io_disarm(self) -> None:
        self._command(b"EA", "disarm")
        if self.instrument["armed"]:
            raise DeviceFault(f"{self.name}: still armed after disarm")

    def _io_heartbeat(self) -> None:
        was_armed = self.armed
        self._command(b"Q@", "keep-alive poll")
        if was_armed and not self.instrument["armed"]:
            raise DeviceFault(f"{self.name}: the unit disarmed itself (polling gap or a device interlock)")

    def _set(self, key: str, value: int, body: bytes, what: str) -> None:
        if self.settings.get(key) != value:
            self._command(body, what)
            self.settings[key] = value

    def _fire(self, command: Command) -> None:
        """Program the train (only what changed) and fire it."""
        x = command.extra
        power = self.output_pct_mso(x.get("intensity_pct", 0.0))
        self._set("power", power, b"@" + f"{power:03d}".encode(), f"set power {power} %MSO")
        if self.rapid and command.frequency_Hz > 0:
            rate = int(round(command.frequency_Hz * 10))
            pulses = max(1, int(x.get("pulses", 1)))
            dur_ds = max(1, int(math.ceil(train_duration_s(command) * 10 - 1e-9)))
            self._set("rate_dHz", rate, b"B" + f"{rate:04d}".encode(), f"set rate {rate / 10} Hz")
            self._set("pulses", pulses, b"D" + f"{pulses:0{self.pulses_digits}d}".encode(), f"set pulses {pulses}")
            self._set(
                "duration_ds",
                dur_ds,
                b"[" + f"{dur_ds:0{self.duration_digits}d}".encode(),
                f"set duration {dur_ds / 10} s",
            )
        self._wait_ready(min(self.ready_timeout_s, 1.0))
        self._command(b"EH", "fire", retry=False)
        self.trains_fired += 1

    def _io_safe(self) -> None:
        try:
            self._command(b"EA", "disarm (safe state)")
        finally:
            self.armed = False
            self._command(b"R@", "remote control off")

    def _io_emergency(self) -> None:
        self._command(b"EA", "disarm (emergency stop)")
        self.armed = False

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(
            instrument=dict(self.instrument),
            rapid_status=dict(self.rapid_status),
            settings=dict(self.settings),
            trains_fired=self.trains_fired,
        )
        return st
