"""Repetitive TMS: intensity cap, verified train-duration table, inter-train interval, pulse cap.

A controller asks for a train through ``Command.extra``::

    frequency_Hz = train rate (Hz)
    extra = {"intensity_pct": 110.0,      # % of resting motor threshold (the profile says so)
             "pulses": 32,                # pulses in the train ...
             "train_duration_s": 1.6}     # ... or its duration (pulses / rate); both must agree
    fire = True                           # fire this train now

and the layer answers with the train it allows (``fire=True`` on the step
that starts it, ``on`` while it runs), or refuses it with a reason. A watchdog
ramp or a stop aborts a running train (``abort=True``).

The train-duration table is the profile's ``train_max_s_<rate>Hz_<intensity>pctMT``
limits, each a cell checked against its source. A train is allowed only
where a verified cell has the same rate and an intensity at or above the
requested one (the shortest such cell applies); every other combination is
refused — the table is never interpolated or extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

from closedloop.config.profile import parse_train_limit
from closedloop.safety.layer import SafetyLayer
from closedloop.safety.profile_limits import envelope_from_limits
from closedloop.types import Command


@dataclass(frozen=True, slots=True)
class TrainLimit:
    """One verified cell: at ``frequency_Hz`` and up to ``intensity_pct`` (%MT), trains up to ``max_train_s``."""

    frequency_Hz: float
    intensity_pct: float
    max_train_s: float
    source: str = ""


@dataclass(frozen=True, slots=True)
class RTMSEnvelope:
    """Hard limits for repetitive TMS, with their sources. Intensities are % of resting motor threshold."""

    max_intensity_pct: float
    min_inter_train_interval_s: float
    max_pulses_per_session: float
    max_session_duration_s: float
    watchdog_timeout_s: float
    trains: tuple[TrainLimit, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.watchdog_timeout_s > 0:
            raise ValueError("watchdog_timeout_s must be > 0")

    @classmethod
    def from_envelope(cls, env: dict[str, dict[str, object]]) -> RTMSEnvelope:
        """Build from :meth:`closedloop.config.ResolvedPipeline.envelope`."""
        values, sources = envelope_from_limits(cls, env, skip=("trains",))
        trains = []
        for name, lim in env.items():
            cell = parse_train_limit(name)
            if cell is not None:
                trains.append(TrainLimit(cell[0], cell[1], float(cast(float, lim["value"])), str(lim["source"])))
        return cls(**values, trains=tuple(trains), sources=sources)

    def train_limit(self, frequency_Hz: float, intensity_pct: float) -> TrainLimit | None:
        """Return the verified cell that bounds a train, or ``None`` if no cell covers it."""
        cells = [
            c
            for c in self.trains
            if math.isclose(c.frequency_Hz, frequency_Hz, rel_tol=1e-9, abs_tol=1e-9)
            and intensity_pct <= c.intensity_pct
        ]
        return min(cells, key=lambda c: c.max_train_s) if cells else None

    def verified(self) -> str:
        """Return the verified cells, for messages."""
        return (
            ", ".join(f"{c.frequency_Hz:g} Hz ≤{c.intensity_pct:g} %MT ≤{c.max_train_s:g} s" for c in self.trains)
            or "none"
        )


@dataclass(frozen=True, slots=True)
class Train:
    """A train the layer allowed."""

    start: float
    frequency_Hz: float
    intensity_pct: float
    pulses: int
    duration_s: float

    @property
    def end(self) -> float:
        """Time the train ends."""
        return self.start + self.duration_s


class RTMSSafetyLayer(SafetyLayer):
    """Allow or refuse rTMS trains by an :class:`RTMSEnvelope`.

    Pulses and train time are accounted when a train is fired (an aborted
    train counts in full). When a train is refused because the pulse cap
    would be exceeded, the stop is latched and the session ends with that reason.
    """

    modality = "rtms"

    def __init__(self, envelope: RTMSEnvelope, clock, on_event=None, auto_arm: bool = True) -> None:
        super().__init__(envelope, clock, on_event, auto_arm)
        self.train: Train | None = None  # the running or last train
        self.last_end: float | None = None

    @property
    def active(self) -> bool:
        """Whether anything is being applied right now."""
        return self.train is not None and self.t is not None and self.t < self.train.end

    def _output(self, t: float, fire: bool = False, abort: bool = False) -> Command:
        tr = self.train
        extra = {"intensity_pct": 0.0, "pulses": 0.0, "train_duration_s": 0.0}
        if tr is not None:
            extra.update(intensity_pct=tr.intensity_pct, pulses=float(tr.pulses), train_duration_s=tr.duration_s)
        return Command(0.0, tr.frequency_Hz if tr else 0.0, self.active, t, extra, fire=fire, abort=abort)

    def _step(self, desired: Command, t: float, dt: float) -> Command:
        extra = desired.extra if isinstance(desired.extra, dict) else {}
        fire = bool(desired.on) and desired.fire is True
        if not fire:
            return self._output(t)
        problem = self._check(desired, extra, t)
        if problem:
            self._event(t, "refuse", f"train refused: {problem}")
            return self._output(t)
        f, intensity, pulses, duration = self._requested
        self.train = Train(t, f, intensity, pulses, duration)
        self.last_end = self.train.end
        self.account.pulses += pulses
        self.account.trains += 1
        self.account.stim_time_s += duration
        return self._output(t, fire=True)

    def _check(self, desired: Command, extra: dict, t: float) -> str:
        """Return why the requested train cannot be fired at ``t`` (empty if it can); set ``_requested``."""
        env = self.env
        if not self.machine.may_stimulate:
            return f"the layer is {self.machine.state.value}"
        running = self.train if self.active else None
        if running is not None:
            return f"a train is running until {running.end:.3f} s"
        f = _num(desired.frequency_Hz)
        intensity = _num(extra.get("intensity_pct"))
        if not (math.isfinite(f) and f > 0):
            return f"train rate {f!r} Hz is not a positive number"
        if not (math.isfinite(intensity) and intensity > 0):
            return f"intensity {intensity!r} %MT is not a positive number"
        if intensity > env.max_intensity_pct:
            return f"intensity {intensity:g} %MT above the cap {env.max_intensity_pct:g} %MT"
        pulses, duration, problem = _train_size(f, extra)
        if problem:
            return problem
        cell = env.train_limit(f, intensity)
        if cell is None:
            return f"no verified safe train duration for {f:g} Hz at {intensity:g} %MT (verified: {env.verified()})"
        if duration > cell.max_train_s * (1 + 1e-9):
            return (
                f"{duration:g} s at {f:g} Hz exceeds the verified {cell.max_train_s:g} s "
                f"for ≤{cell.intensity_pct:g} %MT ({cell.source})"
            )
        if self.last_end is not None and t - self.last_end < env.min_inter_train_interval_s - 1e-9:
            return (
                f"only {t - self.last_end:.3g} s since the last train; "
                f"the minimum inter-train interval is {env.min_inter_train_interval_s:g} s"
            )
        if self.account.pulses + pulses > env.max_pulses_per_session:
            reason = (
                f"pulse cap {env.max_pulses_per_session:g} per session: {self.account.pulses} given, "
                f"a train of {pulses} would exceed it"
            )
            self._latch(t, reason, "dose")
            return reason
        if self._elapsed(t) + duration > env.max_session_duration_s:
            return f"the train would run past the session duration limit {env.max_session_duration_s:g} s"
        self._requested = (f, intensity, pulses, duration)
        return ""

    def _ramp(self, t: float, dt: float) -> Command:
        running = self.train if self.active else None
        if running is None:
            return self._output(t)
        self._event(t, "stop", f"train aborted at {t:.3f} s")
        self.train = Train(
            running.start, running.frequency_Hz, running.intensity_pct, running.pulses, t - running.start
        )
        self.last_end = t
        return self._output(t, abort=True)


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _train_size(f: float, extra: dict) -> tuple[int, float, str]:
    """Pulses and duration (pulses / rate) of a requested train, or a problem."""
    has_p = "pulses" in extra
    has_d = "train_duration_s" in extra
    if not (has_p or has_d):
        return 0, 0.0, "give pulses or train_duration_s"
    if has_p:
        p = _num(extra["pulses"])
        if not (math.isfinite(p) and 1 <= p < 1e9 and p == int(p)):
            return 0, 0.0, f"pulses {extra['pulses']!r} is not a whole number >= 1"
        pulses = int(p)
        duration = pulses / f
        if has_d:
            d = _num(extra["train_duration_s"])
            if not (math.isfinite(d) and abs(d - duration) <= 1e-6 + 1e-3 * duration):
                return 0, 0.0, f"train_duration_s {d!r} disagrees with pulses / rate = {duration:g} s"
        return pulses, duration, ""
    d = _num(extra["train_duration_s"])
    if not (math.isfinite(d) and d > 0):
        return 0, 0.0, f"train_duration_s {d!r} is not a positive number"
    n = d * f
    if not n < 1e9:
        return 0, 0.0, f"{d:g} s at {f:g} Hz is not a train"
    pulses = int(math.floor(n + 1e-9))
    if pulses < 1:
        return 0, 0.0, f"{d:g} s at {f:g} Hz holds no pulse"
    return pulses, pulses / f, ""
