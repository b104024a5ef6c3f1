"""Pipeline files and device profiles as schema, validated before anything starts.

Pure data: importing this package loads no stage code (no numba, no
scipy.signal, no controllers, features, safety layers or adapters).

- :mod:`.base`: the strict base model and how errors read;
- :mod:`.sources`, :mod:`.features`, :mod:`.controllers`, :mod:`.safety`:
  the sections of a pipeline; :mod:`.profile`: device profiles and lookup;
- :mod:`.pipeline`: the whole pipeline; :mod:`.validate`: checks that span
  sections; :mod:`.load`: reading, overrides and resolution.
"""

from closedloop.config.controllers import (
    BaselineControllerConfig,
    ControllerConfig,
    DualThresholdConfig,
    PhaseTriggerConfig,
    PIConfig,
    RTMSPhaseTriggerConfig,
    RTMSTriggerConfig,
    ScheduleConfig,
    ThresholdConfig,
    TriggerConfig,
    TUSPhaseTriggerConfig,
    TUSTriggerConfig,
)
from closedloop.config.features import FeaturesConfig, PhaseConfig, PreprocessConfig
from closedloop.config.load import PipelineError, find_pipeline, load_pipeline, parse_overrides
from closedloop.config.pipeline import PipelineConfig, ResolvedPipeline
from closedloop.config.profile import DeviceProfile, find_profile, load_profile
from closedloop.config.safety import SafetyOverrides
from closedloop.config.sources import FileSourceConfig, LSLSourceConfig, SourceConfig, SyntheticSourceConfig
from closedloop.config.validate import feature_names, pipeline_warnings

__all__ = [
    "BaselineControllerConfig",
    "ControllerConfig",
    "DeviceProfile",
    "DualThresholdConfig",
    "FeaturesConfig",
    "FileSourceConfig",
    "LSLSourceConfig",
    "PIConfig",
    "PhaseConfig",
    "PhaseTriggerConfig",
    "PipelineConfig",
    "PipelineError",
    "PreprocessConfig",
    "RTMSPhaseTriggerConfig",
    "RTMSTriggerConfig",
    "ResolvedPipeline",
    "SafetyOverrides",
    "ScheduleConfig",
    "SourceConfig",
    "SyntheticSourceConfig",
    "TUSPhaseTriggerConfig",
    "TUSTriggerConfig",
    "ThresholdConfig",
    "TriggerConfig",
    "feature_names",
    "find_pipeline",
    "find_profile",
    "load_pipeline",
    "load_profile",
    "parse_overrides",
    "pipeline_warnings",
]
