"""Shared pieces of the safety property tests: random programs of timed operations."""

from __future__ import annotations

import math


def fraction(b: bytes, i: int) -> float:
    """Two bytes of a program as a fraction in [0, 1]."""
    return (b[i] << 8 | b[i + 1]) / 65535.0


class ProgramClock:
    """The time a program sets the layer's clock to, and the layer's clock as the test tracks it.

    ``advance(dt)`` returns the time of the next call: the latest valid time plus ``dt`` (a
    backward step gives one earlier time, which the layer must refuse, and the program then
    goes on from where it was), or the non-finite step itself. ``clock`` is the largest finite
    time seen (the layer never goes back); ``gap`` becomes true once the clock jumped by more
    than ``horizon`` (the watchdog timeout).
    """

    def __init__(self, t0: float, horizon: float) -> None:
        self.t_raw = t0
        self.horizon = horizon
        self.clock: float | None = None
        self.gap = False

    def advance(self, dt: float) -> float:
        if math.isfinite(dt):
            t = self.t_raw + dt
            if t >= self.t_raw:
                self.t_raw = t
        else:
            t = dt
        prev = self.clock
        if math.isfinite(t) and (self.clock is None or t > self.clock):
            self.clock = t
        if prev is not None and self.clock - prev > self.horizon:
            self.gap = True
        return t


def call_at(layer, t: float, method: str, *args, **kwargs):
    """Set ``layer``'s manual clock to ``t`` and call ``method``; return the command, or ``None`` if refused.

    The layer must raise :class:`~closedloop.safety.SafetyClockError` exactly when ``t`` is not
    finite or earlier than its own clock, and then change nothing (both asserted here).
    """
    import math as _math

    from closedloop.safety import SafetyClockError

    expect_error = not _math.isfinite(t) or (layer.t is not None and t < layer.t)
    before = (layer.t, layer.state, layer.amplitude_mA, layer.account.charge_C, layer.account.stim_time_s)
    layer.clock.t = t
    try:
        out = getattr(layer, method)(*args, **kwargs)
    except SafetyClockError:
        assert expect_error, f"clock error at t={t!r} (layer at {layer.t!r})"
        assert before == (layer.t, layer.state, layer.amplitude_mA, layer.account.charge_C, layer.account.stim_time_s)
        return None
    assert not expect_error, f"t={t!r} before the layer's clock {before[0]!r} was accepted"
    return out
