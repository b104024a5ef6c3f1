"""The clocks a safety layer can run on: trusted, monotonic, injected.

The safety layer integrates ramps, dose and timeouts on its own clock and
never on a source's timestamps (a source may stamp in Unix-epoch time, step
back or jump). A :class:`SafetyClock` is a callable returning seconds that
never decrease; the pipeline tells it about each frame just before the safety
layer is stepped for that frame (:meth:`SafetyClock.on_frame`), which is all a
replay needs to run the layer deterministically:

- :class:`MonotonicClock` — live: the local monotonic LSL clock, read at the
  moment a command is applied; frames do not move it.
- :class:`SampleClock` — offline: the time of the frame's newest sample counted
  from the sample rate (``first + n / sfreq``), so it is monotonic and
  deterministic whatever the recording's timestamps say.
- :class:`RecordedClock` — replay of a closedloop recording: the safety-layer
  times the live session recorded for each frame, so the replay reproduces the
  live commands exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from closedloop.types import Frame


class SafetyClock(Protocol):
    """A monotonic clock for the safety layer (seconds)."""

    def __call__(self) -> float:
        """Return the time now."""
        ...

    def on_frame(self, frame: Frame) -> None:
        """Take note that the safety layer is about to be stepped for ``frame``."""
        ...


class MonotonicClock:
    """The local monotonic clock (live sessions); frames do not move it.

    Parameters
    ----------
    now : callable, optional
        The clock function (default ``pylsl.local_clock``, after
        :func:`closedloop.lslconfig.configure_lsl`).
    """

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        if now is None:
            from closedloop.lslconfig import configure_lsl

            configure_lsl()
            import pylsl

            now = pylsl.local_clock
        self._now = now

    def __call__(self) -> float:
        """Return the local clock now."""
        return self._now()

    def on_frame(self, frame: Frame) -> None:
        """Do nothing: the local clock does not follow frames."""


class SampleClock:
    """The sample clock: the time of each frame's newest sample, counted from the sample rate.

    Frame ``j`` ends at sample ``window + j * hop`` (the extractor's rule), so
    its time is ``origin + (window + j * hop - 1) / sfreq``, where ``origin``
    is fixed by the first frame's timestamp. Non-monotonic or jumping
    timestamps in a recording cannot move this clock backwards.

    Parameters
    ----------
    sfreq : float
        Sample rate (Hz).
    window, hop : int
        The extractor's window and hop (samples).
    """

    def __init__(self, sfreq: float, window: int, hop: int) -> None:
        self.sfreq = float(sfreq)
        self.window = int(window)
        self.hop = int(hop)
        self.origin: float | None = None
        self.t = 0.0

    def _offset(self, index: int) -> float:
        return (self.window + index * self.hop - 1) / self.sfreq

    def __call__(self) -> float:
        """Return the time of the newest frame seen (0 before the first)."""
        return self.t

    def on_frame(self, frame: Frame) -> None:
        """Move to the time of ``frame``'s newest sample."""
        if self.origin is None:
            first = float(frame.time) if np.isfinite(frame.time) else 0.0
            self.origin = first - self._offset(frame.index)
        self.t = self.origin + (self.window + frame.index * self.hop - 1) / self.sfreq  # _offset, inline


class RecordedClock:
    """The safety-layer times a live session recorded, one per frame index.

    Frames beyond the recorded ones (or a recording without them) fall back
    to a :class:`SampleClock` that continues from the last recorded time.

    Parameters
    ----------
    times : sequence of float
        ``times[j]`` is the safety clock when frame ``j`` was stepped.
    fallback : SampleClock
        Used for frames the recording has no time for.
    """

    def __init__(self, times: Sequence[float], fallback: SampleClock) -> None:
        self.times = np.asarray(times, dtype=float)
        self.fallback = fallback
        self.t = 0.0

    def __call__(self) -> float:
        """Return the recorded time of the newest frame seen."""
        return self.t

    def on_frame(self, frame: Frame) -> None:
        """Move to the time recorded for ``frame`` (or continue on the sample clock)."""
        j = frame.index
        if 0 <= j < self.times.shape[0] and np.isfinite(self.times[j]):
            self.t = float(self.times[j])
            return
        self.fallback.on_frame(frame)
        self.t = max(self.t, self.fallback())


class ManualClock:
    """A clock moved by hand (tests, simulations): ``clock.t = 2.5`` or ``clock.advance(0.1)``.

    Parameters
    ----------
    t : float
        The starting time (s).
    """

    def __init__(self, t: float = 0.0) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        """Return the time set."""
        return self.t

    def advance(self, dt: float) -> float:
        """Move forward by ``dt`` seconds; return the new time."""
        self.t += dt
        return self.t

    def on_frame(self, frame: Frame) -> None:
        """Do nothing: the clock moves only by hand."""
