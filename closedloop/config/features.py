"""``[preprocess]`` and ``[features]`` sections of a pipeline, and their cross-checks.

Every default that carries a number from the literature cites docs/eeg-and-pain.md
(practical defaults: 1–2 s Hann windows, log power, 1–30 s smoothing, 2–5 min
baseline, rejection of |x| > 100 µV, flat channels and high > 30 Hz power).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Band = tuple[float, float]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_band(name: str, band: Band) -> None:
    lo, hi = band
    if not 0 < lo < hi:
        raise ValueError(f"{name}: need 0 < low < high, got [{lo}, {hi}]")


class PreprocessConfig(_Strict):
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
            _check_band("bandpass_hz", v)
        return v

    @field_validator("reference")
    @classmethod
    def _ref(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("an empty list of reference channels; use 'none'")
        return v


class WelchConfig(_Strict):
    """``[features.welch]``: segments of the window averaged as in ``scipy.signal.welch``."""

    segment_samples: int | None = Field(None, ge=8, description="segment length; default: the whole window")
    overlap: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of a segment shared with the next")


class IIRConfig(_Strict):
    """``[features.iir]``: band-pass, squared envelope, smoothing — the lowest-latency method."""

    order: int = Field(2, ge=1, le=6, description="Butterworth order per band edge (2 -> 4th-order band-pass)")
    smoothing: Literal["boxcar", "ema"] = Field(
        "boxcar", description="'boxcar': mean over window_samples; 'ema': exponential with tau_s"
    )
    tau_s: float | None = Field(None, gt=0, description="EMA time constant (s); default: half the window")


class PafConfig(_Strict):
    """``[features.paf]``: peak alpha frequency from a long Welch buffer (docs/eeg-and-pain.md).

    Segments of ``segment_samples`` (Hann, ``overlap``) are zero-padded to
    ``zero_pad`` times their length; the last ``segments`` of them are averaged
    and the estimate is refreshed every time a segment completes.
    """

    segment_samples: int = Field(ge=16, description="Welch segment length (samples), e.g. 2 s")
    segments: int = Field(29, ge=1, description="segments averaged (29 at 50 % overlap = 15 segment lengths)")
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
        _check_band(info.field_name, v)
        return v

    @property
    def step_samples(self) -> int:
        return max(self.segment_samples - int(round(self.overlap * self.segment_samples)), 1)

    @property
    def buffer_samples(self) -> int:
        return self.segment_samples + (self.segments - 1) * self.step_samples


class BaselineConfig(_Strict):
    """``[features.baseline]``: z-score features against a calibration block (docs/eeg-and-pain.md: 2–5 min)."""

    duration_s: float = Field(gt=0, description="the first duration_s seconds of samples form the baseline")
    features: list[str] | None = Field(
        None, description="features to normalise (bare names); default: every band, relative band and ratio"
    )


class QualityConfig(_Strict):
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


class FeaturesConfig(_Strict):
    """Band powers on the sample clock: a frame every ``hop_samples`` over ``window_samples``."""

    channels: list[str] | None = Field(None, description="channels the features are computed on")
    combine: Literal["mean", "each"] = Field(
        "mean", description="'mean': one virtual channel averaging them; 'each': features per channel"
    )
    rois: dict[str, list[str] | dict[str, float]] | None = Field(
        None, description="regions of interest: name -> channels (mean) or channel -> weight; replaces channels"
    )
    window_samples: int = Field(ge=8, description="analysis window (samples)")
    hop_samples: int = Field(ge=1, description="a new frame every hop (samples)")
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
    baseline: BaselineConfig | None = None
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: dict[str, Band]) -> dict[str, Band]:
        if not v:
            raise ValueError("at least one band is needed")
        for name, band in v.items():
            if not _IDENT.fullmatch(name):
                raise ValueError(f"band name {name!r} must be an identifier")
            _check_band(f"band {name!r}", band)
        return v

    @field_validator("relative_to")
    @classmethod
    def _rel(cls, v: Band | None) -> Band | None:
        if v is not None:
            _check_band("relative_to", v)
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
        if (self.channels is None) == (self.rois is None):
            raise ValueError("give either channels (with combine) or rois, not both and not neither")
        if self.channels is not None and not self.channels:
            raise ValueError("channels: at least one channel is needed")
        for name, (num, den) in self.ratios.items():
            for part in (num, den):
                if part not in self.bands:
                    raise ValueError(f"ratios.{name} refers to band {part!r}; defined bands: {sorted(self.bands)}")
            if name in self.bands:
                raise ValueError(f"ratios.{name}: the name is already a band")
        if self.hop_samples > self.window_samples:
            raise ValueError(f"hop_samples ({self.hop_samples}) must be <= window_samples ({self.window_samples})")
        method = "welch" if self.method == "periodogram" else self.method
        for sub in ("welch", "iir"):
            if sub in self.model_fields_set and sub != method:
                raise ValueError(f"[features.{sub}] is given but method is {self.method!r}")
        seg = self.welch.segment_samples
        if seg is not None and seg > self.window_samples:
            raise ValueError(f"welch.segment_samples ({seg}) must be <= window_samples ({self.window_samples})")
        if self.baseline is not None and self.baseline.features is not None:
            allowed = _normalisable(self)
            for name in self.baseline.features:
                if name not in allowed:
                    raise ValueError(
                        f"baseline.features: {name!r} is not a band, relative band or ratio; choose from {allowed}"
                    )
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
        return [f"{b}_{roi}" for roi in f.rois for b in base]
    if f.combine == "mean":
        return base
    assert f.channels is not None
    return [f"{b}_{ch}" for ch in f.channels for b in base]


def _bins_in(lo: float, hi: float, fs: float, n: int) -> int:
    df = fs / n
    return max(0, math.floor(hi / df + 1e-9) - math.ceil(lo / df - 1e-9) + 1)


def check_features(f: FeaturesConfig, pp: PreprocessConfig, sfreq: float, ch_names: list[str] | None) -> list[str]:
    """Problems that need the sampling rate or the source's channels, each naming its key."""
    problems: list[str] = []
    fs = sfreq
    nyq = fs / 2
    seg = f.segment_samples
    seg_key = "features.welch.segment_samples" if f.welch.segment_samples else "features.window_samples"
    spectral = f.band_method != "iir"
    all_bands = dict(f.bands)
    if f.relative_to is not None:
        all_bands["relative_to"] = f.relative_to
    for name, (lo, hi) in all_bands.items():
        key = "features.relative_to" if name == "relative_to" else f"features.bands.{name}"
        if hi > nyq or (not spectral and hi >= nyq):
            problems.append(f"{key}: upper edge {hi} Hz is above Nyquist ({nyq} Hz at {fs} Hz)")
            continue
        period = fs / lo
        if f.window_samples < period:
            problems.append(
                f"features.window_samples: {f.window_samples} samples is shorter than one period of "
                f"band {name!r} at {lo} Hz ({math.ceil(period)} samples at {fs} Hz); allowed: >= {math.ceil(period)}"
            )
        if spectral:
            resolution = fs / seg
            if hi - lo < resolution:
                problems.append(
                    f"{key}: {hi - lo} Hz wide but {seg_key} resolves only {resolution:.3g} Hz; "
                    f"use {seg_key.split('.')[-1]} >= {math.ceil(fs / (hi - lo))}"
                )
            elif _bins_in(lo, hi, fs, seg) == 0:
                problems.append(f"{key}: holds no DFT bin at {seg} samples ({resolution:.3g} Hz apart)")
    for key, val in (("highpass_hz", pp.highpass_hz), ("notch_hz", pp.notch_hz)):
        if val is not None and val >= nyq:
            problems.append(f"preprocess.{key}: {val} Hz is not below Nyquist ({nyq} Hz)")
    if pp.notch_hz is not None and pp.notch_hz * pp.notch_harmonics >= nyq and pp.notch_hz < nyq:
        problems.append(
            f"preprocess.notch_harmonics: {pp.notch_harmonics} x {pp.notch_hz} Hz reaches Nyquist ({nyq} Hz); "
            f"allowed: <= {math.ceil(nyq / pp.notch_hz) - 1}"
        )
    if pp.bandpass_hz is not None and pp.bandpass_hz[1] >= nyq:
        problems.append(f"preprocess.bandpass_hz: upper edge {pp.bandpass_hz[1]} Hz is not below Nyquist ({nyq} Hz)")
    q = f.quality
    if q.emg_rms_uV is not None and q.emg_hz >= nyq:
        problems.append(
            f"features.quality.emg_hz: {q.emg_hz} Hz is not below Nyquist ({nyq} Hz); "
            "lower it or set emg_rms_uV to switch the check off"
        )
    if f.paf is not None:
        p = f.paf
        for key, (lo, hi) in (("cog_band", p.cog_band), ("peak_band", p.peak_band)):
            if hi >= nyq:
                problems.append(f"features.paf.{key}: upper edge {hi} Hz is not below Nyquist ({nyq} Hz)")
        res = fs / (p.segment_samples * p.zero_pad)
        if "peak" in p.estimators and (p.peak_band[1] - p.peak_band[0]) < 4 * res:
            problems.append(
                f"features.paf.peak_band: needs at least 4 bins; the zero-padded resolution "
                f"is {res:.3g} Hz (raise segment_samples or zero_pad)"
            )
        if p.segment_samples < fs / p.peak_band[0]:
            problems.append(
                f"features.paf.segment_samples: {p.segment_samples} samples is shorter than one period "
                f"at {p.peak_band[0]} Hz"
            )
    problems += _check_channels(f, pp, ch_names)
    return problems


def _check_channels(f: FeaturesConfig, pp: PreprocessConfig, ch_names: list[str] | None) -> list[str]:
    problems: list[str] = []
    if f.channels is not None and len(set(f.channels)) != len(f.channels):
        problems.append("features.channels: a channel is listed twice")
    if pp.picks is not None and len(set(pp.picks)) != len(pp.picks):
        problems.append("preprocess.picks: a channel is listed twice")
    for centre, nbrs in pp.laplacian.items():
        if not nbrs:
            problems.append(f"preprocess.laplacian.{centre}: no neighbours")
        elif centre in nbrs:
            problems.append(f"preprocess.laplacian.{centre}: the centre is listed among its neighbours")
    if ch_names is None:
        return problems
    avail = list(pp.picks) if pp.picks is not None else list(ch_names)
    if pp.picks is not None:
        missing = [c for c in pp.picks if c not in ch_names]
        if missing:
            problems.append(f"preprocess.picks: {missing} not among the source's channels {ch_names}")
    if isinstance(pp.reference, list):
        missing = [c for c in pp.reference if c not in ch_names]
        if missing:
            problems.append(f"preprocess.reference: {missing} not among the source's channels {ch_names}")
    for centre, nbrs in pp.laplacian.items():
        missing = [c for c in [centre, *nbrs] if c not in avail]
        if missing:
            problems.append(f"preprocess.laplacian.{centre}: {missing} not among the picked channels {avail}")
    if f.channels is not None:
        missing = [c for c in f.channels if c not in avail]
        if missing:
            which = "picked channels" if pp.picks is not None else "source's channels"
            problems.append(f"features.channels: {missing} not among the {which} {avail}")
    for roi, members in (f.rois or {}).items():
        missing = [c for c in members if c not in avail]
        if missing:
            problems.append(f"features.rois.{roi}: {missing} not among the channels {avail}")
    return problems
