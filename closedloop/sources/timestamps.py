"""Check a live source's timestamps against the local clock: a source's clock is not ours.

LSL timestamps are whatever the sender writes: Unix-epoch time, a clock that
steps back or jumps ahead. Features run on those timestamps (the sample
clock), but safety never does (see :mod:`closedloop.session.clocks`), and a
source whose timestamps stay far from the local clock is not trusted for
long: :class:`TimestampMonitor` notes each non-monotonic step, each jump and
each chunk whose newest sample is far from the local clock (after the clock
offset measured when the stream was opened); when the problem persists past
``timeout_s`` it declares the source bad, and the session ramps stimulation
down and ends with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimestampProblem:
    """One thing wrong with a chunk's timestamps.

    Attributes
    ----------
    kind : str
        ``"backwards"`` (earlier than the previous chunk), ``"jump"`` (a step
        larger than the tolerance) or ``"far"`` (far from the local clock).
    reason : str
        For the event log.
    """

    kind: str
    reason: str


class TimestampMonitor:
    """Watch a source's chunk timestamps; declare the source bad when they stay wrong.

    Parameters
    ----------
    sfreq : float
        The stream's nominal rate (Hz).
    tolerance_s : float
        Largest allowed jump between consecutive chunks beyond the sample
        period, and largest allowed distance between a chunk's newest sample
        and the local clock (data age, in either direction).
    timeout_s : float
        How long the timestamps may stay far from the local clock before the
        source is declared bad.
    """

    def __init__(self, sfreq: float, tolerance_s: float, timeout_s: float) -> None:
        if not (tolerance_s > 0 and timeout_s > 0):
            raise ValueError("tolerance_s and timeout_s must be > 0")
        self.period = 1.0 / sfreq
        self.tolerance_s = tolerance_s
        self.timeout_s = timeout_s
        self.last: float | None = None
        self.far_since: float | None = None
        self.problems = 0
        self.bad_reason: str | None = None

    def check(self, first: float, newest: float, data_age: float, now: float) -> list[TimestampProblem]:
        """Check one chunk; return what is wrong with it (empty when nothing is).

        Parameters
        ----------
        first, newest : float
            The chunk's first and newest sample times (pipeline time base).
        data_age : float
            Local clock minus the newest sample time, corrected for the
            measured clock offset and drift (s).
        now : float
            The local clock.
        """
        found: list[TimestampProblem] = []
        if not (math.isfinite(first) and math.isfinite(newest)):
            found.append(TimestampProblem("far", f"non-finite timestamps ({first!r}, {newest!r})"))
        else:
            if self.last is not None:
                step = first - self.last - self.period
                if first < self.last:
                    found.append(TimestampProblem("backwards", f"timestamps went back by {self.last - first:.6g} s"))
                elif step > self.tolerance_s:
                    found.append(TimestampProblem("jump", f"timestamps jumped ahead by {step:.6g} s"))
            self.last = newest
            if not abs(data_age) <= self.tolerance_s:
                where = "ahead of" if data_age < 0 else "behind"
                found.append(
                    TimestampProblem(
                        "far",
                        f"newest sample stamped {abs(data_age):.6g} s {where} the local clock "
                        f"(tolerance {self.tolerance_s:g} s)",
                    )
                )
        if any(p.kind == "far" for p in found):
            if self.far_since is None:
                self.far_since = now
            elif now - self.far_since > self.timeout_s and self.bad_reason is None:
                self.bad_reason = (
                    f"source clock untrustworthy: its timestamps stayed more than {self.tolerance_s:g} s from the "
                    f"local clock for {now - self.far_since:.3g} s (> {self.timeout_s:g} s); "
                    f"last: {[p.reason for p in found if p.kind == 'far'][-1]}"
                )
        else:
            self.far_since = None
        self.problems += len(found)
        return found
