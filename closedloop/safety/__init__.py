"""The safety layer, separate from controllers and adapters."""

from closedloop.safety.envelope import build_safety_layer, check_pipeline_limits
from closedloop.safety.layer import SafetyEvent, SafetyLayer, TESEnvelope

__all__ = ["SafetyEvent", "SafetyLayer", "TESEnvelope", "build_safety_layer", "check_pipeline_limits"]
