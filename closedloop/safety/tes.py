"""Transcranial electrical stimulation (tDCS, tACS, tRNS): the current envelope and its layer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from closedloop.safety.layer import SafetyLayer
from closedloop.safety.profile_limits import envelope_from_limits
from closedloop.safety.state import ARMED, STIMULATING
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

    def __post_init__(self) -> None:
        for name in ("max_ramp_rate_mA_per_s", "emergency_ramp_rate_mA_per_s", "watchdog_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.emergency_ramp_rate_mA_per_s < self.max_ramp_rate_mA_per_s:
            raise ValueError("emergency_ramp_rate_mA_per_s must be >= max_ramp_rate_mA_per_s")
        if not 0 <= self.min_frequency_Hz <= self.max_frequency_Hz:
            raise ValueError("need 0 <= min_frequency_Hz <= max_frequency_Hz")

    @classmethod
    def from_envelope(cls, env: dict[str, dict[str, object]]) -> TESEnvelope:
        """Build from :meth:`closedloop.config.ResolvedPipeline.envelope`."""
        values, sources = envelope_from_limits(cls, env)
        return cls(**values, sources=sources)


class TESSafetyLayer(SafetyLayer):
    """Bound tES commands by a :class:`TESEnvelope`.

    - amplitude: non-finite → 0 (refused), negative → 0, above the limit →
      the limit (clamped);
    - slew: at most ``max_ramp_rate_mA_per_s`` (down at the emergency rate
      during a watchdog ramp or an emergency stop);
    - frequency (and ``extra["phase_deg"]``): clamped to the device range and
      changed only at zero amplitude — the layer ramps to zero first;
    - dose: charge is the trapezoid integral of ``|I|`` over the applied
      commands; the final ramp starts early enough that neither the charge
      limit nor the session duration is ever exceeded.
    """

    modality = "tes"

    def __init__(self, envelope: TESEnvelope, clock, on_event=None, auto_arm: bool = True) -> None:
        super().__init__(envelope, clock, on_event, auto_arm)
        self._amplitude = 0.0
        self.frequency_Hz = min(max(0.0, envelope.min_frequency_Hz), envelope.max_frequency_Hz)
        self._frequency_set = False  # no current until the controller has named a valid frequency
        self.phase_deg: float | None = None
        self._pending: dict[str, float] = {}

    @property
    def amplitude_mA(self) -> float:
        """Applied current (mA)."""
        return self._amplitude

    @property
    def active(self) -> bool:
        """Whether anything is being applied right now."""
        return self._amplitude > 0.0

    @property
    def _down_rate(self) -> float:
        env = self.env
        return env.emergency_ramp_rate_mA_per_s if self._emergency else env.max_ramp_rate_mA_per_s

    # -- one step -------------------------------------------------------------------
    def _step(self, desired: Command, t: float, dt: float) -> Command:
        env = self.env
        # the usual command (a float amplitude within the limit, the frequency in force, no phase) takes
        # the inline path; anything else goes through _target/_request, which log what they change
        a, f, extra = desired.amplitude_mA, desired.frequency_Hz, desired.extra
        if not desired.on:
            target = 0.0
        elif type(a) is float and 0.0 <= a <= env.max_amplitude_mA and a != math.inf:
            target = a if a > 0.0 else 0.0  # also turns -0.0 into 0.0
        else:
            target = self._target(desired, t)
        machine = self.machine
        state = machine.state  # machine.may_stimulate, inline (twice per frame)
        if not (state is ARMED or state is STIMULATING):
            target = 0.0
        pending = self._pending
        if type(f) is float and f == self.frequency_Hz and not pending and type(extra) is dict and not extra:
            # in range: frequency_Hz only ever holds a clamped value
            self._frequency_set = True
        else:
            self._request(desired, t)
        if pending and self._amplitude == 0.0:
            self._apply_pending(t)
        if pending:
            target = 0.0  # ramp to zero before a frequency or phase change
        if not self._frequency_set and target > 0.0:
            self._event(t, "refuse", "no valid frequency requested yet; target 0", target)
            target = 0.0
        a0 = self._amplitude
        # min/max written out (the builtins cost more than the comparison; same results)
        if target >= a0:  # at target == a0 both branches give a0 (dt >= 0); this one skips the down-rate lookup
            a1 = a0 + env.max_ramp_rate_mA_per_s * dt
            if not a1 < target:
                a1 = target
        else:
            a1 = a0 - self._down_rate * dt
            if not a1 > target:
                a1 = target
        state = machine.state  # read again: an event callback may have stopped the layer meanwhile
        if a1 > 0.0 and (state is ARMED or state is STIMULATING):
            problem = self._plan(a0, a1, dt, t)
            if problem:
                self._latch(t, problem, "dose")
                a1 = max(0.0, a0 - self._down_rate * dt)
        return self._move(a1, dt, t)

    def _ramp(self, t: float, dt: float) -> Command:
        return self._move(max(0.0, self._amplitude - self._down_rate * dt), dt, t)

    def _move(self, a1: float, dt: float, t: float) -> Command:
        self.account.add_current(self._amplitude, a1, dt)
        self._amplitude = a1
        extra = {} if self.phase_deg is None else {"phase_deg": self.phase_deg}
        return Command(a1, self.frequency_Hz, a1 > 0.0, t, extra)

    def _target(self, desired: Command, t: float) -> float:
        env = self.env
        try:
            a = float(desired.amplitude_mA) if desired.on else 0.0
        except (TypeError, ValueError):
            a = math.nan
        if not math.isfinite(a):
            self._event(t, "refuse", f"non-finite amplitude {a!r} requested; target 0", a)
            return 0.0
        if a < 0.0:
            self._event(t, "clamp", f"negative amplitude {a:.4g} mA clamped to 0", a)
            return 0.0
        if a > env.max_amplitude_mA:
            self._event(t, "clamp", f"{a:.4g} mA clamped to device limit {env.max_amplitude_mA:g} mA", a)
            return env.max_amplitude_mA
        return a if a > 0.0 else 0.0  # also turns -0.0 into 0.0

    def _plan(self, a0: float, a1: float, dt: float, t: float) -> str:
        """Why ``a1`` cannot be allowed (empty if it can).

        Keeps the invariant: charge so far plus the charge of a ramp from
        ``a1`` to zero at the normal rate (sampled at most every watchdog
        timeout: ``a1²/2r + r·H²/8``) stays within the charge limit, and the
        ramp ends before the session duration limit.
        """
        env = self.env
        r = env.max_ramp_rate_mA_per_s
        h = env.watchdog_timeout_s
        charge_mAs = self.account.charge_C * 1000.0 + 0.5 * (a0 + a1) * dt
        reserve_mAs = a1 * a1 / (2.0 * r) + r * h * h / 8.0
        if charge_mAs + reserve_mAs > env.max_charge_C * 1000.0:
            return (
                f"charge limit {env.max_charge_C:g} C: final ramp-down started at "
                f"{self.account.charge_C:.4g} C so that the limit is never exceeded"
            )
        t_start = self.t_start
        if (0.0 if t_start is None else t - t_start) + a1 / r + h > env.max_session_duration_s:  # _elapsed(t)
            return (
                f"session duration limit {env.max_session_duration_s:g} s: final ramp-down started "
                f"at {self._elapsed(t):.4g} s so that it ends in time"
            )
        return ""

    # -- frequency and phase ------------------------------------------------------
    def _request(self, desired: Command, t: float) -> None:
        """Note a requested frequency/phase change (clamped), to happen at zero amplitude."""
        env = self.env
        f = desired.frequency_Hz
        try:
            f = float(f)
        except (TypeError, ValueError):
            f = math.nan
        if not math.isfinite(f):
            self._event(t, "refuse", f"non-finite frequency {f!r}; keeping {self.frequency_Hz:g} Hz")
        else:
            if not env.min_frequency_Hz <= f <= env.max_frequency_Hz:
                clamped = min(max(f, env.min_frequency_Hz), env.max_frequency_Hz)
                self._event(t, "clamp", f"frequency {f:g} Hz clamped to {clamped:g} Hz")
                f = clamped
            if f != self.frequency_Hz or self._pending:  # else _want has nothing to do (every frame, mostly)
                self._want("frequency_Hz", f, self.frequency_Hz, t)
            self._frequency_set = True
        extra = desired.extra if isinstance(desired.extra, dict) else {}
        if "phase_deg" in extra:
            try:
                p = float(extra["phase_deg"])
            except (TypeError, ValueError):
                p = math.nan
            if not math.isfinite(p):
                self._event(t, "refuse", f"non-finite phase {p!r}; keeping {self.phase_deg}")
            else:
                p %= 360.0
                self._want("phase_deg", 0.0 if p >= 360.0 else p, self.phase_deg, t)  # -1e-300 % 360 == 360

    def _want(self, name: str, value: float, current: float | None, t: float) -> None:
        if value == current:
            self._pending.pop(name, None)
        elif self._pending.get(name) != value:
            self._pending[name] = value
            if self._amplitude > 0.0:
                self._event(t, "frequency", f"ramping to 0 before changing {name} {current} → {value:g}")

    def _apply_pending(self, t: float) -> None:
        if "frequency_Hz" in self._pending:
            self.frequency_Hz = self._pending.pop("frequency_Hz")
        if "phase_deg" in self._pending:
            self.phase_deg = self._pending.pop("phase_deg")
