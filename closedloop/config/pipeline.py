"""Pipeline files: one TOML file describes a whole session, validated before anything starts.

Every error names the key (``features.bands.alpha``) and what is allowed.
See ``pipelines/alpha_tacs.toml`` for a commented example.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from closedloop.config.features import FeaturesConfig, PreprocessConfig, check_features, features_of
from closedloop.config.profile import DeviceProfile, find_profile, load_profile
from closedloop.control import CONTROLLER_KINDS, ControllerConfig
from closedloop.safety.envelope import check_pipeline_limits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticSourceConfig(_Strict):
    """Built-in synthetic EEG, published over LSL on this machine and read back."""

    kind: Literal["synthetic"]
    n_channels: int = Field(32, ge=1, le=512)
    sfreq: float = Field(500.0, gt=0, le=20000)
    seed: int = 0
    chunk_size: int = Field(10, ge=1, le=10000, description="samples per pushed chunk")
    alpha_uV: float = Field(10.0, ge=0)
    theta_uV: float = Field(4.0, ge=0)
    plant_gain_per_mA: float = Field(0.8, ge=0, description="relative alpha rise per mA of stimulation")
    plant_tau_s: float = Field(2.0, gt=0)
    stall_timeout_s: float = Field(
        5.0,
        gt=0,
        description="no sample for this long ends the session ('source stalled'); the watchdog has already "
        "ramped stimulation down after watchdog_timeout_s",
    )
    clock_tolerance_s: float = Field(
        1.0,
        gt=0,
        description="largest jump between chunks and largest distance of the newest sample from the local "
        "clock (after the clock offset) before the source's timestamps are flagged",
    )
    clock_timeout_s: float = Field(
        2.0,
        gt=0,
        description="timestamps flagged for longer than this: the source is declared bad, stimulation ramps "
        "down and the session ends",
    )

    @property
    def ch_names(self) -> list[str]:
        from closedloop.synthetic.eeg import standard_channel_names

        return standard_channel_names(self.n_channels)


class LSLSourceConfig(_Strict):
    """An EEG stream on the lab network, resolved by name/type/source_id."""

    kind: Literal["lsl"]
    name: str | None = None
    type: str | None = "EEG"
    source_id: str | None = None
    sfreq: float = Field(gt=0, le=20000, description="nominal rate the stream must have")
    channels: list[str] | None = Field(None, description="labels the stream must carry, in order")
    n_channels: int | None = Field(None, ge=1)
    resolve_timeout_s: float = Field(5.0, gt=0)
    stall_timeout_s: float = Field(
        5.0,
        gt=0,
        description="no sample for this long ends the session ('source stalled'); the watchdog has already "
        "ramped stimulation down after watchdog_timeout_s",
    )
    clock_tolerance_s: float = Field(
        1.0,
        gt=0,
        description="largest jump between chunks and largest distance of the newest sample from the local "
        "clock (after the clock offset) before the source's timestamps are flagged",
    )
    clock_timeout_s: float = Field(
        2.0,
        gt=0,
        description="timestamps flagged for longer than this: the source is declared bad, stimulation ramps "
        "down and the session ends",
    )

    @model_validator(mode="after")
    def _identified(self) -> LSLSourceConfig:
        if not (self.name or self.source_id or self.type):
            raise ValueError("source: give at least one of name, type, source_id")
        if self.channels is not None and self.n_channels is not None and len(self.channels) != self.n_channels:
            raise ValueError(
                f"source.channels lists {len(self.channels)} labels but source.n_channels is {self.n_channels}"
            )
        return self

    @property
    def ch_names(self) -> list[str] | None:
        return self.channels


SourceConfig = Annotated[SyntheticSourceConfig | LSLSourceConfig, Field(discriminator="kind")]


class DeviceConfig(_Strict):
    profile: str = Field(description="device profile name (devices/NAME.toml) or path")
    motor_threshold_pct_mso: float | None = Field(
        None,
        gt=0,
        le=100,
        description="rTMS: the participant's resting motor threshold in % of maximum stimulator output; "
        "converts %MT intensities to the stimulator's %MSO setting",
    )


class SafetyOverrides(_Strict):
    """Per-pipeline tightening of the device limits; loosening is an error."""

    max_amplitude_mA: float | None = Field(None, ge=0)
    max_ramp_rate_mA_per_s: float | None = Field(None, gt=0)
    max_session_duration_s: float | None = Field(None, gt=0)
    max_charge_C: float | None = Field(None, ge=0)
    watchdog_timeout_s: float | None = Field(None, gt=0)
    bad_data_timeout_s: float | None = Field(None, gt=0)
    # rTMS (a min_* limit tightens upward)
    max_intensity_pct: float | None = Field(None, ge=0)
    max_pulses_per_session: float | None = Field(None, ge=0)
    min_inter_train_interval_s: float | None = Field(None, ge=0)
    # TUS
    max_mechanical_index: float | None = Field(None, ge=0)
    max_ispta_mW_per_cm2: float | None = Field(None, ge=0)
    max_duty_cycle: float | None = Field(None, gt=0, le=1)
    max_sonication_s: float | None = Field(None, gt=0)
    max_total_sonication_s: float | None = Field(None, ge=0)


class OutputConfig(_Strict):
    folder: str = Field("sessions", description="parent folder of session folders")


class StreamQuery(_Strict):
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


class RecordingConfig(_Strict):
    """What ``session.xdf`` holds besides the EEG, frames, commands and events."""

    streams: list[StreamQuery] = Field(default_factory=list, description="other LSL streams to record")
    report: bool = Field(True, description="write report.html at the end")


class PipelineInfo(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""


class PipelineConfig(_Strict):
    """A whole session: source → preprocess → features → controller → safety → device."""

    pipeline: PipelineInfo
    source: SourceConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    features: FeaturesConfig
    controller: ControllerConfig
    device: DeviceConfig
    safety: SafetyOverrides = Field(default_factory=SafetyOverrides)
    output: OutputConfig = Field(default_factory=OutputConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)

    @property
    def sfreq(self) -> float:
        return self.source.sfreq


class PipelineError(ValueError):
    """A pipeline file is invalid. The message lists every problem with its key."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"invalid pipeline {path}:\n" + "\n".join(f"  - {p}" for p in problems))


def _format_pydantic(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(
            str(p) for p in e["loc"] if not (isinstance(p, str) and p in ("synthetic", "lsl", *CONTROLLER_KINDS))
        )
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check spelling)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error",):
            msg = f"{msg} (got {e['input']!r})"
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def _cross_checks(cfg: PipelineConfig, profile: DeviceProfile) -> list[str]:
    """Checks that need more than one section (Nyquist, window length, channels, limits)."""
    problems = check_features(cfg.features, cfg.preprocess, cfg.sfreq, cfg.source.ch_names)
    c = cfg.controller
    feats = feature_names(cfg)
    keys = c.feature_keys() if hasattr(c, "feature_keys") else {"feature": getattr(c, "feature", None)}
    for key, name in keys.items():
        if name is not None and name not in feats:
            problems.append(f"controller.{key}: {name!r} is not a feature of this pipeline; choose one of {feats}")
    problems += check_pipeline_limits(cfg, profile)
    problems += _motor_threshold_problems(cfg, profile)
    profile_problems = getattr(c, "profile_problems", None)
    if callable(profile_problems) and not problems:
        over = cfg.safety.model_dump(exclude_none=True)
        env = {
            n: {"value": over.get(n, lim.value), "unit": lim.unit, "source": lim.source}
            for n, lim in profile.limits.items()
        }
        problems += profile_problems(profile, env)
    return problems


def _motor_threshold_problems(cfg: PipelineConfig, profile: DeviceProfile) -> list[str]:
    """``device.motor_threshold_pct_mso``: only for rTMS, and required where the adapter converts %MT to %MSO."""
    from closedloop.adapters import needs_motor_threshold

    mt = cfg.device.motor_threshold_pct_mso
    if mt is not None and profile.device.modality != "rtms":
        return [
            f"device.motor_threshold_pct_mso: only rTMS devices use a motor threshold; "
            f"{profile.device.name!r} is {profile.device.modality}"
        ]
    if mt is None and needs_motor_threshold(profile):
        return [
            f"device.motor_threshold_pct_mso: the {profile.device.adapter} adapter sets the stimulator in % of "
            f"maximum output from intensities in %MT, so it needs the participant's resting motor threshold "
            f"(% of maximum stimulator output), e.g. motor_threshold_pct_mso = 45"
        ]
    return []


def feature_names(cfg: PipelineConfig) -> list[str]:
    """Names of the features a pipeline produces, in frame order."""
    return features_of(cfg.features)


class ResolvedPipeline(BaseModel):
    """A validated pipeline together with its device profile."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: PipelineConfig
    profile: DeviceProfile
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


def load_pipeline(path: str | Path, overrides: dict[str, object] | None = None) -> ResolvedPipeline:
    """Read, validate and resolve a pipeline file.

    Parameters
    ----------
    path : str | Path
        The TOML file.
    overrides : dict, optional
        Dotted keys replacing values of the file (``{"controller.lower": 1.2}``),
        validated like the file itself (used by parameter sweeps).

    Raises
    ------
    PipelineError
        Listing every problem, each naming its key and what is allowed.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(str(path), [f"file not found: {path}"])
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise PipelineError(str(path), [f"not valid TOML: {e}"]) from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise PipelineError(str(path), _format_pydantic(e)) from None
    try:
        prof_path = find_profile(cfg.device.profile, [path.parent, path.parent.parent / "devices"])
        profile = load_profile(prof_path)
    except FileNotFoundError as e:
        raise PipelineError(str(path), [f"device.profile: {e}"]) from None
    except (ValidationError, ValueError) as e:
        msgs = _format_pydantic(e) if isinstance(e, ValidationError) else [str(e)]
        raise PipelineError(str(path), [f"device.profile ({cfg.device.profile}): {m}" for m in msgs]) from None
    problems = _cross_checks(cfg, profile)
    if problems:
        raise PipelineError(str(path), problems)
    return ResolvedPipeline(config=cfg, profile=profile, path=str(path.resolve()))
