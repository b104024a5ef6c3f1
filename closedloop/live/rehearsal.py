"""Rehearsal: a busy-polling loop keeps its code warm by stepping a twin pipeline before each chunk.

At the stream's pace (a chunk every 10 ms) a pipeline step costs several times
more than back to back: its code goes cold between chunks, and running the
same code in between keeps it fast (docs/lsl-and-xdf.md, measured by
``benchmarks/bench_latency.py``). With ``[source] poll = "busy"`` the loop
thread spins on the inlet anyway (a core is spent), so it spends one step of
that time on a *twin*: a second :class:`~closedloop.pipeline.Pipeline` built
from the same configuration, fed a copy of the last real chunk on a time line
of its own, :data:`LEAD_S` before the next chunk is expected. What the twin
computes is thrown away.

The twin cannot reach the device or the recording: it has its own state,
its own sample clock and its own safety layer, and no adapter, recorder or
callback; the session's pipeline does not see it, so the session's frames
and commands are the same with it or without it. Should a twin step raise,
rehearsal stops for the session (:attr:`Rehearsal.error`) and the loop goes
on without it.
"""

from __future__ import annotations

import numpy as np

from closedloop.pipeline import Pipeline
from closedloop.session.clocks import SampleClock
from closedloop.types import Chunk

#: how long before the next chunk is due the twin steps (s). Later leaves the code warmer, but a twin step
#: still running when the chunk arrives delays it; 0.5–1 ms gave the lowest latency on the benchmark's VM.
LEAD_S = 0.001
#: chunks closer together than this keep the code warm by themselves: no rehearsal between them (s)
MIN_INTERVAL_S = 0.002


class Rehearsal:
    """A twin pipeline, stepped once per chunk, :data:`LEAD_S` before the next chunk is expected.

    Parameters
    ----------
    resolved : ResolvedPipeline
        The session's pipeline configuration.
    ch_names : list of str
        The source's channels, as the session's pipeline gets them.
    ch_types : list of str or None
        Their types, as the session's pipeline gets them.

    Attributes
    ----------
    due : float or None
        When the twin steps next, on the loop's clock (None: not before another chunk).
    steps : int
        Twin steps run.
    error : str or None
        Why rehearsal stopped, if a twin step raised.
    """

    def __init__(self, resolved, ch_names: list[str], ch_types: list[str] | None) -> None:
        cfg = resolved.config
        self.sfreq = float(cfg.sfreq)
        clock = SampleClock(cfg.sfreq, cfg.features.window_samples, cfg.features.hop_samples)
        self.twin = Pipeline(resolved, list(ch_names), clock=clock, ch_types=ch_types)
        self.twin.keep_state = False
        self._data: np.ndarray | None = None  # made on the first chunk, in its dtype: the twin takes the same path
        self._stamps = np.zeros(0)
        self._offsets = np.zeros(0)
        self._n = 0
        self._t = 0.0  # the twin's own time line: its chunks follow each other whatever the real ones do
        self._last_arrival: float | None = None
        self.interval_s: float | None = None  # running mean of the time between chunks
        self.due: float | None = None
        self.steps = 0
        self.error: str | None = None

    def after_chunk(self, chunk: Chunk, arrival: float) -> None:
        """Copy ``chunk`` (what the twin is fed next) and plan the twin's step before the next chunk."""
        data, n = chunk.data, chunk.n_samples
        if self.error is not None or n == 0 or data.ndim != 2:
            return
        buf = self._data
        if buf is None or buf.shape[0] < n or buf.dtype != data.dtype or buf.shape[1] != data.shape[1]:
            # grown for a larger chunk than any before (rare: the loop's commands for this one are out already)
            size = max(n, 64, 0 if buf is None else 2 * buf.shape[0])
            self._data = np.zeros((size, data.shape[1]), dtype=data.dtype)
            self._stamps = np.zeros(size)
            self._offsets = np.arange(size) / self.sfreq
        np.copyto(self._data[:n], data)
        self._n = n
        last, self._last_arrival = self._last_arrival, arrival
        if last is not None:
            gap = arrival - last
            self.interval_s = gap if self.interval_s is None else self.interval_s + 0.05 * (gap - self.interval_s)
        if self.interval_s is not None and self.interval_s >= MIN_INTERVAL_S:
            self.due = arrival + self.interval_s - LEAD_S
        else:
            self.due = None

    def step(self) -> None:
        """Run the twin once on the last chunk's copy; its frames and commands are thrown away."""
        self.due = None
        n = self._n
        if n == 0 or self._data is None:
            return
        stamps = self._stamps[:n]
        np.add(self._offsets[:n], self._t, out=stamps)
        self._t += n / self.sfreq
        try:
            self.twin.process(Chunk(self._data[:n], stamps))
        except Exception as e:  # noqa: BLE001 - the twin must never end a session: rehearsal stops instead
            self.error = f"{type(e).__name__}: {e}"
            self._n = 0
            return
        self.steps += 1
