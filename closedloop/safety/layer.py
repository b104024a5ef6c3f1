"""The safety layer: the only path from a desired command to an applied one.

It enforces the effective envelope (device limits, tightened by the
pipeline), limits slew, accounts the dose, and ramps down when data go
missing. Every clamp, refusal and watchdog action becomes a
:class:`SafetyEvent` with a reason. Time is the caller's clock: frame time
(sample clock) when a frame drives it, ``local_clock()`` for the watchdog —
both in the LSL clock domain.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from closedloop.types import Command


@dataclass(frozen=True, slots=True)
class TESEnvelope:
    """Hard limits for transcranial electrical stimulation, with their sources."""

    max_amplitude_mA: float
    max_ramp_rate_mA_per_s: float
    emergency_ramp_rate_mA_per_s: float
    max_session_duration_s: float
    max_charge_C: float
    min_frequency_Hz: float
    max_frequency_Hz: float
    watchdog_timeout_s: float
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_envelope(cls, env: dict[str, dict[str, object]]) -> "TESEnvelope":
        """Build from :meth:`closedloop.config.ResolvedPipeline.envelope`."""
        names = [f for f in cls.__dataclass_fields__ if f != "sources"]
        return cls(**{n: float(env[n]["value"]) for n in names}, sources={n: str(env[n]["source"]) for n in names})


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    time: float
    kind: str  # clamp | refuse | watchdog | dose | stop | frequency
    reason: str
    desired_mA: float
    applied_mA: float


class SafetyLayer:
    """Bound every command by a :class:`TESEnvelope`.

    Parameters
    ----------
    envelope : TESEnvelope
        The limits in force.
    on_event : callable, optional
        Called with every :class:`SafetyEvent` (e.g. to record it).
    """

    def __init__(self, envelope: TESEnvelope, on_event: Callable[[SafetyEvent], None] | None = None) -> None:
        self.env = envelope
        self.on_event = on_event
        self.events: deque[SafetyEvent] = deque(maxlen=1000)
        self.counts: dict[str, int] = {}
        self.amplitude_mA = 0.0
        self.frequency_Hz = 0.0
        self._pending_frequency: float | None = None
        self.t: float | None = None
        self.t_start: float | None = None
        self.charge_C = 0.0
        self.stim_time_s = 0.0
        self.stopped = False
        self.stop_reason = ""
        self._last_reason: dict[str, str] = {}

    # -- bookkeeping ---------------------------------------------------------
    def _event(self, t: float, kind: str, reason: str, desired: float) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        # log a repeated identical reason once per change, count every occurrence
        if self._last_reason.get(kind) == reason:
            return
        self._last_reason[kind] = reason
        ev = SafetyEvent(t, kind, reason, desired, self.amplitude_mA)
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _advance(self, t: float) -> float:
        if self.t is None:
            self.t = self.t_start = t
            return 0.0
        dt = t - self.t
        if not dt > 0:  # also catches NaN
            return 0.0
        self.t = t
        return dt

    def _move_toward(self, target: float, dt: float, rate: float) -> None:
        a0 = self.amplitude_mA
        step = rate * dt
        a1 = min(target, a0 + step) if target > a0 else max(target, a0 - step)
        # dose: trapezoid of |I| over dt (mA·s → C)
        self.charge_C += 0.5 * (abs(a0) + abs(a1)) * dt / 1000.0
        if a0 > 0 or a1 > 0:
            self.stim_time_s += dt
        self.amplitude_mA = a1

    def _output(self, t: float) -> Command:
        return Command(self.amplitude_mA, self.frequency_Hz, self.amplitude_mA > 0, t)

    # -- the three ways in -----------------------------------------------------
    def step(self, desired: Command, t: float) -> Command:
        """Return the command allowed at time ``t`` given what the controller wants."""
        env = self.env
        dt = self._advance(t)
        target = desired.amplitude_mA if desired.on else 0.0
        if not math.isfinite(target):
            self._event(t, "refuse", f"non-finite amplitude {target!r} requested; target 0", target)
            target = 0.0
        if target < 0:
            self._event(t, "clamp", f"negative amplitude {target} mA clamped to 0", target)
            target = 0.0
        if target > env.max_amplitude_mA:
            self._event(t, "clamp", f"{target:.4g} mA clamped to device limit {env.max_amplitude_mA} mA", target)
            target = env.max_amplitude_mA
        if self.stopped:
            target = 0.0
        elif self.t_start is not None and (t - self.t_start) >= env.max_session_duration_s:
            self._stop(t, f"session duration limit {env.max_session_duration_s} s reached", target)
            target = 0.0
        elif self.charge_C >= env.max_charge_C:
            self._stop(t, f"charge limit {env.max_charge_C} C reached", target)
            target = 0.0
        self._frequency(desired.frequency_Hz, t)
        if self._pending_frequency is not None and self.amplitude_mA == 0.0:
            self.frequency_Hz = self._pending_frequency
            self._pending_frequency = None
        if self._pending_frequency is not None:
            target = 0.0  # ramp to zero before a frequency change
        self._move_toward(target, dt, env.max_ramp_rate_mA_per_s)
        return self._output(t)

    def _frequency(self, f: float, t: float) -> None:
        env = self.env
        if not math.isfinite(f):
            self._event(t, "refuse", f"non-finite frequency {f!r}; keeping {self.frequency_Hz} Hz", f)
            return
        if not env.min_frequency_Hz <= f <= env.max_frequency_Hz:
            clamped = min(max(f, env.min_frequency_Hz), env.max_frequency_Hz)
            self._event(t, "clamp", f"frequency {f} Hz clamped to {clamped} Hz", f)
            f = clamped
        if f != self.frequency_Hz and f != self._pending_frequency:
            if self.amplitude_mA == 0.0:
                self.frequency_Hz = f
                self._pending_frequency = None
            else:
                self._pending_frequency = f
                self._event(t, "frequency", f"ramping to 0 before changing {self.frequency_Hz} → {f} Hz", f)

    def ramp_down(self, t: float, reason: str, emergency: bool = False) -> Command:
        """Move toward zero at the normal (or emergency) ramp rate; used by watchdog and shutdown."""
        rate = self.env.emergency_ramp_rate_mA_per_s if emergency else self.env.max_ramp_rate_mA_per_s
        dt = self._advance(t)
        self._event(t, "watchdog" if emergency else "stop", reason, 0.0)
        self._move_toward(0.0, dt, rate)
        return self._output(t)

    def _stop(self, t: float, reason: str, desired: float) -> None:
        self.stopped = True
        self.stop_reason = reason
        self._event(t, "dose", reason, desired)

    @property
    def clamps(self) -> int:
        """Commands clamped or refused (not counting normal slew limiting)."""
        return self.counts.get("clamp", 0) + self.counts.get("refuse", 0)
