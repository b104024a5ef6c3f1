"""The source contract: what the live runtime and the recording call on an opened EEG source.

A live source is resolved and checked by :meth:`Source.open`, then pulled
with a timeout (the loop never sleeps on a timer). It hands the pipeline
chunks in µV on the pipeline's time base, and keeps what arrived exactly as
received (:attr:`Source.raw_data`, :attr:`Source.raw_timestamps`) for the
recording. :class:`~closedloop.sources.lsl.LSLSource` is the built-in one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from closedloop.types import Chunk


@runtime_checkable
class Source(Protocol):
    """An EEG source as the live runtime uses it.

    Attributes
    ----------
    ch_names, ch_types : list of str
        The stream's channels and their types (``EEG``, ``ECG``, ...), after :meth:`open`.
    sfreq : float
        The nominal sample rate (Hz).
    notes : list of str
        What the operator should know about the stream (units assumed, channels left out...).
    raw_data, raw_timestamps : ndarray
        The last chunk exactly as received (the stream's unit; its own timestamps).
    newest_time : float
        Time of the newest sample received (pipeline time base).
    data_age : float
        Local clock minus the newest sample's time at the last pull (s).
    backlog : bool
        The last pull filled the whole buffer (the loop is behind).
    kept : bool
        The last pull returned samples :meth:`flush` kept at the start (the
        first feature window), not a backlog.
    stalled : bool
        No sample for more than :attr:`stall_timeout_s`.
    stall_timeout_s : float
        How long without a sample counts as stalled.
    samples_in : int
        Samples received.
    clock_offset, pipeline_offset : float
        The latest measured clock offset, and the one the pipeline's time base uses.
    last_offset_time : float
        Local time of the latest clock offset measurement.
    on_offset : callable or None
        Called with ``(collection_time, offset)`` on every new measurement (the recording).
    """

    ch_names: list[str]
    ch_types: list[str]
    sfreq: float
    notes: list[str]
    raw_data: np.ndarray
    raw_timestamps: np.ndarray
    newest_time: float
    data_age: float
    backlog: bool
    kept: bool
    stalled: bool
    stall_timeout_s: float
    samples_in: int
    clock_offset: float
    pipeline_offset: float
    last_offset_time: float
    on_offset: Callable[[float, float], None] | None

    def open(self) -> None:
        """Find the stream, check it against the pipeline and measure its clock offset."""
        ...

    def describe(self) -> str:
        """Return one line for the operator: the stream, its channels, rate and unit."""
        ...

    def stream_info(self) -> dict:
        """Return the stream as the recording describes it (name, type, source_id, rate, channels, units...)."""
        ...

    def pull(self, timeout: float) -> Chunk | None:
        """Wait up to ``timeout`` s for samples; return them (µV, pipeline time base) or ``None``."""
        ...

    def flush(self, keep: int = 0) -> int:
        """Drop what queued before the session starts but the newest ``keep`` samples; return how many were dropped.

        The kept samples come back from the next :meth:`pull` calls, oldest first.
        """
        ...

    def local_time(self, pipeline_time: float) -> float:
        """Convert a pipeline time to the local clock with the latest offset."""
        ...

    def close(self) -> None:
        """Release the stream."""
        ...
