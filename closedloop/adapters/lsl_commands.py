"""Publish every applied command as LSL streams, for labs whose own bridge drives the stimulator.

Two streams, both stamped with the command's time in the LSL clock:

- numeric (type ``StimCommands``, irregular rate, double): ``amplitude_mA``,
  ``frequency_Hz``, ``on`` and the modality's ``extra`` keys (rTMS:
  ``intensity_pct``, ``pulses``, ``train_duration_s``, ``fire``; TUS:
  ``pnp_MPa``, ``center_frequency_MHz``, ``isppa_W_per_cm2``, ``duty_cycle``,
  ``prf_Hz``, ``burst_s``), channel labels and units in the stream header;
- markers (type ``Markers``, string): one JSON object per command, plus
  ``{"event": "arm" | "disarm" | "refused" | "emergency_stop" | "stop"}``.

Limits are re-checked before anything is published. A refused command, an
emergency stop and the end of the session publish an explicit zero command.
With ``require_consumer = true`` the adapter waits for the bridge on
:meth:`connect` and reports a fault when the bridge disconnects.

``[adapter_options]``: ``stream_name`` (``closedloop-commands``),
``source_id`` (``closedloop-commands-<device name>``), ``extra_keys``
(comma-separated; default per modality), ``markers`` (true),
``arm_on_connect`` (true), ``require_consumer`` (false),
``consumer_timeout_s`` (10).
"""

from __future__ import annotations

import json
import time
from typing import Any

from closedloop.adapters.base import AdapterBase, DeviceFault
from closedloop.adapters.command_checks import RTMS_LIMITS, TES_LIMITS, TUS_LIMITS, fires
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command

DEFAULT_EXTRA = {
    "tes": (),
    "rtms": ("intensity_pct", "pulses", "train_duration_s", "fire"),
    "tus": ("pnp_MPa", "center_frequency_MHz", "isppa_W_per_cm2", "duty_cycle", "prf_Hz", "burst_s"),
}
_UNITS = {
    "amplitude_mA": "mA",
    "frequency_Hz": "Hz",
    "intensity_pct": "percent",
    "train_duration_s": "s",
    "pnp_MPa": "MPa",
    "center_frequency_MHz": "MHz",
    "isppa_W_per_cm2": "W/cm2",
    "prf_Hz": "Hz",
    "burst_s": "s",
}


class LSLCommandAdapter(AdapterBase):
    """Publish applied commands over LSL (numeric and marker streams)."""

    @classmethod
    def limits_needed(cls, profile: DeviceProfile) -> tuple[str, ...]:
        """Return the profile limits this adapter re-checks for ``profile``."""
        return {"tes": TES_LIMITS, "rtms": RTMS_LIMITS, "tus": TUS_LIMITS}[profile.device.modality]

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.stream_name = self.option("stream_name", "closedloop-commands")
        self.source_id = self.option("source_id", f"closedloop-commands-{self.name}")
        extra = self.option("extra_keys", ",".join(DEFAULT_EXTRA[self.modality]))
        self.extra_keys = tuple(k.strip() for k in extra.split(",") if k.strip())
        self.channels = ("amplitude_mA", "frequency_Hz", "on") + self.extra_keys
        self.markers = self.option("markers", True)
        self.require_consumer = self.option("require_consumer", False)
        self.consumer_timeout_s = self.option("consumer_timeout_s", 10.0)
        self.outlet = None
        self.marker_outlet = None
        self._amplitude = 0.0
        self._next_consumer_check = 0.0

    # -- publishing ------------------------------------------------------------------
    def _values(self, command: Command) -> list[float]:
        flags = {"fire": 1.0 if command.fire else 0.0, "abort": 1.0 if command.abort else 0.0}
        return [command.amplitude_mA, command.frequency_Hz, 1.0 if command.on else 0.0] + [
            flags[k] if k in flags else float(command.extra.get(k, 0.0)) for k in self.extra_keys
        ]

    def _publish(self, command: Command, now: float, event: str | None = None) -> None:
        if self.outlet is None:
            return
        self.outlet.push_sample(self._values(command), now)
        self.log.add("tx", note=f"{event or 'command'}: " + json.dumps(dict(zip(self.channels, self._values(command)))))
        if self.marker_outlet is not None:
            doc: dict[str, Any] = {
                "amplitude_mA": command.amplitude_mA,
                "frequency_Hz": command.frequency_Hz,
                "on": command.on,
                "fire": command.fire,
                "abort": command.abort,
                "extra": dict(command.extra),
            }
            if event:
                doc["event"] = event
            self.marker_outlet.push_sample([json.dumps(doc)], now)
        self._amplitude = command.amplitude_mA

    def _event(self, event: str, now: float, reason: str = "") -> None:
        self.log.add("event", note=f"{event} {reason}".strip())
        if self.marker_outlet is not None:
            doc = {"event": event} | ({"reason": reason} if reason else {})
            self.marker_outlet.push_sample([json.dumps(doc)], now)

    def _zero(self, now: float, event: str) -> None:
        self._publish(Command(0.0, 0.0, False, now), now, event)

    # -- contract ---------------------------------------------------------------------
    def connect(self) -> None:
        """Open the link and take remote control."""
        if self.connected:
            return
        from closedloop.lslconfig import configure_lsl

        configure_lsl()
        import pylsl

        info = pylsl.StreamInfo(
            self.stream_name,
            "StimCommands",
            len(self.channels),
            pylsl.IRREGULAR_RATE,
            pylsl.cf_double64,
            self.source_id,
        )
        chans = info.desc().append_child("channels")
        for name in self.channels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", name)
            ch.append_child_value("unit", _UNITS.get(name, ""))
        dev = info.desc().append_child("device")
        dev.append_child_value("name", self.name)
        dev.append_child_value("modality", self.modality)
        self.outlet = pylsl.StreamOutlet(info)
        if self.markers:
            minfo = pylsl.StreamInfo(
                f"{self.stream_name}-markers",
                "Markers",
                1,
                pylsl.IRREGULAR_RATE,
                pylsl.cf_string,
                f"{self.source_id}-markers",
            )
            self.marker_outlet = pylsl.StreamOutlet(minfo)
        self.log.add("event", note=f"publishing LSL stream {self.stream_name!r} ({self.source_id})")
        if self.require_consumer and not self.outlet.wait_for_consumers(self.consumer_timeout_s):
            self._set_fault(
                f"{self.name}: no bridge subscribed to LSL stream {self.stream_name!r} "
                f"within {self.consumer_timeout_s} s"
            )
            self._close()
            raise DeviceFault(self.fault)
        self.connected = True
        if self.option("arm_on_connect", True):
            self.arm()

    def arm(self) -> None:
        """Enable the output (see :class:`~closedloop.adapters.base.Adapter`)."""
        self._require_usable("arm")
        self.armed = True
        self._event("arm", self.clock())

    def disarm(self) -> None:
        """Disable the output and keep the connection."""
        now = self.clock()
        self.armed = False
        self._zero(now, "disarm")

    def apply(self, command: Command, now: float) -> None:
        """Send ``command`` without blocking (see :class:`~closedloop.adapters.base.Adapter`)."""
        if not self._accepts_commands():
            return
        problems = self.problems(command, now)
        if problems:
            self._zero(now, "refused")
            self._event("refused", now, "; ".join(problems))
            self._refuse(command, problems)
        if self.require_consumer and now >= self._next_consumer_check:
            self._next_consumer_check = now + 0.5
            if not self.outlet.have_consumers():
                self._set_fault(f"{self.name}: the bridge unsubscribed from {self.stream_name!r}")
                self._zero(now, "fault")
                return
        if self.guard is not None and fires(command):
            if not self.armed:
                self._refuse(command, ["fire requested while not armed"])
            self.guard.commit(command, now)
        if not self.armed:
            command = Command(0.0, command.frequency_Hz, False, command.time)
        self._publish(command, now)
        self._acked()
        self.commands += 1
        self.last_command = command

    def emergency_stop(self) -> None:
        """Turn the output off as fast as the device allows; return at once."""
        now = self.clock()
        self.armed = False
        self._zero(now, "emergency_stop")

    def stop(self) -> None:
        """Drive the device to its safe state and disconnect."""
        if self.outlet is not None:
            self.armed = False
            self._zero(self.clock(), "stop")
            time.sleep(0.05)  # let the last samples leave before the outlet goes
        self._close()
        self.connected = False

    def _close(self) -> None:
        self.outlet = None
        self.marker_outlet = None

    def output_mA(self, now: float) -> float:
        """Amplitude last published (tES); what the bridge's device does is not known here."""
        return self._amplitude if self.modality == "tes" else 0.0
