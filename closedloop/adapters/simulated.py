"""Simulated stimulators (tES, rTMS, TUS): no hardware, realistic dynamics, injectable faults.

For tests and demos. They follow the adapter contract exactly like the
hardware adapters (limits re-checked, faults reported through ``fault``),
but run in-process: ``apply`` does no I/O, so it needs no thread.
"""

from __future__ import annotations

import threading
from typing import Any

from closedloop.adapters.base import AdapterBase, DeviceFault
from closedloop.adapters.command_checks import RTMS_LIMITS, TES_LIMITS, TUS_LIMITS, fires, train_duration_s
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command

#: Faults :meth:`_Simulated.inject_fault` can simulate.
FAULTS = {
    "disconnect": "link lost (simulated disconnect)",
    "no_reply": "device stopped acknowledging (simulated)",
    "error": "device reported an error (simulated)",
}


class _Simulated(AdapterBase):
    """Lifecycle shared by the simulated devices."""

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self._lock = threading.Lock()
        self._refuse_connect = False

    def inject_fault(self, kind: str) -> None:
        """Make the simulated device fail now.

        ``kind`` is ``"disconnect"``, ``"no_reply"``, ``"error"``, or
        ``"connect"`` (the next :meth:`connect` fails).
        """
        if kind == "connect":
            self._refuse_connect = True
            return
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; choose from {sorted(FAULTS) + ['connect']}")
        if self._set_fault(f"{self.name}: {FAULTS[kind]}"):
            self._go_safe(self.clock())

    def connect(self) -> None:
        if self._refuse_connect:
            self._set_fault(f"{self.name}: connection refused (simulated)")
            raise DeviceFault(self.fault)
        self.connected = True
        self.log.add("event", note="connected (simulated)")
        if self.option("arm_on_connect", self.arm_on_connect_default):
            self.arm()

    arm_on_connect_default = True  # demos and the current runtime connect and go

    def arm(self) -> None:
        self._require_usable("arm")
        self.armed = True
        self._armed_at = self.clock()
        self.log.add("event", note="armed")

    def disarm(self) -> None:
        self.armed = False
        self._go_safe(self.clock())
        self.log.add("event", note="disarmed")

    def emergency_stop(self) -> None:
        self.armed = False
        self._go_safe(self.clock(), emergency=True)
        self.log.add("event", note="emergency stop")

    def stop(self) -> None:
        self._go_safe(self.clock(), emergency=True)
        self.armed = False
        self.connected = False
        self.log.add("event", note="stopped")

    def _go_safe(self, now: float, emergency: bool = False) -> None:
        raise NotImplementedError

    def _usable(self, command: Command, now: float) -> bool:
        """Gate ``apply``: False when faulted; refuse out-of-profile commands."""
        if (self.fault is not None or not self.connected) and not self._accepts_commands():
            return False  # (the gate is called only when it has something to say: it counts or raises)
        problems = self.problems(command, now)
        if problems:
            self._go_safe(now)
            self._refuse(command, problems)
        self._acked()
        return True


class SimulatedStimulator(_Simulated):
    """Simulated single-channel tACS/tDCS stimulator.

    The output follows each applied amplitude by a linear ramp at the
    profile's ``emergency_ramp_rate_mA_per_s`` (the device's fastest
    transition), like a real stimulator's transition; the plant model of the
    synthetic EEG reads :meth:`output_mA`. Output is enabled on
    :meth:`connect` unless ``adapter_options.arm_on_connect = false``.

    Parameters
    ----------
    profile : DeviceProfile
        Limits re-checked on every command (defence in depth).
    """

    modalities = ("tes",)
    required_limits = TES_LIMITS + ("emergency_ramp_rate_mA_per_s",)
    arm_on_connect_default = True

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.max_mA = profile.limit("max_amplitude_mA")
        self.fmin = profile.limit("min_frequency_Hz")
        self.fmax = profile.limit("max_frequency_Hz")
        self.rate = profile.limit("emergency_ramp_rate_mA_per_s")
        self._from = 0.0
        self._to = 0.0
        self._t0 = 0.0
        self.frequency_Hz = 0.0

    def apply(self, command: Command, now: float) -> None:
        """Send ``command`` without blocking (see :class:`~closedloop.adapters.base.Adapter`)."""
        if not self._usable(command, now):
            return
        amplitude = command.amplitude_mA if self.armed else 0.0
        if command.amplitude_mA > 0 and not self.armed:
            self.dropped += 1
        with self._lock:  # _set inlined: it runs on every command
            self._from = self._value(now)
            self._to = amplitude
            self._t0 = now
        self.frequency_Hz = command.frequency_Hz
        self.commands += 1
        self.last_command = command

    def _go_safe(self, now: float, emergency: bool = False) -> None:
        if emergency:
            with self._lock:
                self._from = self._to = 0.0
        else:
            self._set(0.0, now)

    def _set(self, amplitude: float, now: float) -> None:
        with self._lock:
            self._from = self._value(now)
            self._to = amplitude
            self._t0 = now

    def _value(self, now: float) -> float:
        span = self._to - self._from
        if span == 0.0:
            return self._to
        frac = (now - self._t0) * self.rate / abs(span)
        # min(1, max(0, frac)) without the two builtin calls (same result, NaN included: 0)
        frac = (frac if frac < 1.0 else 1.0) if frac > 0.0 else 0.0
        return self._from + span * frac

    def output_mA(self, now: float) -> float:
        """Amplitude the simulated device is delivering at ``now``."""
        with self._lock:
            return self._value(now)

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(target_mA=self._to, frequency_Hz=self.frequency_Hz)
        return st


class SimulatedRTMS(_Simulated):
    """Simulated repetitive TMS stimulator: arming, capacitor recharge, trains.

    ``[adapter_options]``: ``ready_delay_s`` (0.5; arm → ready) and
    ``recharge_s`` (1.0; end of a train → ready again), the stimulator's own
    energy limits (docs/safety.md). A train fires only when armed and ready;
    :attr:`trains` lists ``(time, intensity_pct, rate_Hz, pulses)``.
    """

    modalities = ("rtms",)
    required_limits = RTMS_LIMITS

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.ready_delay_s = self.option("ready_delay_s", 0.5)
        self.recharge_s = self.option("recharge_s", 1.0)
        self.trains: list[tuple[float, float, float, int]] = []
        self._ready_at = float("inf")
        self._train_end = float("-inf")
        self._armed_at = 0.0

    def arm(self) -> None:
        """Enable the output (see :class:`~closedloop.adapters.base.Adapter`)."""
        super().arm()
        self._ready_at = self.clock() + self.ready_delay_s

    def ready(self, now: float) -> bool:
        """Armed, charged and not firing."""
        return self.armed and now >= self._ready_at

    def apply(self, command: Command, now: float) -> None:
        """Send ``command`` without blocking (see :class:`~closedloop.adapters.base.Adapter`)."""
        if command.abort and self.fault is None:
            self._go_safe(now)  # stop the running train; arm() again to fire more
            self.log.add("event", note="train aborted")
            self.commands += 1
            return
        if not self._usable(command, now):
            return
        if fires(command):
            if not self.ready(now):
                self._refuse(command, ["stimulator not armed or not ready (recharging)"])
            self.guard.commit(command, now)
            n = int(command.extra.get("pulses", 1.0))
            self.trains.append((now, command.extra.get("intensity_pct", 0.0), command.frequency_Hz, n))
            self._train_end = now + train_duration_s(command)
            self._ready_at = self._train_end + self.recharge_s
            self.log.add(
                "event",
                note=f"train: {n} pulses at {command.frequency_Hz} Hz, {command.extra.get('intensity_pct', 0.0)} %",
            )
        self.commands += 1
        self.last_command = command

    def pulses_delivered(self, now: float) -> int:
        """Pulses delivered up to ``now`` (a train cut by an emergency stop counts what it gave)."""
        total = 0
        for t, _i, rate, n in self.trains:
            if now <= t:
                continue
            total += n if rate <= 0 else min(n, int((now - t) * rate) + 1)
        return total

    def _go_safe(self, now: float, emergency: bool = False) -> None:
        self.armed = False
        self._ready_at = float("inf")
        if self.trains and now < self._train_end:  # cut the running train short
            t, i, rate, n = self.trains[-1]
            self.trains[-1] = (t, i, rate, min(n, int((now - t) * rate) + 1 if rate > 0 else n))
            self._train_end = now

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(trains=len(self.trains), pulses=sum(n for *_x, n in self.trains))
        return st


class SimulatedTUS(_Simulated):
    """Simulated transcranial ultrasound system, following the TUS command convention.

    The convention (shared with :mod:`closedloop.safety.tus`): a *sonication*
    is on while the applied command is ``on``; during it the transducer emits
    pulses of ``burst_s`` every ``1 / prf_Hz`` (duty cycle ``burst_s ×
    prf_Hz``) with the command's acoustic parameters. The command that starts
    a sonication has ``fire=True``; a command with ``on=False``
    ends it, and ``abort=True`` (a safety ramp or stop) ends it and
    disarms (call :meth:`rearm` to continue).

    :attr:`sonications` lists ``[start, end, parameters]`` of every
    sonication (``end`` is ``inf`` while it runs).
    """

    modalities = ("tus",)
    required_limits = TUS_LIMITS

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.sonications: list[list[Any]] = []
        self._on = False

    def apply(self, command: Command, now: float) -> None:
        """Send ``command`` without blocking (see :class:`~closedloop.adapters.base.Adapter`)."""
        if command.abort and self.fault is None:
            self._go_safe(now)
            self.log.add("event", note="sonication aborted")
            self.commands += 1
            return
        if not self._usable(command, now):
            return
        if command.on and not self._on:
            if not fires(command):
                self._refuse(command, ["a sonication must start with a fire command (Command.fire)"])
            if not self.armed:
                self._refuse(command, ["transducer not armed"])
            self.guard.commit(command, now)
            self.sonications.append([now, float("inf"), dict(command.extra)])
            self._on = True
            self.log.add("event", note="sonication started")
        elif command.on and fires(command):
            self._refuse(command, ["a sonication is already running"])
        elif not command.on and self._on:
            self._end(now)
        self.commands += 1
        self.last_command = command

    def _end(self, now: float) -> None:
        if self._on:
            self.sonications[-1][1] = now
            self._on = False
            self.log.add("event", note="sonication ended")

    @property
    def bursts(self) -> list[tuple[float, dict[str, float]]]:
        """``(start, parameters)`` of every sonication (the older name of :attr:`sonications`)."""
        return [(start, params) for start, _end, params in self.sonications]

    def sonicating(self, now: float) -> bool:
        """Return whether a sonication is on at ``now``."""
        return self._on and bool(self.sonications) and now >= self.sonications[-1][0]

    def _go_safe(self, now: float, emergency: bool = False) -> None:
        self.armed = False
        self._end(now)


def simulated_adapter(profile: DeviceProfile, **kwargs: Any) -> _Simulated:
    """Return a simulated tES, rTMS or TUS device, chosen by the profile's modality (no hardware)."""
    cls = {"tes": SimulatedStimulator, "rtms": SimulatedRTMS, "tus": SimulatedTUS}[profile.device.modality]
    return cls(profile, **kwargs)
