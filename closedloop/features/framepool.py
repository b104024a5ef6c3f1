"""Recycled :class:`~closedloop.types.Frame` objects: no allocation per frame, and never a surprise.

The extractor must not allocate in steady state, yet callers are free to keep
frames (tests collect them; a controller may keep the last one). The pool
owns a ring of ``Frame`` objects, each with its own values array. A slot is
reused only when nothing outside the pool refers to its frame *or* to its
values array (nor to any view of it, since a view holds a reference to its
base): that is checked with :func:`sys.getrefcount` against counts measured
when the slot was made. A slot still in use is simply replaced by a fresh
frame, so a kept frame never changes under its holder. With frames handled
transiently (the runtime's case) the same objects come round again and
nothing is allocated.

The values arrays are read-only to their users (``values.flags.writeable``
is False): a consumer cannot corrupt a frame another consumer sees.
"""

from __future__ import annotations

import sys

import numpy as np

from closedloop.types import Frame, Quality

_QUALITY = tuple(Quality(i) for i in range(128))


class FramePool:
    """Frames with ``names``, handed out round-robin from ``n_slots`` reusable slots."""

    def __init__(self, names: tuple[str, ...], n_slots: int = 16) -> None:
        self.names = tuple(names)
        self._slots: list[Frame] = [self._new() for _ in range(max(int(n_slots), 2))]
        self._next = 0
        self.replaced = 0  # slots that were still held and had to be replaced (diagnostics)
        self._free_frame, self._free_values = self._baseline_counts()

    def _new(self) -> Frame:
        values = np.zeros(len(self.names))
        values.flags.writeable = False
        return Frame(0.0, values, self.names)

    def _baseline_counts(self) -> tuple[int, int]:
        frame = self._slots[0]
        return sys.getrefcount(frame), sys.getrefcount(frame.values)

    def ensure(self, n_slots: int) -> None:
        """Hold at least ``n_slots`` slots (at least twice the frames one step can emit)."""
        while len(self._slots) < n_slots:
            self._slots.append(self._new())

    def emit(self, k: int, rows: np.ndarray, times: np.ndarray, flags: np.ndarray, first_index: int) -> list[Frame]:
        """Frames for ``rows[:k]`` with their times, flag bits and running indices."""
        out = []
        slots = self._slots
        n = len(slots)
        for j in range(k):
            i = self._next
            self._next = (i + 1) % n
            frame = slots[i]
            if sys.getrefcount(frame) > self._free_frame or sys.getrefcount(frame.values) > self._free_values:
                frame = self._new()
                slots[i] = frame
                self.replaced += 1
            values = frame.values
            values.flags.writeable = True
            values[:] = rows[j]
            values.flags.writeable = False
            frame.time = float(times[j])
            frame.flags = _QUALITY[int(flags[j])]
            frame.index = first_index + j
            out.append(frame)
        return out
