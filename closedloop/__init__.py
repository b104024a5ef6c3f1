"""closedloop: closed-loop, EEG-guided noninvasive brain stimulation research over LSL.

The one-way data path (see docs/architecture.md)::

    Source ─Chunk─▶ Preprocessor ─▶ FeatureExtractor ─Frame─▶ Controller ─Command─▶ SafetyLayer ─▶ Adapter
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("closedloop")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

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
