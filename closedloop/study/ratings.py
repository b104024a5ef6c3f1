"""Ratings recorded in a session (pain, comfort...): found, read and summarised.

A rating stream is any stream of ``session.xdf`` recorded besides the EEG
whose LSL type or name contains ``rating`` (case-insensitive), e.g. a
``[[recording.streams]]`` entry ``type = "Ratings"``. Each sample's first
channel is the rating (a number, or text that reads as one); samples that
are not numbers are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Rating", "is_rating_stream", "read_ratings", "summarize_ratings"]


@dataclass(frozen=True)
class Rating:
    """One rating: its time (the stream's clock, s), value and stream name."""

    time: float
    value: float
    stream: str


def is_rating_stream(stream) -> bool:
    """Return whether an :class:`~closedloop.recording.reader.XDFStream` holds ratings."""
    return "rating" in (stream.type or "").lower() or "rating" in (stream.name or "").lower()


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_ratings(reader_or_path) -> list[Rating]:
    """Return every rating of a recording, in time order.

    Parameters
    ----------
    reader_or_path : XDFReader or str or Path
        The session's ``session.xdf`` (or an open reader).
    """
    from closedloop.recording.reader import XDFReader

    reader = reader_or_path if isinstance(reader_or_path, XDFReader) else XDFReader(Path(reader_or_path))
    out: list[Rating] = []
    for s in reader.streams.values():
        if not is_rating_stream(s) or s.sample_count == 0:
            continue
        if s.channel_format == "string":
            for row, t in zip(s.strings, s.string_stamps.tolist()):
                v = _number(row[0]) if row else None
                if v is not None:
                    out.append(Rating(float(t), v, s.name))
        else:
            values, stamps = reader.read_stream(s.stream_id)
            for v, t in zip(np.asarray(values, dtype=float)[:, 0].tolist(), stamps.tolist()):
                if math.isfinite(v):
                    out.append(Rating(float(t), float(v), s.name))
    out.sort(key=lambda r: r.time)
    return out


def summarize_ratings(ratings: list[Rating]) -> dict[str, float]:
    """Return ``n``, ``mean``, ``min``, ``max``, ``first`` and ``last`` of ratings (``{"n": 0}`` for none)."""
    if not ratings:
        return {"n": 0}
    v = np.array([r.value for r in ratings])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
        "first": float(v[0]),
        "last": float(v[-1]),
    }
