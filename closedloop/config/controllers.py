"""``[controller]``: one settings model per ``kind``, pure data (the controllers live in :mod:`closedloop.control`).

Every model answers the questions pipeline validation asks of a controller
(:class:`ControllerConfigBase`): which features it reads, which modality it
drives, its peak amplitude, frequencies and ramp rates. A model validator
reports every problem of its section at once, one line per problem, each
starting with the key relative to the section (``lower: ...``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

from closedloop.config.base import StrictModel, error_lines
from closedloop.config.conditions import parse_condition

#: What a controller does with a frame flagged bad (artefact, gap, flat, saturation, non-finite):
#: ``"hold"`` keeps its output and state; ``"ramp_down"`` asks for zero until good frames return.
OnBadFrame = Literal["hold", "ramp_down"]


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValueError("\n".join(problems))


class ControllerConfigBase(StrictModel):
    """Shared questions every ``[controller]`` model answers (used by pipeline validation)."""

    def features(self) -> list[str]:
        """Return the feature names the controller reads."""
        return list(dict.fromkeys(name for _, name in self.feature_refs()))

    def feature_keys(self) -> dict[str, str]:
        """Return config key -> feature name, for every feature the controller reads."""
        f = getattr(self, "feature", None)
        return {"feature": f} if f else {}

    def feature_refs(self) -> list[tuple[str, str]]:
        """Return (config key, feature name) for every feature the controller reads (a key may read several)."""
        return list(self.feature_keys().items())

    def modalities(self) -> tuple[str, ...]:
        """Return the stimulation modalities whose commands this controller produces."""
        return ("tes",)

    def peak_amplitude_mA(self) -> float | None:
        """Return the largest amplitude the controller may ask for."""
        return getattr(self, "amplitude_mA", None)

    def frequencies_Hz(self) -> list[float]:
        """Return the stimulation frequencies the controller may ask for."""
        f = getattr(self, "frequency_Hz", None)
        return [] if f is None else [f]

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        """Return the controller's own ramp rates, by config key (checked against the device's)."""
        return {}


class ThresholdConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "threshold"``."""

    kind: Literal["threshold"] = "threshold"
    feature: str = Field(description="name of the feature the thresholds apply to")
    lower: float = Field(description="stimulation switches on below this (direction='below')")
    upper: float = Field(description="stimulation switches off above this (direction='below')")
    direction: Literal["below", "above"] = Field(
        "below", description="'below': stimulate while the feature is low; 'above': while high"
    )
    amplitude_mA: float = Field(gt=0, description="amplitude requested while on")
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    onset: int = Field(1, ge=1, description="consecutive frames past the on-threshold to switch on")
    termination: int = Field(1, ge=1, description="consecutive frames past the off-threshold to switch off")
    blanking_s: float = Field(0.0, ge=0, description="frames ignored after each state change (s)")
    on_bad_frame: OnBadFrame = Field("hold", description="'hold' the state, or 'ramp_down' (switch off)")

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdConfig:
        if not self.lower <= self.upper:
            raise ValueError(f"lower: {self.lower} must be <= `upper` ({self.upper})")
        return self


class DualThresholdConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "dual_threshold"``."""

    kind: Literal["dual_threshold"] = "dual_threshold"
    feature: str = Field(description="name of the feature the thresholds apply to")
    lower: float = Field(description="lower threshold (feature units)")
    upper: float = Field(description="upper threshold (feature units)")
    direction: Literal["below", "above"] = Field(
        "below", description="'below': ramp up while the feature is below `lower`; 'above': while above `upper`"
    )
    amplitude_min_mA: float = Field(0.0, ge=0, description="amplitude ramped toward when stimulation should fall")
    amplitude_max_mA: float = Field(gt=0, description="amplitude ramped toward when stimulation should rise")
    ramp_up_mA_per_s: float = Field(gt=0, description="ramp rate toward amplitude_max_mA")
    ramp_down_mA_per_s: float = Field(
        gt=0, description="ramp rate toward amplitude_min_mA (and toward 0 on bad frames)"
    )
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    onset: int = Field(1, ge=1, description="consecutive frames in a zone before the ramp direction changes")
    blanking_s: float = Field(0.0, ge=0, description="zone changes ignored this long after each direction change (s)")
    start_mA: float | None = Field(None, ge=0, description="amplitude at the start (default amplitude_min_mA)")
    on_bad_frame: OnBadFrame = Field("hold", description="'hold' the amplitude, or 'ramp_down' toward 0")

    @model_validator(mode="after")
    def _ordered(self) -> DualThresholdConfig:
        problems = []
        if not self.lower <= self.upper:
            problems.append(f"lower: {self.lower} must be <= `upper` ({self.upper})")
        if not self.amplitude_min_mA < self.amplitude_max_mA:
            problems.append(
                f"amplitude_min_mA: {self.amplitude_min_mA} must be < `amplitude_max_mA` ({self.amplitude_max_mA})"
            )
        elif self.start_mA is not None and not self.amplitude_min_mA <= self.start_mA <= self.amplitude_max_mA:
            problems.append(
                f"start_mA: {self.start_mA} must lie between `amplitude_min_mA` ({self.amplitude_min_mA}) "
                f"and `amplitude_max_mA` ({self.amplitude_max_mA})"
            )
        _raise(problems)
        return self

    def peak_amplitude_mA(self) -> float:
        """Return ``amplitude_max_mA``."""
        return self.amplitude_max_mA

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        """Return both ramp rates."""
        return {"ramp_up_mA_per_s": self.ramp_up_mA_per_s, "ramp_down_mA_per_s": self.ramp_down_mA_per_s}


class PIConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "pi"``."""

    kind: Literal["pi"] = "pi"
    feature: str = Field(description="the controlled feature")
    target: float = Field(description="the value the feature should reach (feature units)")
    direction: Literal["raise", "lower"] = Field(
        "raise", description="'raise': stimulation raises the feature; 'lower': it lowers it"
    )
    kp: float = Field(ge=0, description="proportional gain (mA per feature unit)")
    ki: float = Field(0.0, ge=0, description="integral gain (mA per feature unit per s)")
    kd: float = Field(0.0, ge=0, description="derivative gain on the measurement (mA·s per feature unit)")
    bias_mA: float = Field(0.0, ge=0, description="output with zero error and an empty integrator")
    amplitude_min_mA: float = Field(0.0, ge=0)
    amplitude_max_mA: float = Field(gt=0)
    slew_mA_per_s: float = Field(gt=0, description="the command follows the PI output at most this fast")
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    update_interval_s: float = Field(1.0, ge=0, description="a new PI output at most this often (frame time)")
    blanking_s: float = Field(0.0, ge=0, description="integrator frozen this long after each ramp ends (s)")
    on_bad_frame: OnBadFrame = Field("hold", description="'hold' the output, or 'ramp_down' toward 0")

    @model_validator(mode="after")
    def _ranges(self) -> PIConfig:
        if not self.amplitude_min_mA < self.amplitude_max_mA:
            raise ValueError(
                f"amplitude_min_mA: {self.amplitude_min_mA} must be < `amplitude_max_mA` ({self.amplitude_max_mA})"
            )
        if not self.amplitude_min_mA <= self.bias_mA <= self.amplitude_max_mA:
            raise ValueError(
                f"bias_mA: {self.bias_mA} must lie between `amplitude_min_mA` ({self.amplitude_min_mA}) "
                f"and `amplitude_max_mA` ({self.amplitude_max_mA})"
            )
        return self

    def peak_amplitude_mA(self) -> float:
        """Return ``amplitude_max_mA``."""
        return self.amplitude_max_mA

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        """Return the slew rate."""
        return {"slew_mA_per_s": self.slew_mA_per_s}


class ScheduleConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "schedule"``."""

    kind: Literal["schedule"] = "schedule"
    arm: Literal["active", "sham"] = Field("active", description="'active' (open-loop) or 'sham'")
    blinded: bool = Field(False, description="hide the arm from the operator display and console")
    amplitude_mA: float = Field(gt=0, description="amplitude of the active arm (and peak of the sham ramps)")
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    start_s: float = Field(0.0, ge=0, description="delay from the first frame to the first on-block (s)")
    on_s: float = Field(gt=0, description="length of each on-block, ramps included (s)")
    off_s: float = Field(0.0, ge=0, description="length of each off-block (s)")
    cycles: int | None = Field(None, ge=1, description="number of on/off cycles (default: until the session ends)")
    ramp_s: float = Field(10.0, ge=0, description="ramp up at the start and down at the end of each on-block (s)")
    sham_hold_s: float = Field(0.0, ge=0, description="sham: time at full amplitude between its ramps (s)")
    sham_end_ramp: bool = Field(True, description="sham: repeat the ramps at the end of each on-block")
    feature: str | None = Field(None, description="feature whose quality flags count (on_bad_frame = 'ramp_down')")
    on_bad_frame: OnBadFrame = Field("hold", description="'hold': ignore frame quality; 'ramp_down': 0 on bad frames")

    @model_validator(mode="after")
    def _fits(self) -> ScheduleConfig:
        problems = []
        if 2 * self.ramp_s > self.on_s:
            problems.append(f"ramp_s: two ramps of {self.ramp_s} s do not fit an on-block (`on_s`) of {self.on_s} s")
        sham = (2 * self.ramp_s + self.sham_hold_s) * (2 if self.sham_end_ramp else 1)
        if self.arm == "sham" and sham > self.on_s:
            problems.append(f"sham_hold_s: the sham ramps ({sham} s) do not fit an on-block (`on_s`) of {self.on_s} s")
        if self.on_bad_frame == "ramp_down" and self.feature is None:
            problems.append("feature: `on_bad_frame` = 'ramp_down' needs the feature whose quality counts")
        _raise(problems)
        return self

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        """Return the ramp rate implied by ``amplitude_mA / ramp_s``."""
        return {"ramp_s": self.amplitude_mA / self.ramp_s if self.ramp_s > 0 else math.inf}


class RuleConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "rule"``: on and off from conditions over features, with hysteresis.

    ``on_when`` and ``off_when`` are conditions such as
    ``"theta_frontal > 1.2 and pain_index > 5"`` (:mod:`closedloop.config.conditions`:
    comparisons, and/or/not, arithmetic, abs/min/max; parsed, never
    evaluated as code). Stimulation switches on after ``onset`` consecutive
    usable frames on which ``on_when`` holds, and off after ``termination``
    consecutive usable frames on which ``off_when`` holds (default: ``on_when``
    does not); two different conditions give hysteresis. Frames within
    ``blanking_s`` of a switch are ignored.
    """

    kind: Literal["rule"] = "rule"
    on_when: str = Field(
        description="condition switching stimulation on, e.g. 'theta_frontal > 1.2 and pain_index > 5'"
    )
    off_when: str | None = Field(None, description="condition switching it off (default: on_when does not hold)")
    amplitude_mA: float = Field(gt=0, description="amplitude requested while on")
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    onset: int = Field(1, ge=1, description="consecutive frames on which on_when holds before switching on")
    termination: int = Field(1, ge=1, description="consecutive frames on which off_when holds before switching off")
    blanking_s: float = Field(0.0, ge=0, description="frames ignored after each switch (s)")
    on_bad_frame: OnBadFrame = Field(
        "hold",
        description="a flagged frame, or one where a condition reads a NaN: 'hold' the state, or 'ramp_down'",
    )
    _on: Any = PrivateAttr(None)
    _off: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _parse(self) -> RuleConfig:
        problems = []
        for key in ("on_when", "off_when"):
            text = getattr(self, key)
            if text is None:
                continue
            try:
                setattr(self, f"_{key[:-5]}", parse_condition(text))
            except ValueError as e:
                problems.append(f"{key}: {e}")
        _raise(problems)
        return self

    @property
    def on_condition(self):
        """The parsed ``on_when`` (:class:`~closedloop.config.conditions.Condition`)."""
        return self._on

    @property
    def off_condition(self):
        """The parsed ``off_when``, or None (off when ``on_when`` does not hold)."""
        return self._off

    def feature_keys(self) -> dict[str, str]:
        """Return the first feature of each condition, by key (all of them: :meth:`feature_refs`)."""
        return dict(reversed(self.feature_refs()))

    def feature_refs(self) -> list[tuple[str, str]]:
        """Return ``("on_when", name)`` and ``("off_when", name)`` for every feature the conditions read."""
        refs = [("on_when", n) for n in self._on.names]
        if self._off is not None:
            refs += [("off_when", n) for n in self._off.names]
        return refs


# --- baseline ---------------------------------------------------------------------------------------

#: Inner-controller keys a baseline may set.
DERIVABLE = ("lower", "upper", "target")

_SPEC = re.compile(r"^(?:p(?P<p>\d+(?:\.\d+)?)|z(?P<z>[+-]?\d+(?:\.\d+)?)|(?P<word>mean|median))$")


def parse_spec(spec: str) -> tuple[str, float]:
    """Parse a baseline statistic: ``"p25"`` → ``("percentile", 25.0)``, ``"z-0.5"`` → ``("z", -0.5)``.

    ``"mean"`` is ``("z", 0.0)`` and ``"median"`` is ``("percentile", 50.0)``.

    Raises
    ------
    ValueError
        Naming what is allowed.
    """
    m = _SPEC.match(spec.strip())
    if m is None:
        raise ValueError(f"{spec!r} is not a baseline statistic; use 'p<0-100>', 'median', 'mean' or 'z<±k>'")
    if m["p"] is not None:
        q = float(m["p"])
        if not 0 <= q <= 100:
            raise ValueError(f"{spec!r}: a percentile lies in 0-100")
        return "percentile", q
    if m["z"] is not None:
        return "z", float(m["z"])
    return ("percentile", 50.0) if m["word"] == "median" else ("z", 0.0)


def baseline_value(values, spec: str) -> float:
    """Return the statistic ``spec`` of the baseline ``values`` (an array or a sequence of floats)."""
    import numpy as np  # here, not at import: the schema loads no numpy (``closedloop check`` stays fast)

    kind, k = parse_spec(spec)
    if kind == "percentile":
        return float(np.percentile(values, k))
    return float(np.mean(values) + k * np.std(values))


#: A stand-in baseline used to validate a pipeline before any data exist (201 points evenly from -1 to 1).
_REFERENCE = [-1.0 + 0.01 * i for i in range(201)]


def validate_inner(raw: dict[str, Any]) -> InnerControllerConfig:
    """Validate the settings of the controller a baseline wraps.

    Raises
    ------
    ValueError
        One line per problem, each starting with ``inner.<key>``.
    """
    try:
        return _INNER_ADAPTER.validate_python(raw)
    except ValidationError as e:
        raise ValueError("\n".join(error_lines(e, InnerControllerConfig, ("inner",)))) from None


class BaselineControllerConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "baseline"``: calibrate, then run ``[controller.inner]``."""

    kind: Literal["baseline"] = "baseline"
    duration_s: float = Field(gt=0, description="length of the calibration block (frame time, s)")
    feature: str | None = Field(None, description="feature the baseline is computed on (default: the inner's)")
    derive: dict[str, str] = Field(description="inner key -> statistic: 'p25', 'median', 'mean', 'z+1.0'")
    min_frames: int = Field(10, ge=2, description="usable frames needed; the block extends until there are")
    inner: dict[str, Any] = Field(description="the controller run after calibration, without the derived keys")
    _placeholder: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self) -> BaselineControllerConfig:
        if not self.derive:
            raise ValueError("derive: name at least one of " + ", ".join(DERIVABLE))
        problems = []
        for key, spec in self.derive.items():
            if key not in DERIVABLE:
                problems.append(f"derive.{key}: only {list(DERIVABLE)} can come from a baseline")
                continue
            try:
                parse_spec(spec)
            except ValueError as e:
                problems.append(f"derive.{key}: {e}")
        if self.inner.get("kind") == "baseline":
            problems.append("inner.kind: a baseline cannot wrap another baseline")
        _raise(problems)
        raw = {**self.inner, **{k: baseline_value(_REFERENCE, s) for k, s in self.derive.items()}}
        placeholder = validate_inner(raw)
        missing = [k for k in self.derive if k not in type(placeholder).model_fields]
        if missing:
            raise ValueError(f"derive: the {placeholder.kind!r} controller has no key {missing}")
        self._placeholder = placeholder
        return self

    @property
    def placeholder(self) -> InnerControllerConfig:
        """The inner config, validated with stand-in derived values."""
        return self._placeholder

    def baseline_feature(self) -> str:
        """Return the feature the baseline is computed on."""
        return self.feature or getattr(self._placeholder, "feature", None) or ""

    def feature_keys(self) -> dict[str, str]:
        """Return the baseline's feature and the inner controller's, by key."""
        keys = {"feature": self.baseline_feature()}
        keys.update({f"inner.{k}": v for k, v in self._placeholder.feature_keys().items()})
        return keys

    def modalities(self) -> tuple[str, ...]:
        """Return the inner controller's modalities."""
        return self._placeholder.modalities()

    def peak_amplitude_mA(self) -> float | None:
        """Return the inner controller's peak amplitude."""
        return self._placeholder.peak_amplitude_mA()

    def frequencies_Hz(self) -> list[float]:
        """Return the inner controller's frequencies."""
        return self._placeholder.frequencies_Hz()

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        """Return the inner controller's ramp rates, keyed ``inner.<key>``."""
        return {f"inner.{k}": v for k, v in self._placeholder.ramp_rates_mA_per_s().items()}


# --- trigger ----------------------------------------------------------------------------------------


class RTMSTrain(StrictModel):
    """``[controller.train]``: the rTMS train one fire delivers (give ``pulses``, ``duration_s`` or both)."""

    frequency_Hz: float = Field(gt=0, description="train rate (Hz)")
    intensity_pct: float = Field(gt=0, description="intensity (% of resting motor threshold)")
    pulses: int | None = Field(None, ge=1, description="pulses per train")
    duration_s: float | None = Field(None, gt=0, description="train length (s) = pulses / rate")

    @model_validator(mode="after")
    def _sized(self) -> RTMSTrain:
        if self.pulses is None and self.duration_s is None:
            raise ValueError("pulses: give `pulses` or `duration_s` (or both)")
        return self


class TUSSonication(StrictModel):
    """``[controller.sonication]``: the in-situ (derated) sonication one fire starts."""

    pnp_MPa: float = Field(gt=0, description="in-situ peak negative pressure (MPa)")
    center_frequency_MHz: float = Field(gt=0, description="centre frequency (MHz)")
    isppa_W_per_cm2: float = Field(gt=0, description="in-situ I_SPPA (W/cm²)")
    duty_cycle: float = Field(gt=0, le=1, description="duty cycle = burst_s × prf_Hz")
    prf_Hz: float = Field(gt=0, description="pulse repetition frequency (Hz)")
    burst_s: float = Field(gt=0, description="pulse (burst) length (s)")
    duration_s: float = Field(gt=0, description="sonication length started by one fire (s)")


#: The TUS parameters a fire carries in ``Command.extra`` (the keys of :mod:`closedloop.safety.tus`).
def _train_extra(t: RTMSTrain) -> dict[str, float]:
    """Return the ``Command.extra`` of an rTMS fire: intensity, and the train's pulses or duration."""
    out = {"intensity_pct": float(t.intensity_pct)}
    if t.pulses is not None:
        out["pulses"] = float(t.pulses)
    if t.duration_s is not None:
        out["train_duration_s"] = float(t.duration_s)
    return out


TUS_KEYS = ("pnp_MPa", "center_frequency_MHz", "isppa_W_per_cm2", "duty_cycle", "prf_Hz", "burst_s")


class _TriggerBase(ControllerConfigBase):
    kind: Literal["trigger"] = "trigger"
    feature: str = Field(description="name of the feature compared with the threshold")
    threshold: float = Field(description="fire when the feature is past this value")
    direction: Literal["above", "below"] = Field("above", description="'above': fire on high values; 'below': on low")
    onset: int = Field(1, ge=1, description="consecutive usable frames past the threshold before a fire")
    refractory_s: float = Field(gt=0, description="minimum frame time from one fire to the next (s)")
    max_count: int | None = Field(None, ge=1, description="fires allowed per session (none: no cap)")
    on_bad_frame: OnBadFrame = Field(
        "hold",
        description="'hold' (a bad frame resets the onset count) or 'ramp_down' (also ends a running TUS sonication)",
    )

    def peak_amplitude_mA(self) -> float | None:
        """Return ``None``: a trigger asks for no current."""
        return None


class _FiresTrain:
    """What a trigger or phase trigger whose fire is an rTMS ``train`` answers about it."""

    train: RTMSTrain

    def modalities(self) -> tuple[str, ...]:
        """Return ``("rtms",)``."""
        return ("rtms",)

    def frequencies_Hz(self) -> list[float]:
        """Return the train rate."""
        return [self.train.frequency_Hz]

    @property
    def rate_Hz(self) -> float:
        """The ``frequency_Hz`` of the commands: the train rate."""
        return self.train.frequency_Hz

    def fire_extra(self) -> dict[str, float]:
        """Return the ``Command.extra`` of a fire (without the ``fire`` flag)."""
        return _train_extra(self.train)


class _FiresSonication:
    """What a trigger or phase trigger whose fire is a TUS ``sonication`` answers about it."""

    sonication: TUSSonication

    def modalities(self) -> tuple[str, ...]:
        """Return ``("tus",)``."""
        return ("tus",)

    def frequencies_Hz(self) -> list[float]:
        """Return no stimulation frequency (the PRF is checked by the TUS limits)."""
        return []

    @property
    def rate_Hz(self) -> float:
        """The ``frequency_Hz`` of the commands: the pulse repetition frequency."""
        return self.sonication.prf_Hz

    def fire_extra(self) -> dict[str, float]:
        """Return the ``Command.extra`` of a fire (without the ``fire`` flag)."""
        return {k: float(getattr(self.sonication, k)) for k in TUS_KEYS}


class RTMSTriggerConfig(_FiresTrain, _TriggerBase):
    """``[controller]`` with ``kind = "trigger"``, ``modality = "rtms"``: each fire is one ``[controller.train]``."""

    modality: Literal["rtms"] = Field("rtms", description="what a fire delivers: an rTMS train")
    train: RTMSTrain = Field(description="[controller.train]: frequency_Hz, intensity_pct, pulses and/or duration_s")


class TUSTriggerConfig(_FiresSonication, _TriggerBase):
    """``[controller]``, ``kind = "trigger"``, ``modality = "tus"``: each fire starts a ``[controller.sonication]``."""

    modality: Literal["tus"] = Field("tus", description="what a fire delivers: a TUS sonication")
    sonication: TUSSonication = Field(
        description="[controller.sonication]: pnp_MPa, center_frequency_MHz, isppa_W_per_cm2, duty_cycle, "
        "prf_Hz, burst_s, duration_s"
    )

    @model_validator(mode="after")
    def _refractory(self) -> TUSTriggerConfig:
        if self.sonication.duration_s >= self.refractory_s:
            raise ValueError(
                f"refractory_s: {self.refractory_s} must exceed `sonication.duration_s` ({self.sonication.duration_s})"
            )
        return self


#: A trigger, tagged by what a fire delivers.
TriggerConfig = Annotated[RTMSTriggerConfig | TUSTriggerConfig, Field(discriminator="modality")]


# --- phase trigger ----------------------------------------------------------------------------------

#: Named target phases, in degrees of cosine phase (0 = peak): the trough, peak and zero crossings.
PHASE_TARGETS = {"peak": 0.0, "falling": 90.0, "trough": 180.0, "rising": 270.0}


class _PhaseTriggerBase(ControllerConfigBase):
    kind: Literal["phase_trigger"] = "phase_trigger"
    rhythm: str = Field(description="the [features.phase.<rhythm>] whose phase times the pulses, e.g. 'mu'")
    channel: str | None = Field(
        None, description="the (virtual) channel whose estimate counts, when features are per channel"
    )
    target: Literal["peak", "trough", "rising", "falling"] | float = Field(
        description="'trough', 'peak', 'rising', 'falling' or an angle in degrees of cosine phase "
        "(0 = peak, 90 = falling, 180 = trough, 270 = rising)"
    )
    min_amplitude_uV: float = Field(ge=0, description="fire only while the rhythm's amplitude is at least this (µV)")
    min_snr_db: float | None = Field(None, description="and, if given, while its SNR is at least this (dB)")
    min_interval_s: float = Field(gt=0, description="minimum time from one pulse (train onset) to the next (s)")
    refractory_s: float = Field(0.0, ge=0, description="no pulse for this long after a train or sonication ends (s)")
    delay_s: float = Field(
        0.0,
        ge=0,
        le=1.0,
        description="fixed delay from the issued command to the stimulus that software cannot measure (the "
        "stimulator's own trigger-to-pulse time) (s); live, the measured data age and adapter output latency are "
        "added to it (offline, it is the whole delay)",
    )
    max_horizon_s: float = Field(
        0.1,
        gt=0,
        le=1.0,
        description="no pulse when it would come more than this after the frame's newest sample (s): a longer "
        "forward prediction of the phase is not trusted",
    )
    tolerance_deg: float = Field(
        30.0,
        ge=0,
        le=180.0,
        description="when the predicted phase jumps past the target between two frames, still fire if it is past "
        "by at most this (deg)",
    )
    max_count: int | None = Field(None, ge=1, description="pulses (fires) allowed per session (none: no cap)")
    on_bad_frame: OnBadFrame = Field(
        "hold", description="'hold' (no fire on a bad frame) or 'ramp_down' (also end a running TUS sonication)"
    )

    @property
    def target_deg(self) -> float:
        """The target in degrees of cosine phase, in [0, 360)."""
        t = PHASE_TARGETS[self.target] if isinstance(self.target, str) else float(self.target)
        return t % 360.0

    def feature_name(self, kind: str) -> str:
        """Return the name of the rhythm's ``kind`` output (``phase``, ``amp``, ``freq``, ``snr``) this reads."""
        return f"{self.rhythm}_{kind}" + (f"_{self.channel}" if self.channel else "")

    def features(self) -> list[str]:
        """Return the phase, amplitude, frequency (and SNR) features the controller reads."""
        kinds = ("phase", "amp", "freq") + (("snr",) if self.min_snr_db is not None else ())
        return [self.feature_name(k) for k in kinds]

    def feature_keys(self) -> dict[str, str]:
        """Return ``{"rhythm": <rhythm>_phase}`` (its other outputs exist whenever the phase does)."""
        return {"rhythm": self.feature_name("phase")}

    def peak_amplitude_mA(self) -> float | None:
        """Return ``None``: a trigger asks for no current."""
        return None


class RTMSPhaseTriggerConfig(_FiresTrain, _PhaseTriggerBase):
    """``[controller]``, ``kind = "phase_trigger"``, ``modality = "rtms"``: each pulse is one ``[controller.train]``.

    A single pulse is a train of ``pulses = 1`` (at a train rate the verified train table covers).
    """

    modality: Literal["rtms"] = Field("rtms", description="what a fire delivers: an rTMS train (1 pulse or more)")
    train: RTMSTrain = Field(description="[controller.train]: frequency_Hz, intensity_pct, pulses and/or duration_s")

    @property
    def fire_s(self) -> float:
        """How long one fire stimulates (s): the train."""
        t = self.train
        return t.pulses / t.frequency_Hz if t.pulses is not None else float(t.duration_s)


class TUSPhaseTriggerConfig(_FiresSonication, _PhaseTriggerBase):
    """``[controller]``, ``kind = "phase_trigger"``, ``modality = "tus"``: each fire starts a sonication."""

    modality: Literal["tus"] = Field("tus", description="what a fire delivers: a TUS sonication")
    sonication: TUSSonication = Field(
        description="[controller.sonication]: pnp_MPa, center_frequency_MHz, isppa_W_per_cm2, duty_cycle, "
        "prf_Hz, burst_s, duration_s"
    )

    @model_validator(mode="after")
    def _interval(self) -> TUSPhaseTriggerConfig:
        if self.sonication.duration_s >= self.min_interval_s:
            raise ValueError(
                f"min_interval_s: {self.min_interval_s} must exceed `sonication.duration_s` "
                f"({self.sonication.duration_s})"
            )
        return self

    @property
    def fire_s(self) -> float:
        """How long one fire stimulates (s): the sonication."""
        return self.sonication.duration_s


#: A phase trigger, tagged by what a fire delivers.
PhaseTriggerConfig = Annotated[RTMSPhaseTriggerConfig | TUSPhaseTriggerConfig, Field(discriminator="modality")]

#: Controllers a baseline block may wrap (every kind but ``baseline`` and ``trigger``).
InnerControllerConfig = Annotated[
    ThresholdConfig | DualThresholdConfig | PIConfig | ScheduleConfig, Field(discriminator="kind")
]

#: ``[controller]`` section: one model per ``kind`` (and per ``modality`` for a trigger).
ControllerConfig = Annotated[
    ThresholdConfig
    | DualThresholdConfig
    | PIConfig
    | ScheduleConfig
    | BaselineControllerConfig
    | TriggerConfig
    | PhaseTriggerConfig
    | RuleConfig,
    Field(discriminator="kind"),
]

#: The controller kinds.
CONTROLLER_KINDS = ("threshold", "dual_threshold", "pi", "schedule", "baseline", "trigger", "phase_trigger", "rule")

_INNER_ADAPTER: TypeAdapter = TypeAdapter(InnerControllerConfig)
