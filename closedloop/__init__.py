"""closedloop: closed-loop, EEG-guided noninvasive brain stimulation research over LSL.

The one-way data path (see docs/architecture.md)::

    Source ─Chunk─▶ Preprocessor ─▶ FeatureExtractor ─Frame─▶ Controller ─Command─▶ SafetyLayer ─▶ Adapter

The names below are imported on first use, so that ``import closedloop.config``
(the schema) or ``closedloop --help`` loads no stage code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> module it lives in.
_EXPORTS = {
    "Adapter": "closedloop.adapters",
    "LimitViolation": "closedloop.adapters",
    "SimulatedStimulator": "closedloop.adapters",
    "build_adapter": "closedloop.adapters",
    "PipelineConfig": "closedloop.config",
    "PipelineError": "closedloop.config",
    "ResolvedPipeline": "closedloop.config",
    "load_pipeline": "closedloop.config",
    "DeviceProfile": "closedloop.config.profile",
    "load_profile": "closedloop.config.profile",
    "Controller": "closedloop.control",
    "ThresholdController": "closedloop.control",
    "build_controller": "closedloop.control",
    "BandPower": "closedloop.features",
    "FeatureExtractor": "closedloop.features",
    "configure_lsl": "closedloop.lslconfig",
    "Pipeline": "closedloop.pipeline",
    "Step": "closedloop.pipeline",
    "Preprocessor": "closedloop.preprocess",
    "SafetyEvent": "closedloop.safety",
    "SafetyLayer": "closedloop.safety",
    "TESEnvelope": "closedloop.safety",
    "Chunk": "closedloop.types",
    "Command": "closedloop.types",
    "Frame": "closedloop.types",
    "Quality": "closedloop.types",
}

if TYPE_CHECKING:
    from closedloop.adapters import Adapter, LimitViolation, SimulatedStimulator, build_adapter
    from closedloop.config import PipelineConfig, PipelineError, ResolvedPipeline, load_pipeline
    from closedloop.config.profile import DeviceProfile, load_profile
    from closedloop.control import Controller, ThresholdController, build_controller
    from closedloop.features import BandPower, FeatureExtractor
    from closedloop.lslconfig import configure_lsl
    from closedloop.pipeline import Pipeline, Step
    from closedloop.preprocess import Preprocessor
    from closedloop.safety import SafetyEvent, SafetyLayer, TESEnvelope
    from closedloop.types import Chunk, Command, Frame, Quality

    __version__: str


def _version() -> str:
    """Return the installed distribution's version (importlib.metadata costs ~30 ms: looked up on first use)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("closedloop")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+src"


def __getattr__(name: str) -> Any:
    """Import a public name (or look ``__version__`` up) on first use."""
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'closedloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})


__all__ = [
    "Adapter",
    "BandPower",
    "Chunk",
    "Command",
    "Controller",
    "DeviceProfile",
    "FeatureExtractor",
    "Frame",
    "LimitViolation",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "Preprocessor",
    "Quality",
    "ResolvedPipeline",
    "SafetyEvent",
    "SafetyLayer",
    "SimulatedStimulator",
    "Step",
    "TESEnvelope",
    "ThresholdController",
    "__version__",
    "build_adapter",
    "build_controller",
    "configure_lsl",
    "load_pipeline",
    "load_profile",
]
