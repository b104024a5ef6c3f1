"""Outcome metrics of a session or replay: plain functions on per-frame arrays.

Every function takes frame times (s) and per-frame values, so a researcher can
compute them on a :class:`Trace` from :func:`closedloop.offline.replay.replay`, on a
recorded session (:meth:`Trace.from_xdf`), or on their own arrays, and write
their own objective from them. Times are weighted: each frame stands for the
time until the next frame (the last one for the median frame interval), so
gaps in the data do not distort the fractions.

"Stimulating" means an allowed amplitude above zero (what the safety layer
let through, ramps included); "switches" count the controller's decisions
(desired on/off toggles).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Trace",
    "TraceBuilder",
    "frame_weights",
    "duty_cycle",
    "switches_per_minute",
    "dose_charge_C",
    "time_in_band",
    "state_intervals",
    "duty_by_state",
    "state_agreement",
    "outcomes",
]


@dataclass
class Trace:
    """Per-frame arrays of a session, compact enough to keep for analysis.

    Attributes
    ----------
    feature_names : tuple of str
        Column names of ``values``.
    time : ndarray (n,)
        Frame times (s).
    values : ndarray (n, n_features)
        Feature values.
    flags : ndarray of int64 (n,)
        Quality flags.
    desired_on : ndarray of bool (n,)
        Whether the controller wanted stimulation.
    desired_amplitude_mA, allowed_amplitude_mA, allowed_frequency_Hz : ndarray (n,)
        Desired and allowed commands.
    """

    feature_names: tuple[str, ...]
    time: np.ndarray
    values: np.ndarray
    flags: np.ndarray
    desired_on: np.ndarray
    desired_amplitude_mA: np.ndarray
    allowed_amplitude_mA: np.ndarray
    allowed_frequency_Hz: np.ndarray

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def feature(self, name: str) -> np.ndarray:
        """One feature's column."""
        try:
            return self.values[:, self.feature_names.index(name)]
        except ValueError:
            raise KeyError(f"no feature {name!r}; the trace has {list(self.feature_names)}") from None

    @classmethod
    def from_xdf(cls, path) -> Trace:
        """Read the features and commands streams of a ``session.xdf`` closedloop wrote."""
        from closedloop.recording.reader import XDFReader

        reader = XDFReader(path)
        by_role = {s.desc("closedloop/role"): s for s in reader.streams.values()}
        if "features" not in by_role or "commands" not in by_role:
            raise ValueError(f"{path} has no closedloop features/commands streams (not a closedloop session?)")
        feats, t = reader.read_stream(by_role["features"].stream_id)
        cmds, _ = reader.read_stream(by_role["commands"].stream_id)
        names = tuple(by_role["features"].ch_names[:-2])
        return cls(
            names,
            t,
            feats[:, :-2].copy(),
            feats[:, -2].astype(np.int64),
            cmds[:, 0] > 0,
            cmds[:, 1].copy(),
            cmds[:, 4].copy(),
            cmds[:, 5].copy(),
        )


class TraceBuilder:
    """Collect steps into growing arrays (amortised doubling); :meth:`build` returns a :class:`Trace`."""

    def __init__(self, feature_names: Sequence[str], capacity: int = 1024) -> None:
        self.feature_names = tuple(feature_names)
        self.n = 0
        self._alloc(max(16, capacity))

    def _alloc(self, cap: int) -> None:
        nf = len(self.feature_names)
        old = getattr(self, "_cols", None)
        self._cols = np.empty((cap, nf + 6))
        if old is not None:
            self._cols[: self.n] = old[: self.n]

    def add(self, steps: Sequence) -> None:
        """Append the :class:`~closedloop.pipeline.Step` objects of one chunk."""
        k = len(steps)
        if self.n + k > self._cols.shape[0]:
            self._alloc(max(2 * self._cols.shape[0], self.n + k))
        nf = len(self.feature_names)
        cols = self._cols
        for i, s in enumerate(steps, start=self.n):
            cols[i, 0] = s.frame.time
            cols[i, 1 : 1 + nf] = s.frame.values
            cols[i, 1 + nf] = int(s.frame.flags)
            cols[i, 2 + nf] = s.desired.on
            cols[i, 3 + nf] = s.desired.amplitude_mA
            cols[i, 4 + nf] = s.allowed.amplitude_mA
            cols[i, 5 + nf] = s.allowed.frequency_Hz
        self.n += k

    def build(self) -> Trace:
        """Return the link the profile's options describe."""
        c = self._cols[: self.n]
        nf = len(self.feature_names)
        return Trace(
            self.feature_names,
            c[:, 0].copy(),
            c[:, 1 : 1 + nf].copy(),
            c[:, 1 + nf].astype(np.int64),
            c[:, 2 + nf] > 0,
            c[:, 3 + nf].copy(),
            c[:, 4 + nf].copy(),
            c[:, 5 + nf].copy(),
        )


def frame_weights(times: np.ndarray) -> np.ndarray:
    """Seconds each frame stands for: the interval to the next frame (last: the median interval)."""
    t = np.asarray(times, dtype=np.float64)
    if t.shape[0] == 0:
        return np.zeros(0)
    if t.shape[0] == 1:
        return np.zeros(1)
    d = np.diff(t)
    return np.append(d, np.median(d))


def _fraction(mask: np.ndarray, w: np.ndarray) -> float:
    total = float(w.sum())
    return float(w[mask].sum() / total) if total > 0 else math.nan


def duty_cycle(times: np.ndarray, amplitude_mA: np.ndarray) -> float:
    """Fraction of time with stimulation on (amplitude above zero); NaN for no data."""
    return _fraction(np.asarray(amplitude_mA) > 0, frame_weights(times))


def switches_per_minute(times: np.ndarray, on: np.ndarray) -> float:
    """On/off toggles of a boolean decision per minute of data."""
    t = np.asarray(times, dtype=np.float64)
    on = np.asarray(on, dtype=bool)
    minutes = float(frame_weights(t).sum()) / 60.0
    if minutes <= 0:
        return math.nan
    return int(np.count_nonzero(on[1:] != on[:-1])) / minutes


def dose_charge_C(times: np.ndarray, amplitude_mA: np.ndarray) -> float:
    """Charge ∫|I| dt in coulombs (trapezoid between frames; mA·s / 1000)."""
    t = np.asarray(times, dtype=np.float64)
    a = np.abs(np.asarray(amplitude_mA, dtype=np.float64))
    if t.shape[0] < 2:
        return 0.0
    return float(np.sum(0.5 * (a[1:] + a[:-1]) * np.diff(t)) / 1000.0)


def time_in_band(times: np.ndarray, values: np.ndarray, low: float, high: float) -> float:
    """Fraction of time a feature lies within ``[low, high]`` (non-finite values count as outside)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        inside = (v >= low) & (v <= high)
    return _fraction(inside, frame_weights(times))


def state_intervals(
    events: Iterable, states: Sequence[str] | None = None, end_time: float = math.inf
) -> list[tuple[float, float, str]]:
    """Annotated states as ``(start, stop, label)`` intervals.

    Events with a duration are intervals. Point markers are state changes
    only if their label is in ``states``: the state lasts until the next
    such marker (or ``end_time``). With ``states`` given, only those labels
    are kept. Labels starting with ``BAD`` or ``EDGE`` (MNE's rejections) are
    never states.

    Parameters
    ----------
    events : iterable of Event
        Anything with ``time``, ``duration`` and ``label``.
    states : list of str, optional
        The labels that name states.
    end_time : float
        End of the recording (closes the last point-marker state).
    """
    wanted = None if states is None else set(states)
    out: list[tuple[float, float, str]] = []
    changes = []
    for ev in sorted(events, key=lambda e: e.time):
        label = str(ev.label)
        if label.upper().startswith(("BAD", "EDGE")) or (wanted is not None and label not in wanted):
            continue
        if ev.duration > 0:
            out.append((float(ev.time), float(ev.time + ev.duration), label))
        elif wanted is not None:
            changes.append((float(ev.time), label))
    for k, (t, label) in enumerate(changes):
        stop = changes[k + 1][0] if k + 1 < len(changes) else end_time
        out.append((t, stop, label))
    out.sort()
    return out


def _in_intervals(times: np.ndarray, intervals: Iterable[tuple[float, float, str]], labels=None) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64)
    mask = np.zeros(t.shape[0], dtype=bool)
    for start, stop, label in intervals:
        if labels is None or label in labels:
            mask |= (t >= start) & (t < stop)
    return mask


def duty_by_state(times: np.ndarray, amplitude_mA: np.ndarray, intervals) -> dict[str, float]:
    """Duty cycle within each annotated state (label -> fraction; NaN if no frame falls in it)."""
    t = np.asarray(times, dtype=np.float64)
    w = frame_weights(t)
    stim = np.asarray(amplitude_mA) > 0
    out = {}
    for label in sorted({iv[2] for iv in intervals}):
        inside = _in_intervals(t, intervals, {label})
        out[label] = _fraction(stim[inside], w[inside]) if inside.any() else math.nan
    return out


def state_agreement(times: np.ndarray, amplitude_mA: np.ndarray, intervals, stim_states: Sequence[str]) -> float:
    """Fraction of time stimulation agrees with the states: on inside ``stim_states``, off elsewhere."""
    t = np.asarray(times, dtype=np.float64)
    want = _in_intervals(t, intervals, set(stim_states))
    stim = np.asarray(amplitude_mA) > 0
    return _fraction(stim == want, frame_weights(t))


def outcomes(
    trace: Trace,
    feature: str | None = None,
    band: tuple[float, float] | None = None,
    events: Iterable | None = None,
    states: Sequence[str] | None = None,
    stim_states: Sequence[str] | None = None,
) -> dict[str, float]:
    """Return the standard outcome table row of one run.

    Parameters
    ----------
    trace : Trace
        The run.
    feature : str, optional
        The controlled feature (for ``time_in_band``).
    band : (low, high), optional
        Target band of ``feature``.
    events : iterable of Event, optional
        Annotations and markers of the recording.
    states : list of str, optional
        Labels that name states (see :func:`state_intervals`).
    stim_states : list of str, optional
        States during which stimulation is wanted (for ``agreement``).

    Returns
    -------
    dict
        ``duty_cycle``, ``switches_per_min``, ``dose_C``, ``time_in_band``
        (if a band is given), ``duty_in_<state>`` per annotated state and
        ``agreement`` (if ``stim_states`` is given).
    """
    t, amp = trace.time, trace.allowed_amplitude_mA
    row = {
        "frames": float(len(trace)),
        "duty_cycle": duty_cycle(t, amp),
        "switches_per_min": switches_per_minute(t, trace.desired_on),
        "dose_C": dose_charge_C(t, amp),
    }
    if feature is not None and band is not None:
        row["time_in_band"] = time_in_band(t, trace.feature(feature), band[0], band[1])
    if events is not None:
        end = float(t[-1]) if len(trace) else math.inf
        wanted = None if states is None and stim_states is None else list(states or []) + list(stim_states or [])
        intervals = state_intervals(events, wanted, end_time=end)
        for label, value in duty_by_state(t, amp, intervals).items():
            row[f"duty_in_{label}"] = value
        if stim_states:
            row["agreement"] = state_agreement(t, amp, intervals, stim_states)
    return row
