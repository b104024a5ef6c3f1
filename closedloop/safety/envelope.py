"""The effective safety envelope of a pipeline: device limits, tightened by ``[safety]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from closedloop.safety.events import SafetyEvent
from closedloop.safety.layer import SafetyLayer
from closedloop.safety.rtms import RTMSEnvelope, RTMSSafetyLayer
from closedloop.safety.tes import TESEnvelope, TESSafetyLayer
from closedloop.safety.tus import TUSEnvelope, TUSSafetyLayer

if TYPE_CHECKING:
    from closedloop.config import ResolvedPipeline

__all__ = ["ENVELOPES", "LAYERS", "build_envelope", "build_safety_layer", "safety_layer_for"]

#: The envelope class of each modality.
ENVELOPES = {"tes": TESEnvelope, "rtms": RTMSEnvelope, "tus": TUSEnvelope}


def build_envelope(resolved: ResolvedPipeline):
    """Return the envelope dataclass of a resolved pipeline's modality, from its effective limits.

    Raises
    ------
    ValueError
        For a features-only pipeline (no device profile: nothing to stimulate).
    """
    if resolved.profile is None:
        raise ValueError(f"pipeline {resolved.path} names no device profile: it cannot stimulate")
    env_type: Any = ENVELOPES[resolved.profile.device.modality]
    return env_type.from_envelope(resolved.envelope())


#: The safety layer of each envelope type.
LAYERS: dict[type, type[SafetyLayer]] = {
    TESEnvelope: TESSafetyLayer,
    RTMSEnvelope: RTMSSafetyLayer,
    TUSEnvelope: TUSSafetyLayer,
}


def safety_layer_for(
    envelope,
    clock: Callable[[], float],
    on_event: Callable[[SafetyEvent], None] | None = None,
    auto_arm: bool = True,
) -> SafetyLayer:
    """Return the safety layer that enforces ``envelope`` (chosen by its type) on ``clock``.

    Raises
    ------
    TypeError
        If no layer enforces that kind of envelope.
    """
    try:
        layer = LAYERS[type(envelope)]
    except KeyError:
        raise TypeError(f"no safety layer for envelope type {type(envelope).__name__}") from None
    return layer(envelope, clock, on_event=on_event, auto_arm=auto_arm)


def build_safety_layer(
    resolved: ResolvedPipeline,
    clock: Callable[[], float],
    on_event: Callable[[SafetyEvent], None] | None = None,
    auto_arm: bool = True,
) -> SafetyLayer:
    """Return the safety layer enforcing a resolved pipeline's effective envelope on ``clock``.

    ``auto_arm=True`` arms on the first frame, for a runtime that does not
    call :meth:`~closedloop.safety.layer.SafetyLayer.arm` itself.
    """
    return safety_layer_for(build_envelope(resolved), clock, on_event=on_event, auto_arm=auto_arm)
