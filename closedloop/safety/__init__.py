"""The safety layer, separate from controllers and adapters."""

from closedloop.safety.layer import SafetyEvent, SafetyLayer, TESEnvelope

__all__ = ["SafetyEvent", "SafetyLayer", "TESEnvelope"]
