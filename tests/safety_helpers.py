"""Drive a safety layer on a hand-moved clock: the layer reads its own, injected clock."""

from __future__ import annotations

from closedloop.safety import SafetyLayer, safety_layer_for
from closedloop.session.clocks import ManualClock


def make(envelope, t0: float = 0.0, **kwargs) -> SafetyLayer:
    """Return the layer for ``envelope`` on a :class:`ManualClock` starting at ``t0``."""
    return safety_layer_for(envelope, ManualClock(t0), **kwargs)


def at(layer: SafetyLayer, t: float) -> SafetyLayer:
    """Set ``layer``'s manual clock to ``t`` and return the layer (``at(s, 1.5).step(cmd)``)."""
    layer.clock.t = t
    return layer
