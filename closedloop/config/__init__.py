"""Pipeline files and device profiles as schema, validated before anything starts."""

from closedloop.config.pipeline import (
    LSLSourceConfig,
    PipelineConfig,
    PipelineError,
    ResolvedPipeline,
    SyntheticSourceConfig,
    feature_names,
    load_pipeline,
)

__all__ = [
    "LSLSourceConfig",
    "PipelineConfig",
    "PipelineError",
    "ResolvedPipeline",
    "SyntheticSourceConfig",
    "feature_names",
    "load_pipeline",
]
