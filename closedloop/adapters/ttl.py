"""TTL trigger pulses on a serial line, for triggered TMS and TUS.

The stimulator is set up (intensity, waveform, burst) on its own panel or
by its own software; closedloop only decides *when*: each firing command
sends ``pulses`` trigger pulses at ``frequency_Hz``, either by raising a
modem-control line (RTS or DTR, e.g. through a level shifter) for
``pulse_width_ms`` or by writing a trigger byte (for USB trigger boxes that
turn a byte into a TTL pulse). Pulses are timed by the adapter's own thread
against absolute deadlines: expect about a millisecond of jitter (USB
serial adds its own latency); an emergency stop aborts a running train
between two pulses.

Limits (defence in depth): train rate, pulses per train, inter-train
interval and the session's pulse count, from the profile.

``[adapter_options]``: ``port`` (device path or pyserial URL), ``line``
(``rts`` | ``dtr`` | ``byte``), ``pulse_width_ms`` (5), ``trigger_byte``
(1), ``active_high`` (true), ``baudrate`` (115200), ``arm_on_connect``
(false), plus those of :class:`~closedloop.adapters.threaded.ThreadedAdapter`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from closedloop.adapters.command_checks import fires
from closedloop.adapters.threaded import ThreadedAdapter
from closedloop.adapters.transport import SerialLink
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command


class TTLTriggerAdapter(ThreadedAdapter):
    """Send trigger pulses (RTS/DTR line or a byte) on a serial port."""

    modalities = ("rtms", "tus")
    lost_link_advice = "no further triggers are sent; check the trigger line"
    required_limits = (
        "max_frequency_Hz",
        "max_pulses_per_train",
        "min_inter_train_interval_s",
        "max_pulses_per_session",
    )

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.port = self.required_option("port", "ttl")
        self.line = self.option("line", "rts")
        if self.line not in ("rts", "dtr", "byte"):
            raise ValueError(f"device profile {self.name!r}: adapter_options.line must be rts, dtr or byte")
        self.width_s = self.option("pulse_width_ms", 5.0) / 1000.0
        self.trigger_byte = self.option("trigger_byte", 1)
        self.active_high = self.option("active_high", True)
        self.baudrate = self.option("baudrate", 115200)
        self.max_rate = profile.limit("max_frequency_Hz")
        if self.line != "byte" and self.max_rate > 0 and self.width_s >= 1.0 / self.max_rate:
            raise ValueError(
                f"device profile {self.name!r}: pulse_width_ms {self.width_s * 1e3:g} leaves no "
                f"low time at the maximum rate {self.max_rate:g} Hz"
            )
        self.pulse_times: list[float] = []
        self._abort = threading.Event()
        self._issued: deque[float] = deque()  # apply() times of accepted fires, for the output latency

    def problems(self, command: Command, now: float) -> list[str]:
        """Return why ``command`` must be refused (empty: allowed)."""
        p = super().problems(command, now)
        if fires(command):
            n = command.extra.get("pulses", 1.0)
            if n > self.profile.limit("max_pulses_per_train"):
                p.append(f"{n:g} pulses exceed max_pulses_per_train {self.profile.limit('max_pulses_per_train'):g}")
            if n > 1 and not 0 < command.frequency_Hz <= self.max_rate:
                p.append(f"train rate {command.frequency_Hz} Hz outside (0, {self.max_rate}] Hz")
        return p

    def _level(self, active: bool) -> None:
        level = active if self.active_high else not active
        self.link.set_lines(**{self.line: level})

    def _pulse(self, note: str) -> None:
        t = self.clock()
        if self.line == "byte":
            self.link.write(bytes([self.trigger_byte]), note)
        else:
            self.log.add("tx", note=f"{note}: {self.line.upper()} high")
            self._level(True)
            time.sleep(self.width_s)
            self._level(False)
        self.pulse_times.append(t)
        self._acked()

    # -- hooks -----------------------------------------------------------------------
    def _io_open(self) -> None:
        self.link = SerialLink(self.port, self.baudrate, self.reply_timeout_s, self.log)
        if self.line != "byte":
            self._level(False)
        if self.option("arm_on_connect", False):
            self.armed = True

    def _io_arm(self) -> None:
        self._abort.clear()

    def _io_disarm(self) -> None:
        self._io_safe()

    def _accept(self, command: Command, now: float) -> None:
        super()._accept(command, now)
        if fires(command):
            self._issued.append(now)

    def _io_apply(self, command: Command) -> None:
        issued = self._issued.popleft() if fires(command) and self._issued else None
        if not fires(command) or not self.armed:
            return
        n = int(command.extra.get("pulses", 1))
        period = 1.0 / command.frequency_Hz if n > 1 else 0.0
        start = time.monotonic()
        for k in range(n):
            delay = start + k * period - time.monotonic()
            if (delay > 0 and self._abort.wait(delay)) or self._abort.is_set():
                self.log.add("event", note=f"train aborted after {k} of {n} pulses")
                return
            self._pulse(f"pulse {k + 1}/{n}")
            if k == 0 and issued is not None:  # from apply() to the first edge: EMA over fires
                lat = self.pulse_times[-1] - issued
                self.output_latency_s = lat if self.output_latency_s == 0.0 else 0.8 * self.output_latency_s + 0.2 * lat

    def _io_safe(self) -> None:
        self.armed = False
        if self.line != "byte":
            self._level(False)

    def emergency_stop(self) -> None:
        """Turn the output off as fast as the device allows; return at once."""
        self._abort.set()  # stops a running train at once, from the caller's thread
        super().emergency_stop()

    def arm(self) -> None:
        """Enable the output (see :class:`~closedloop.adapters.base.Adapter`)."""
        self._abort.clear()
        super().arm()

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(pulses_sent=len(self.pulse_times), line=self.line)
        return st
