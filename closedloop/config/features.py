"""``[preprocess]`` and ``[features]`` sections of a pipeline, and their cross-checks.

Every default that carries a number from the literature cites docs/eeg-and-pain.md
(practical defaults: 1–2 s Hann windows, log power, 1–30 s smoothing, 2–5 min
baseline, rejection of |x| > 100 µV, flat channels and high > 30 Hz power).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from closedloop.config.base import StrictModel

Band = tuple[float, float]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Upper bound of every length in samples (2**20: about 35 min at 500 Hz), so no value allocates absurdly.
MAX_SAMPLES = 2**20


def _check_band(band: Band) -> None:
    lo, hi = band
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < low < high, got [{lo}, {hi}]")


class PreprocessConfig(StrictModel):
    """Causal preprocessing applied to every chunk before features.

    Order: picks → re-reference → Laplacian → ROI averaging / channel choice
    (one sparse spatial matrix) → high-pass → notch (and harmonics) → band-pass.
    """

    picks: list[str] | None = Field(
        None, description="stream channels to keep (EEG only); default: all. 'average' references over these"
    )
    reference: Literal["none", "average"] | list[str] = Field(
        "none", description="'none', 'average' (common average of the picks) or a list of reference channels"
    )
    laplacian: dict[str, list[str]] = Field(
        default_factory=dict, description="Hjorth Laplacian: centre -> neighbours (centre minus their mean)"
    )
    highpass_hz: float | None = Field(None, gt=0, description="causal Butterworth high-pass corner")
    notch_hz: float | None = Field(None, gt=0, description="line frequency to notch (50 or 60)")
    notch_harmonics: int = Field(1, ge=1, le=20, description="notch this many multiples of notch_hz (1 = line only)")
    notch_q: float = Field(30.0, gt=0, description="quality factor of each notch")
    bandpass_hz: Band | None = Field(None, description="causal Butterworth band-pass [low, high] (Hz)")
    filter_order: int = Field(2, ge=1, le=8, description="Butterworth order of high-pass and band-pass")

    @field_validator("bandpass_hz")
    @classmethod
    def _bp(cls, v: Band | None) -> Band | None:
        if v is not None:
            _check_band(v)
        return v

    @field_validator("reference")
    @classmethod
    def _ref(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("an empty list of reference channels; use 'none'")
        return v


class WelchConfig(StrictModel):
    """``[features.welch]``: segments of the window averaged as in ``scipy.signal.welch``."""

    segment_samples: int | None = Field(
        None, ge=8, le=MAX_SAMPLES, description="segment length; default: the whole window"
    )
    overlap: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of a segment shared with the next")


class IIRConfig(StrictModel):
    """``[features.iir]``: band-pass, squared envelope, smoothing — the lowest-latency method."""

    order: int = Field(2, ge=1, le=6, description="Butterworth order per band edge (2 -> 4th-order band-pass)")
    smoothing: Literal["boxcar", "ema"] = Field(
        "boxcar", description="'boxcar': mean over window_samples; 'ema': exponential with tau_s"
    )
    tau_s: float | None = Field(None, gt=0, description="EMA time constant (s); default: half the window")


class PafConfig(StrictModel):
    """``[features.paf]``: peak alpha frequency from a long Welch buffer (docs/eeg-and-pain.md).

    Segments of ``segment_samples`` (Hann, ``overlap``) are zero-padded to
    ``zero_pad`` times their length; the last ``segments`` of them are averaged
    and the estimate is refreshed every time a segment completes.
    """

    segment_samples: int = Field(ge=16, le=MAX_SAMPLES, description="Welch segment length (samples), e.g. 2 s")
    segments: int = Field(
        29, ge=1, le=10_000, description="segments averaged (29 at 50 % overlap = 15 segment lengths)"
    )
    overlap: float = Field(0.5, ge=0.0, lt=1.0)
    zero_pad: int = Field(4, ge=1, le=64, description="FFT length = zero_pad * segment_samples")
    estimators: list[Literal["cog", "peak"]] = Field(
        default_factory=lambda: ["cog", "peak"],
        min_length=1,
        description="'cog': centre of gravity over cog_band; 'peak': interpolated peak in peak_band",
    )
    cog_band: Band = (8.0, 12.0)
    peak_band: Band = (7.0, 13.0)
    min_peak_log10: float = Field(
        0.3, ge=0, description="log10 height a peak must stand above the fitted 1/f background, else NaN"
    )

    @field_validator("cog_band", "peak_band")
    @classmethod
    def _bands(cls, v: Band, info) -> Band:
        _check_band(v)
        return v

    @property
    def step_samples(self) -> int:
        """Return the samples from one segment's start to the next."""
        return max(self.segment_samples - int(round(self.overlap * self.segment_samples)), 1)

    @property
    def buffer_samples(self) -> int:
        """Return the samples the averaged segments span."""
        return self.segment_samples + (self.segments - 1) * self.step_samples


class FeatureBaselineConfig(StrictModel):
    """``[features.baseline]``: z-score features against a calibration block (docs/eeg-and-pain.md: 2–5 min)."""

    duration_s: float = Field(gt=0, description="the first duration_s seconds of samples form the baseline")
    features: list[str] | None = Field(
        None, description="features to normalise (bare names); default: every band, relative band and ratio"
    )


class QualityConfig(StrictModel):
    """``[features.quality]``: per-frame flags over the frame's window; ``None`` switches a check off.

    Every check looks at each checked column (feature signal or electrode
    feeding an ROI) of the preprocessed signal. The defaults were calibrated on
    real resting EEG so that clean data stays unflagged while blinks, electrode
    pops, railed channels and muscle bursts are caught (docs/quality.md has
    the recordings, the flag rates and the command that prints them).
    """

    amplitude_uV: float | None = Field(
        200.0,
        gt=0,
        description="ARTIFACT when a channel's peak-to-peak amplitude in the window exceeds this (peak-to-peak: "
        "electrode offsets do not count; 200 = the ±100 µV convention as a range: 0 % of clean eegmat frames, "
        "82 % of frames holding an injected 150-300 µV blink)",
    )
    flat_uV: float | None = Field(
        0.5,
        gt=0,
        description="FLAT when a channel stays within ±flat_uV of one value all window (peak-to-peak <= 2x; "
        "real EEG spans tens of µV per second, a dead or railed channel after a high-pass well under 1 µV)",
    )
    emg_hz: float = Field(30.0, gt=0, description="EMG: lower edge of the band measuring muscle power (above beta)")
    emg_high_hz: float | None = Field(
        43.0,
        gt=0,
        description="EMG: upper edge; the elliptic band-pass attenuates 50 Hz by >= 25 dB and 60/100/120 Hz by "
        ">= 40 dB, so un-notched mains is not muscle (None: a high-pass at emg_hz, which sees mains)",
    )
    emg_rms_uV: float | None = Field(
        5.0,
        gt=0,
        description="EMG when the RMS in the EMG band exceeds this (clean eegmat stays under 3 µV; catches 70 % "
        "of frames holding injected 15-40 µV broadband muscle bursts, 91 % at 4 µV)",
    )
    saturation_uV: float | None = Field(
        100_000.0,
        gt=0,
        description="SATURATION when some |x| reaches this (100 mV: 1000x EEG, above artefacts and usual electrode "
        "offsets; a railed amplifier or garbage gets there); set it just below a smaller amplifier's range",
    )
    gap_tolerance_s: float = Field(
        0.001, ge=0, description="GAP when a sample interval is off 1/sfreq by more than half a period plus this"
    )

    @model_validator(mode="after")
    def _emg_band(self) -> QualityConfig:
        if self.emg_high_hz is not None and self.emg_high_hz <= self.emg_hz:
            raise ValueError(
                f"features.quality.emg_high_hz ({self.emg_high_hz}) must be above emg_hz ({self.emg_hz}), or null"
            )
        return self


class PainIndexConfig(StrictModel):
    """``[features.pain_index]``: a model from features to pain ratings, fitted by ``closedloop calibrate``.

    Adds the feature ``pain_index`` (the predicted rating, or the probability
    of a rating at or above the model's threshold) after the others; see
    docs/pain-modelling.md.
    """

    model: str = Field(min_length=1, description="model file from closedloop calibrate (relative to the pipeline file)")


#: The name of the feature a ``[features.pain_index]`` model adds.
PAIN_INDEX = "pain_index"


class FeaturesConfig(StrictModel):
    """Band powers on the sample clock: a frame every ``hop_samples`` over ``window_samples``."""

    channels: list[str] | None = Field(None, description="channels the features are computed on")
    combine: Literal["mean", "each"] = Field(
        "mean", description="'mean': one virtual channel averaging them; 'each': features per channel"
    )
    rois: dict[str, list[str] | dict[str, float]] | None = Field(
        None, description="regions of interest: name -> channels (mean) or channel -> weight; replaces channels"
    )
    window_samples: int = Field(ge=8, le=MAX_SAMPLES, description="analysis window (samples)")
    hop_samples: int = Field(ge=1, le=MAX_SAMPLES, description="a new frame every hop (samples)")
    method: Literal["welch", "sliding_dft", "iir", "periodogram"] = Field(
        "welch",
        description="'welch' (scipy-equal), 'sliding_dft' (O(bins) per sample), 'iir' (lowest latency); "
        "'periodogram' = welch with one segment",
    )
    bands: dict[str, Band] = Field(default_factory=lambda: {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)})
    relative_to: Band | None = Field(
        None, description="broad band [low, high]; adds '<band>_rel' = band power / broad-band power"
    )
    ratios: dict[str, tuple[str, str]] = Field(
        default_factory=lambda: {"theta_alpha": ("theta", "alpha")},
        description="name -> (numerator band, denominator band)",
    )
    log10: bool = Field(True, description="report log10 of powers and ratios")
    smoothing_s: float = Field(0.0, ge=0, description="EMA time constant of the features (s); 0 = off")
    welch: WelchConfig = Field(default_factory=WelchConfig)
    iir: IIRConfig = Field(default_factory=IIRConfig)
    paf: PafConfig | None = None
    baseline: FeatureBaselineConfig | None = None
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pain_index: PainIndexConfig | None = Field(None, description="adds 'pain_index' from a calibrated model")

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: dict[str, Band]) -> dict[str, Band]:
        if not v:
            raise ValueError("at least one band is needed")
        for name, band in v.items():
            if not _IDENT.fullmatch(name):
                raise ValueError(f"band name {name!r} must be an identifier")
            try:
                _check_band(band)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return v

    @field_validator("relative_to")
    @classmethod
    def _rel(cls, v: Band | None) -> Band | None:
        if v is not None:
            _check_band(v)
        return v

    @field_validator("rois")
    @classmethod
    def _rois(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("rois is empty")
        for name, members in v.items():
            if not _IDENT.fullmatch(name):
                raise ValueError(f"roi name {name!r} must be an identifier")
            if not members:
                raise ValueError(f"roi {name!r} has no channels")
        return v

    @model_validator(mode="after")
    def _cross(self) -> FeaturesConfig:
        problems = []
        if (self.channels is None) == (self.rois is None):
            problems.append("channels: give either channels (with combine) or rois, not both and not neither")
        if self.channels is not None and not self.channels:
            problems.append("channels: at least one channel is needed")
        for name, (num, den) in self.ratios.items():
            for part in (num, den):
                if part not in self.bands:
                    problems.append(f"ratios.{name}: refers to band {part!r}; defined bands: {sorted(self.bands)}")
            if name in self.bands:
                problems.append(f"ratios.{name}: the name is already a band")
        if self.hop_samples > self.window_samples:
            problems.append(f"hop_samples: {self.hop_samples} must be <= `window_samples` ({self.window_samples})")
        method = "welch" if self.method == "periodogram" else self.method
        for sub in ("welch", "iir"):
            if sub in self.model_fields_set and sub != method:
                problems.append(f"{sub}: [features.{sub}] is given but method is {self.method!r}")
        seg = self.welch.segment_samples
        if seg is not None and seg > self.window_samples:
            problems.append(f"welch.segment_samples: {seg} must be <= `window_samples` ({self.window_samples})")
        if self.baseline is not None and self.baseline.features is not None:
            allowed = _normalisable(self)
            for name in self.baseline.features:
                if name not in allowed:
                    problems.append(
                        f"baseline.features: {name!r} is not a band, relative band or ratio; choose from {allowed}"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def band_method(self) -> str:
        """The band-power method, with the legacy alias resolved."""
        return "welch" if self.method == "periodogram" else self.method

    @property
    def segment_samples(self) -> int:
        """Welch segment length actually used."""
        return self.welch.segment_samples or self.window_samples

    def signal_names(self) -> list[str]:
        """Names of the (virtual) channels the features are computed on."""
        if self.rois is not None:
            return list(self.rois)
        assert self.channels is not None
        return ["+".join(self.channels)] if self.combine == "mean" else list(self.channels)


def _normalisable(f: FeaturesConfig) -> list[str]:
    rel = [f"{b}_rel" for b in f.bands] if f.relative_to is not None else []
    return list(f.bands) + rel + list(f.ratios)


def base_features(f: FeaturesConfig) -> list[str]:
    """Feature names of one (virtual) channel, in frame order."""
    paf = [f"paf_{e}" for e in f.paf.estimators] if f.paf is not None else []
    return _normalisable(f) + paf


def features_of(f: FeaturesConfig) -> list[str]:
    """Names of the features a ``[features]`` section produces, in frame order."""
    base = base_features(f)
    if f.rois is not None:
        names = [f"{b}_{roi}" for roi in f.rois for b in base]
    elif f.combine == "mean":
        names = base
    else:
        assert f.channels is not None
        names = [f"{b}_{ch}" for ch in f.channels for b in base]
    return names + ([PAIN_INDEX] if f.pain_index is not None else [])
