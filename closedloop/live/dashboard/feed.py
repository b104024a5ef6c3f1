"""The loop's side of the live dashboard: bounded queues the loop appends to and never waits on.

Every ``on_*`` call copies a few numbers and appends them to a
:class:`collections.deque` with a maximum length: an append never blocks
and never fails; when the dashboard thread falls behind, the oldest *UI*
items fall out (counted in :attr:`LiveFeed.dropped`) — the loop's own frames
are untouched. The dashboard thread calls :meth:`LiveFeed.drain` a few tens of
times a second to move what arrived into a
:class:`~closedloop.live.dashboard.state.DashboardState`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from closedloop.live.dashboard.state import DashboardState


class LiveFeed:
    """Queues between the session loop and the dashboard thread.

    Parameters
    ----------
    ch_names : sequence of str
        The stream's channels, in order.
    display : sequence of str
        Channels drawn on the page.
    roi : sequence of str
        Channels whose mean gives the spectrum.
    max_chunks : int
        EEG chunks held before the oldest are dropped.
    """

    def __init__(self, ch_names: Sequence[str], display: Sequence[str], roi: Sequence[str], max_chunks: int = 2000):
        ch = list(ch_names)
        cols = list(dict.fromkeys([*display, *roi]))  # display first, then the ROI channels not shown
        self._cols = np.array([ch.index(c) for c in cols], dtype=np.intp)
        self._n_display = len(display)
        self._roi_cols = np.array([cols.index(c) for c in roi], dtype=np.intp)
        self.eeg: deque = deque(maxlen=max_chunks)
        self.frames: deque = deque(maxlen=max_chunks)
        self.applied: deque = deque(maxlen=4 * max_chunks)
        self.events: deque = deque(maxlen=1000)
        self.dropped = 0

    # -- the loop's calls --------------------------------------------------------------------
    def on_chunk(self, chunk) -> None:
        """Queue a chunk's display and ROI channels (µV, pipeline time base)."""
        if len(self.eeg) == self.eeg.maxlen:
            self.dropped += 1
        self.eeg.append((float(chunk.timestamps[0]), chunk.data[:, self._cols]))

    def on_frames(
        self,
        steps: Sequence,
        output: str,
        safety,
        shown_state: Mapping[str, float] | None,
        latency_s: float,
        data_age_s: float,
    ) -> None:
        """Queue a chunk's frames with the status after them (what the device does, dose, timing)."""
        if len(self.frames) == self.frames.maxlen:
            self.dropped += 1
        last = steps[-1]
        t_start = safety.t_start
        self.frames.append(
            (
                [(s.frame.time, s.frame.values.copy(), int(s.frame.flags)) for s in steps],
                [(s.frame.time, s.desired.amplitude_mA if s.desired.on else 0.0) for s in steps],
                {
                    "output": output,
                    "amplitude_mA": last.allowed.amplitude_mA,
                    "safety_state": safety.state.value,
                    "dose": safety.dose,
                    "session_s": (safety.t - t_start) if t_start is not None else None,
                    "controller": dict(shown_state if shown_state is not None else (last.state or {})),
                    "flags": int(last.frame.flags),
                },
                latency_s,
                data_age_s,
            )
        )

    def on_applied(self, command, issue_time: float, latency_s: float) -> None:
        """Queue a command the adapter issued (any thread that applies commands)."""
        self.applied.append((issue_time, command.amplitude_mA, command.on, command.fire))

    def on_event(self, event) -> None:
        """Queue a safety event (any thread)."""
        self.events.append((event.time, event.kind, event.reason))

    def marker(self, time: float, event: str, **fields: object) -> None:
        """Queue a session marker for the event log."""
        text = event + "".join(f"; {k}: {v}" for k, v in fields.items() if v not in (None, ""))
        self.events.append((time, "session", text))

    # -- the dashboard thread's call ----------------------------------------------------------------
    def drain(self, state: DashboardState) -> None:
        """Move everything queued into ``state``."""
        nd = self._n_display
        roi = self._roi_cols
        while self.eeg:
            t0, data = self.eeg.popleft()
            data = np.asarray(data, dtype=np.float64)
            state.add_eeg(t0, data[:, :nd], data[:, roi].mean(axis=1) if roi.size else None)
        while self.frames:
            frames, desired, status, latency, age = self.frames.popleft()
            state.add_frames(frames)
            for t, a in desired:
                state.add_desired(t, a)
            state.status.update(status)
            state.add_timing(latency, age)
        while self.applied:
            t, a, on, fire = self.applied.popleft()
            state.add_applied(t, a, on, fire)
        while self.events:
            t, kind, reason = self.events.popleft()
            state.add_event(t if math.isfinite(t) else (state.t0 or 0.0), kind, reason)
