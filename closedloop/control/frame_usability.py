"""Which frames a controller may act on."""

from __future__ import annotations

import math

from closedloop.types import Frame, Quality

#: Flags that make a frame unusable for a control decision.
BAD_FLAGS = Quality.ARTIFACT | Quality.FLAT | Quality.NONFINITE | Quality.GAP | Quality.SATURATION


def usable(frame: Frame, value: float) -> bool:
    """Whether ``value`` (read from ``frame``) may drive a decision: finite and not flagged bad."""
    flags = frame.flags
    # ``flags &`` runs enum code (~1 µs); most frames carry no flag at all
    return math.isfinite(value) and not (flags and flags & BAD_FLAGS)
