"""The effective safety envelope of a pipeline: device limits, tightened by ``[safety]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from closedloop.config.validate import check_pipeline_limits
from closedloop.safety.events import SafetyEvent
from closedloop.safety.layer import SafetyLayer
from closedloop.safety.rtms import RTMSEnvelope
from closedloop.safety.tes import TESEnvelope
from closedloop.safety.tus import TUSEnvelope

if TYPE_CHECKING:
    from closedloop.config import ResolvedPipeline

__all__ = ["ENVELOPES", "build_envelope", "build_safety_layer", "check_pipeline_limits"]

#: The envelope class of each modality.
ENVELOPES = {"tes": TESEnvelope, "rtms": RTMSEnvelope, "tus": TUSEnvelope}


def build_envelope(resolved: ResolvedPipeline):
    """The envelope dataclass of a resolved pipeline's modality, from its effective limits."""
    modality = resolved.profile.device.modality
    return ENVELOPES[modality].from_envelope(resolved.envelope())


def build_safety_layer(
    resolved: ResolvedPipeline, on_event: Callable[[SafetyEvent], None] | None = None, auto_arm: bool = True
) -> SafetyLayer:
    """The safety layer enforcing a resolved pipeline's effective envelope (chosen by the profile's modality).

    ``auto_arm=True`` arms on the first frame, for a runtime that does not
    call :meth:`~closedloop.safety.layer.SafetyLayer.arm` itself.
    """
    return SafetyLayer(build_envelope(resolved), on_event=on_event, auto_arm=auto_arm)
