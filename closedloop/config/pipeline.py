"""A pipeline file: one TOML file describes a whole session (see ``pipelines/alpha_tacs.toml``).

The sections are the models of :mod:`closedloop.config.sources`,
:mod:`~closedloop.config.features`, :mod:`~closedloop.config.controllers`
and :mod:`~closedloop.config.safety`; checks that span sections live in
:mod:`closedloop.config.validate`, reading and resolving in
:mod:`closedloop.config.load`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from closedloop.config.base import StrictModel
from closedloop.config.controllers import ControllerConfig
from closedloop.config.features import FeaturesConfig, PreprocessConfig
from closedloop.config.profile import DeviceProfile
from closedloop.config.safety import SafetyOverrides
from closedloop.config.sources import SourceConfig


class DeviceConfig(StrictModel):
    """``[device]``: the device profile, and the participant's values the adapter needs."""

    profile: str = Field(min_length=1, description="device profile name (devices/NAME.toml) or path")
    motor_threshold_pct_mso: float | None = Field(
        None,
        gt=0,
        le=100,
        description="rTMS: the participant's resting motor threshold in % of maximum stimulator output; "
        "converts %MT intensities to the stimulator's %MSO setting",
    )


class OutputConfig(StrictModel):
    """``[output]``: where session folders go, and what a live session shows and publishes (docs/dashboard.md)."""

    folder: str = Field("sessions", min_length=1, description="parent folder of session folders")
    publish: bool = Field(
        True,
        description="publish features, controller state, applied commands and events/markers as LSL streams "
        "while a live session runs (LabRecorder, viewers)",
    )
    dashboard_channels: list[str] | None = Field(
        None,
        max_length=32,
        description="EEG channels the dashboard draws (default: the features' channels, at most 8)",
    )
    rating_prompt_s: float | None = Field(
        None, gt=0, description="the dashboard asks for a pain rating this often (s); none: ratings at will only"
    )


class StreamQuery(StrictModel):
    """Another LSL stream to record (markers, pain ratings, ...), resolved like the source."""

    name: str | None = None
    type: str | None = None
    source_id: str | None = None
    required: bool = Field(False, description="refuse to start when the stream is not found")

    @model_validator(mode="after")
    def _identified(self) -> StreamQuery:
        if not (self.name or self.type or self.source_id):
            raise ValueError("give at least one of name, type, source_id")
        return self


class RatingsConfig(StrictModel):
    """``[ratings]``: the participant's pain ratings (0-10 NRS/VAS) as data (docs/pain-modelling.md).

    Any LSL stream works: a marker stream of text (``"7"``, ``"7.5"``,
    ``{"rating": 7}``) or a numeric stream. Every rating is recorded in
    ``session.xdf`` (the stream as received, and ``closedloop-ratings-aligned``: each
    rating with the frame time from which the pipeline used it, so a replay
    reproduces the live values), and each frame carries the latest rating
    (``rating``) and its age (``rating_age_s``).
    """

    stream: StreamQuery = Field(description="the rating stream: name, type and/or source_id (and required)")
    channel: int | str = Field(0, description="the channel holding the rating: an index or a channel label")
    scale: tuple[float, float] = Field((0.0, 10.0), description="[low, high] of the rating scale; others are ignored")
    features: bool = Field(True, description="add 'rating' and 'rating_age_s' to every frame")
    max_age_s: float | None = Field(
        None, gt=0, description="a rating older than this reads NaN (the controller holds); none: it holds forever"
    )

    @model_validator(mode="after")
    def _checks(self) -> RatingsConfig:
        lo, hi = self.scale
        if not lo < hi:
            raise ValueError(f"scale: need low < high, got [{lo}, {hi}]")
        if isinstance(self.channel, int) and self.channel < 0:
            raise ValueError(f"channel: an index is >= 0, got {self.channel}")
        return self


#: Feature names a ``[ratings]`` section adds to every frame (after the [features] ones).
RATING_FEATURES = ("rating", "rating_age_s")


class RecordingConfig(StrictModel):
    """What ``session.xdf`` holds besides the EEG, frames, commands and events."""

    streams: list[StreamQuery] = Field(default_factory=list, description="other LSL streams to record")
    report: bool = Field(True, description="write report.html at the end")


class PipelineInfo(StrictModel):
    """``[pipeline]``: the pipeline's name (used in output folder names) and what it is for."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="letters, digits, '_', '.' and '-'")
    description: str = ""


class PipelineConfig(StrictModel):
    """A whole session: source → preprocess → features → controller → safety → device.

    ``[controller]`` and ``[device]`` come together; a pipeline without both
    only extracts features (``closedloop features``).
    """

    pipeline: PipelineInfo
    source: SourceConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    features: FeaturesConfig
    controller: ControllerConfig | None = Field(None, description="the controller (with [device])")
    device: DeviceConfig | None = Field(None, description="the device profile (with [controller])")
    safety: SafetyOverrides = Field(default_factory=SafetyOverrides)
    output: OutputConfig = Field(default_factory=OutputConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    ratings: RatingsConfig | None = Field(None, description="pain ratings as data (docs/pain-modelling.md)")

    @property
    def sfreq(self) -> float:
        """The source's sampling rate (Hz)."""
        return self.source.sfreq

    @property
    def stimulates(self) -> bool:
        """Whether the pipeline drives a device (it has ``[controller]`` and ``[device]``)."""
        return self.controller is not None and self.device is not None


class ResolvedPipeline(BaseModel):
    """A validated pipeline together with its device profile (``None`` for a features-only pipeline)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: PipelineConfig
    profile: DeviceProfile | None
    path: str

    def envelope(self) -> dict[str, dict[str, object]]:
        """Effective safety envelope: device limits tightened by ``[safety]`` overrides."""
        over = self.config.safety.model_dump(exclude_none=True)
        env = {}
        for name, lim in self.profile.limits.items():
            if name in over:
                env[name] = {
                    "value": over[name],
                    "unit": lim.unit,
                    "source": f"pipeline [safety] override (device limit {lim.value}: {lim.source})",
                }
            else:
                env[name] = {"value": lim.value, "unit": lim.unit, "source": lim.source}
        return env
