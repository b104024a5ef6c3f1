"""Shared pieces of the safety property tests: random programs of timed operations."""

from __future__ import annotations

import math


def fraction(b: bytes, i: int) -> float:
    """Two bytes of a program as a fraction in [0, 1]."""
    return (b[i] << 8 | b[i + 1]) / 65535.0


class ProgramClock:
    """The time a program drives the safety layer with, and the layer's clock as the test tracks it.

    ``advance(dt)`` returns the time of the next call: ``t0`` plus the finite steps so far, or the
    non-finite step itself. ``clock`` is the largest finite time seen (the layer never goes back);
    ``gap`` becomes true once the clock jumped by more than ``horizon`` (the watchdog timeout).
    """

    def __init__(self, t0: float, horizon: float) -> None:
        self.t_raw = t0
        self.horizon = horizon
        self.clock: float | None = None
        self.gap = False

    def advance(self, dt: float) -> float:
        if math.isfinite(dt):
            self.t_raw += dt
            t = self.t_raw
        else:
            t = dt
        prev = self.clock
        if math.isfinite(t) and (self.clock is None or t > self.clock):
            self.clock = t
        if prev is not None and self.clock - prev > self.horizon:
            self.gap = True
        return t
