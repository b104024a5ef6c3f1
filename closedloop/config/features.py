"""``[preprocess]`` and ``[features]`` sections of a pipeline, and their cross-checks.

The defaults (1-s Hann windows, log power, smoothing, the baseline block)
are closedloop's choices, explained in docs/eeg-and-pain.md; the quality
thresholds were calibrated on real resting EEG (docs/quality.md).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from closedloop.config.base import StrictModel
from closedloop.config.expressions import compile_expressions

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
    """``[features.baseline]``: z-score features against a calibration block (its length is the study's choice)."""

    duration_s: float = Field(gt=0, description="the first duration_s seconds of samples form the baseline")
    features: list[str] | None = Field(
        None, description="features to z-score (bare names); default: every band, relative band and ratio"
    )
    difference: list[str] = Field(
        default_factory=list,
        description="features reported as the difference from their baseline mean, in their own units "
        "(e.g. paf_cog: the PAF shift in Hz)",
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


#: The phase estimators of ``[features.phase.<rhythm>]`` (docs/phase.md has their sources).
PHASE_ESTIMATORS = ("ar", "etp", "echt")
#: Keys of ``[features.phase.<rhythm>]`` that only one estimator reads, by estimator.
PHASE_ESTIMATOR_KEYS = {
    "ar": ("filter_order_s", "ar_order", "hilbert_s"),
    "etp": ("filter_order_s", "train_s"),
    "echt": ("echt_order", "calibrate"),
}
#: What each rhythm adds to a frame, per (virtual) channel, in order: ``<rhythm>_<kind>``.
PHASE_OUTPUTS = ("phase", "amp", "freq", "snr")


class PhaseConfig(StrictModel):
    """``[features.phase.<rhythm>]``: real-time phase, amplitude, frequency and SNR of one narrow band.

    Every frame carries, per (virtual) channel, the estimate at the frame's
    newest sample: ``<rhythm>_phase`` (rad, cosine phase: 0 = peak, ±π =
    trough, π/2 = falling, -π/2 = rising), ``<rhythm>_amp`` (µV, the band's
    instantaneous amplitude), ``<rhythm>_freq`` (Hz) and ``<rhythm>_snr`` (dB,
    band power over the power of its flanks). docs/phase.md describes the
    estimators, their sources and their measured accuracy.
    """

    band: Band = Field(description="the rhythm's band [low, high] (Hz), e.g. [8, 13] for the mu rhythm")
    estimator: Literal["ar", "etp", "echt"] = Field(
        "ar",
        description="'ar': band-pass, Yule-Walker AR forward prediction, Hilbert (Zrenner et al. 2018); 'etp': "
        "educated temporal prediction from the last peak (Shirinpour et al. 2020); 'echt': endpoint-corrected "
        "Hilbert transform (Schreglmann et al. 2021)",
    )
    window_s: float = Field(0.5, gt=0, le=10.0, description="samples each estimate sees (s)")
    filter_order_s: float = Field(
        0.128,
        gt=0,
        le=5.0,
        description="ar, etp: order of the window-method FIR band-pass, in s (0.128 = order 128 at 1 kHz); half "
        "of it is the edge the zero-phase filter cannot reach",
    )
    ar_order: int | None = Field(
        None, ge=2, le=200, description="ar: Yule-Walker model order (default: 30 at 1 kHz, scaled to the rate)"
    )
    hilbert_s: float = Field(0.128, gt=0, le=5.0, description="ar: Hilbert window centred on the newest sample (s)")
    train_s: float = Field(
        60.0,
        gt=0,
        le=3600.0,
        description="etp: the first train_s seconds calibrate the period (NaN phase until they are over)",
    )
    echt_order: int = Field(1, ge=1, le=6, description="echt: order of the causal Butterworth band-pass")
    calibrate: Literal["band", "centre", "none"] = Field(
        "band",
        description="echt: divide out the endpoint's complex gain for a tone (Osmers & Kolossa 2026) at the "
        "band's dominant frequency over the last snr_window_s ('band'), at the band centre ('centre'), or not "
        "('none': plain ecHT); the gain's phase turns by tens of degrees per Hz across the band",
    )
    snr_window_s: float = Field(2.0, gt=0, le=60.0, description="window of the SNR spectrum (Hann) (s)")
    snr_flank_hz: float = Field(2.0, gt=0, description="width of each flank the band is compared with (Hz)")
    snr_gap_hz: float = Field(1.0, ge=0, description="gap between the band and each flank (Hz)")

    @field_validator("band")
    @classmethod
    def _band(cls, v: Band) -> Band:
        _check_band(v)
        return v

    @model_validator(mode="after")
    def _keys(self) -> PhaseConfig:
        problems = []
        for key in sorted(self.model_fields_set):
            owners = [e for e, keys in PHASE_ESTIMATOR_KEYS.items() if key in keys]
            if owners and self.estimator not in owners:
                problems.append(
                    f"{key}: only estimator {' or '.join(map(repr, owners))} reads it, not {self.estimator!r}"
                )
        low = self.band[0] - self.snr_gap_hz - self.snr_flank_hz
        if low <= 0:
            problems.append(
                f"snr_flank_hz: the lower flank would reach {low:g} Hz; band[0] - snr_gap_hz - snr_flank_hz must be > 0"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def ar_order_at(self, sfreq: float) -> int:
        """Return the AR order at ``sfreq`` (the given one, or 30 at 1 kHz scaled)."""
        return self.ar_order if self.ar_order is not None else max(2, round(0.030 * sfreq))

    def filter_order_at(self, sfreq: float) -> int:
        """Return the (even) FIR order at ``sfreq``."""
        return max(2, 2 * round(self.filter_order_s * sfreq / 2))


class SpectrumConfig(StrictModel):
    """``[features.spectrum]``: the slow, full-resolution Welch spectrum behind aperiodic fits and IAF bands.

    Every ``segment_samples - overlap * segment_samples`` samples a Hann segment's
    periodogram is computed at every bin the aperiodic fit and the IAF bands need;
    the last ``segments`` are averaged (``scipy.signal.welch`` on the same samples)
    and the aperiodic fit, corrected powers and IAF band powers are refreshed. Frames
    carry the latest values (NaN until ``segments`` segments have been seen).
    """

    segment_samples: int | None = Field(
        None, ge=16, le=MAX_SAMPLES, description="Welch segment length (samples); default: window_samples"
    )
    segments: int = Field(
        8, ge=1, le=10_000, description="segments averaged (8 at 50 % overlap span 4.5 segment lengths)"
    )
    overlap: float = Field(0.5, ge=0.0, lt=1.0, description="fraction of a segment shared with the next")


class AperiodicConfig(StrictModel):
    """``[features.aperiodic]``: the 1/f (aperiodic) fit of the spectrum and power above it (docs/pain-markers.md).

    The specparam/FOOOF algorithm (Donoghue et al., Nat Neurosci 2020) on the
    ``[features.spectrum]`` estimate, per (virtual) channel: adds ``ap_offset``,
    ``ap_exponent`` (and ``ap_knee``) and, for each band in ``corrected``,
    ``<band>_ap``: the power above the fitted aperiodic component (µV², never log10'd:
    it is near 0, possibly negative, without an oscillation).
    """

    range_hz: Band = Field((2.0, 40.0), description="frequency range of the fit [low, high] (Hz, both included)")
    knee: bool = Field(
        False, description="fit a knee: offset - log10(knee + f^exponent); else offset - exponent log10 f"
    )
    corrected: list[str] | None = Field(
        None, description="bands (or IAF bands) reported as '<band>_ap'; default: every band of features.bands"
    )
    peak_width_hz: Band = Field((1.0, 12.0), description="limits of a peak's width (specparam's peak_width_limits)")
    max_peaks: int = Field(6, ge=0, le=12, description="peaks fitted at most (specparam's max_n_peaks)")
    peak_threshold: float = Field(2.0, gt=0, description="peak detection threshold (standard deviations)")
    min_peak_height: float = Field(0.0, ge=0, description="absolute peak height threshold (log10 power)")

    @field_validator("range_hz", "peak_width_hz")
    @classmethod
    def _bands(cls, v: Band) -> Band:
        _check_band(v)
        return v


#: Klimesch's IAF-anchored bands (offsets from the IAF, Hz): theta IAF-6..IAF-4, lower-1 alpha
#: IAF-4..IAF-2, lower-2 alpha IAF-2..IAF, upper alpha IAF..IAF+2 (Klimesch, Brain Res Rev 1999,
#: PMID 10209231; docs/pain-markers.md).
KLIMESCH_BANDS: dict[str, Band] = {
    "theta_iaf": (-6.0, -4.0),
    "alpha1_iaf": (-4.0, -2.0),
    "alpha2_iaf": (-2.0, 0.0),
    "alpha3_iaf": (0.0, 2.0),
}


class IAFConfig(StrictModel):
    """``[features.iaf]``: bands anchored to the individual alpha frequency of the baseline block.

    At the end of ``[features.baseline]`` the IAF of each (virtual) channel is
    estimated from the mean ``[features.spectrum]`` periodogram of the baseline
    (or taken from ``fixed_hz``) and fixed for the session; frames carry it as
    ``iaf`` and the power of each band ``IAF + offset`` as ``<name>`` (NaN during
    the baseline). A replay recomputes the same IAF from the same samples.
    """

    search_hz: Band = Field((7.0, 13.0), description="band searched for the IAF (Hz)")
    method: Literal["peak", "cog"] = Field(
        "peak",
        description="'peak': the highest local maximum standing min_peak_log10 above the band's 1/f line "
        "(interpolated; the centre of gravity when there is none); 'cog': centre of gravity of the band",
    )
    channel: str | None = Field(
        None, description="the (virtual) channel whose IAF every channel uses; default: each channel its own"
    )
    fixed_hz: float | None = Field(None, gt=0, description="use this IAF (e.g. an earlier session's) instead")
    min_peak_log10: float = Field(0.3, ge=0, description="height above the 1/f line a peak needs (log10)")
    bands: dict[str, Band] = Field(
        default_factory=lambda: dict(KLIMESCH_BANDS),
        description="name -> (low, high) offsets from the IAF (Hz); default: Klimesch's theta and alpha bands",
    )

    @field_validator("bands")
    @classmethod
    def _offsets(cls, v: dict[str, Band]) -> dict[str, Band]:
        if not v:
            raise ValueError("at least one IAF band is needed")
        for name, (lo, hi) in v.items():
            if not _IDENT.fullmatch(name):
                raise ValueError(f"band name {name!r} must be an identifier")
            if not lo < hi:
                raise ValueError(f"{name}: need low < high, got [{lo}, {hi}]")
        return v

    @field_validator("search_hz")
    @classmethod
    def _search(cls, v: Band) -> Band:
        _check_band(v)
        return v


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
        description="name -> (numerator band, denominator band): per channel; or two features (e.g. "
        "'theta_frontal', 'alpha_posterior'): one cross-channel ratio",
    )
    expressions: dict[str, str] = Field(
        default_factory=dict,
        description="name -> arithmetic over feature names, e.g. '(alpha_right - alpha_left) / "
        "(alpha_right + alpha_left)'; + - * / ** log log10 abs sqrt exp; values in physical units",
    )
    log10: bool = Field(True, description="report log10 of powers and ratios")
    smoothing_s: float = Field(0.0, ge=0, description="EMA time constant of the features (s); 0 = off")
    welch: WelchConfig = Field(default_factory=WelchConfig)
    iir: IIRConfig = Field(default_factory=IIRConfig)
    paf: PafConfig | None = None
    spectrum: SpectrumConfig = Field(default_factory=SpectrumConfig)
    aperiodic: AperiodicConfig | None = None
    iaf: IAFConfig | None = None
    baseline: FeatureBaselineConfig | None = None
    quality: QualityConfig = Field(default_factory=QualityConfig)
    phase: dict[str, PhaseConfig] = Field(
        default_factory=dict,
        description="[features.phase.<rhythm>]: real-time phase, amplitude, frequency and SNR of a narrow band",
    )
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

    @field_validator("phase")
    @classmethod
    def _phase(cls, v: dict[str, PhaseConfig]) -> dict[str, PhaseConfig]:
        for name in v:
            if not _IDENT.fullmatch(name):
                raise ValueError(f"rhythm name {name!r} must be an identifier")
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
        channel_features = _channel_features(self)
        for name, (num, den) in self.ratios.items():
            in_bands = [part in self.bands for part in (num, den)]
            if all(in_bands):
                pass  # a ratio of two bands, per channel
            else:
                unknown = [part for part in (num, den) if part not in self.bands and part not in channel_features]
                if unknown:
                    problems.append(
                        f"ratios.{name}: refers to {unknown[0]!r}, neither a band {sorted(self.bands)} nor a feature "
                        f"of this pipeline {channel_features[:30]}"
                    )
                elif any(in_bands):
                    band, other = (num, den) if in_bands[0] else (den, num)
                    problems.append(
                        f"ratios.{name}: mixes band {band!r} with feature {other!r}; give two bands (a ratio per "
                        f"channel) or two features (one cross-channel ratio)"
                    )
            if name in self.bands:
                problems.append(f"ratios.{name}: the name is already a band")
        problems += _spectral_problems(self)
        if self.hop_samples > self.window_samples:
            problems.append(f"hop_samples: {self.hop_samples} must be <= `window_samples` ({self.window_samples})")
        method = "welch" if self.method == "periodogram" else self.method
        for sub in ("welch", "iir"):
            if sub in self.model_fields_set and sub != method:
                problems.append(f"{sub}: [features.{sub}] is given but method is {self.method!r}")
        seg = self.welch.segment_samples
        if seg is not None and seg > self.window_samples:
            problems.append(f"welch.segment_samples: {seg} must be <= `window_samples` ({self.window_samples})")
        if self.baseline is not None:
            allowed = _baseline_allowed(self)
            listed = {"features": self.baseline.features or [], "difference": self.baseline.difference}
            for key, names in listed.items():
                for name in names:
                    if name in _after_baseline(self):
                        problems.append(
                            f"baseline.{key}: {name!r} is defined only once the baseline has ended (IAF); "
                            f"choose from {allowed}"
                        )
                    elif name not in allowed:
                        problems.append(f"baseline.{key}: {name!r} is not a feature name; choose from {allowed}")
            both = set(self.baseline.features or _normalisable(self)) & set(self.baseline.difference)
            if self.baseline.features is not None and both:
                problems.append(f"baseline.difference: {sorted(both)} also in baseline.features; each feature one way")
        if not problems:
            problems += _expression_problems(self)
        names = base_features(self)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.append(f"phase: feature names {twice} clash with another feature of a channel; rename the rhythm")
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
    """Return the features z-scored against the baseline by default: bands, relative bands, ratios."""
    rel = [f"{b}_rel" for b in f.bands] if f.relative_to is not None else []
    return list(f.bands) + rel + band_ratios(f) + cross_ratios(f)


def band_ratios(f: FeaturesConfig) -> list[str]:
    """Return the ratios of two bands (one per channel)."""
    return [name for name, (num, den) in f.ratios.items() if num in f.bands and den in f.bands]


def cross_ratios(f: FeaturesConfig) -> list[str]:
    """Return the ratios of two features (one each, across channels)."""
    return [name for name, (num, den) in f.ratios.items() if num not in f.bands and den not in f.bands]


def corrected_bands(f: FeaturesConfig) -> list[str]:
    """Return the bands (fixed or IAF) whose aperiodic-corrected power is reported as ``<band>_ap``."""
    if f.aperiodic is None:
        return []
    return list(f.bands) if f.aperiodic.corrected is None else list(f.aperiodic.corrected)


def spectral_features(f: FeaturesConfig) -> list[str]:
    """Return the per-channel names of the ``[features.spectrum]`` stage (aperiodic, IAF), in frame order."""
    names: list[str] = []
    corrected = corrected_bands(f)
    if f.aperiodic is not None:
        names += ["ap_offset", "ap_exponent"] + (["ap_knee"] if f.aperiodic.knee else [])
        names += [f"{b}_ap" for b in corrected if b in f.bands]
    if f.iaf is not None:
        names += ["iaf", *f.iaf.bands]
        names += [f"{b}_ap" for b in f.iaf.bands if b in corrected]
    return names


def _after_baseline(f: FeaturesConfig) -> set[str]:
    """Return the bare names that stay NaN until the baseline ends (the IAF and its bands)."""
    if f.iaf is None or f.iaf.fixed_hz is not None:
        return set()
    return {"iaf", *f.iaf.bands, *(f"{b}_ap" for b in f.iaf.bands)}


def base_features(f: FeaturesConfig) -> list[str]:
    """Feature names of one (virtual) channel, in frame order."""
    paf = [f"paf_{e}" for e in f.paf.estimators] if f.paf is not None else []
    rel = [f"{b}_rel" for b in f.bands] if f.relative_to is not None else []
    return list(f.bands) + rel + band_ratios(f) + paf + spectral_features(f) + phase_features(f)


def phase_features(f: FeaturesConfig) -> list[str]:
    """Feature names the ``[features.phase]`` rhythms add per (virtual) channel, in frame order."""
    return [f"{rhythm}_{kind}" for rhythm in f.phase for kind in PHASE_OUTPUTS]


def _channel_features(f: FeaturesConfig) -> list[str]:
    """Return the per-channel frame names (``<feature>_<channel>``, or bare for one mean channel)."""
    base = base_features(f)
    if f.rois is not None:
        return [f"{b}_{roi}" for roi in f.rois for b in base]
    if f.combine == "mean" or f.channels is None:
        return base
    return [f"{b}_{ch}" for ch in f.channels for b in base]


def global_features(f: FeaturesConfig) -> list[str]:
    """Return the features computed once across channels: cross-channel ratios, then expressions."""
    return cross_ratios(f) + list(f.expressions)


def features_of(f: FeaturesConfig) -> list[str]:
    """Names of the features a ``[features]`` section produces, in frame order (``pain_index`` last)."""
    return _channel_features(f) + global_features(f) + ([PAIN_INDEX] if f.pain_index is not None else [])


def _baseline_allowed(f: FeaturesConfig) -> list[str]:
    """Return the bare names a baseline may normalise (every feature defined during the baseline)."""
    late = _after_baseline(f)
    return [n for n in base_features(f) if n not in late] + global_features(f)


def expression_texts(f: FeaturesConfig) -> dict[str, str]:
    """Return every global feature as an expression: cross-channel ratios first (log10'd if ``log10``)."""
    texts = {}
    for name in cross_ratios(f):
        num, den = f.ratios[name]
        texts[name] = f"log10({num} / {den})" if f.log10 else f"{num} / {den}"
    texts.update(f.expressions)
    return texts


def _expression_problems(f: FeaturesConfig) -> list[str]:
    cross = set(cross_ratios(f))
    _, problems = compile_expressions(expression_texts(f), _channel_features(f))
    return [p.replace("expressions.", "ratios.", 1) if p.split(":")[0].split(".")[1] in cross else p for p in problems]


def _spectral_problems(f: FeaturesConfig) -> list[str]:
    """Return the problems of ``[features.aperiodic]`` and ``[features.iaf]`` that need no sampling rate."""
    problems = []
    names = set(f.bands)
    if f.iaf is not None:
        for name in f.iaf.bands:
            if name in names or name in f.ratios:
                problems.append(f"iaf.bands.{name}: the name is already a band or ratio")
        names |= set(f.iaf.bands)
        if f.iaf.fixed_hz is None and f.baseline is None:
            problems.append("iaf: needs [features.baseline] (the IAF is estimated from it) or iaf.fixed_hz")
        lo = min(lo for lo, _ in f.iaf.bands.values())
        lowest = (f.iaf.fixed_hz or f.iaf.search_hz[0]) + lo
        if lowest <= 0:
            problems.append(
                f"iaf.bands: the lowest band starts at {lowest:g} Hz for the lowest possible IAF; "
                f"every band must stay above 0 Hz"
            )
        if f.iaf.channel is not None and f.iaf.channel not in _signal_names(f):
            problems.append(f"iaf.channel: {f.iaf.channel!r} is not a feature channel; choose from {_signal_names(f)}")
    if f.aperiodic is not None:
        a = f.aperiodic
        for name in corrected_bands(f):
            if name not in names:
                problems.append(f"aperiodic.corrected: {name!r} is not a band; choose from {sorted(names)}")
                continue
            lo, hi = _band_extent(f, name)
            if lo < a.range_hz[0] or hi > a.range_hz[1]:
                problems.append(
                    f"aperiodic.corrected: {name!r} spans [{lo:g}, {hi:g}) Hz, outside the fit range "
                    f"aperiodic.range_hz {list(a.range_hz)}; widen the range or leave the band out"
                )
    return problems


def _signal_names(f: FeaturesConfig) -> list[str]:
    if f.rois is not None:
        return list(f.rois)
    if f.channels is None:
        return []
    return ["+".join(f.channels)] if f.combine == "mean" else list(f.channels)


def _band_extent(f: FeaturesConfig, name: str) -> Band:
    """Return the widest frequency span of a band (an IAF band over every possible IAF)."""
    if name in f.bands:
        return f.bands[name]
    assert f.iaf is not None
    lo, hi = f.iaf.bands[name]
    if f.iaf.fixed_hz is not None:
        return f.iaf.fixed_hz + lo, f.iaf.fixed_hz + hi
    return f.iaf.search_hz[0] + lo, f.iaf.search_hz[1] + hi


def spectrum_range(f: FeaturesConfig) -> Band | None:
    """Return the frequencies the ``[features.spectrum]`` estimate must cover, or None when nothing needs it."""
    spans = []
    if f.aperiodic is not None:
        spans.append(f.aperiodic.range_hz)
        spans += [_band_extent(f, b) for b in corrected_bands(f) if b in f.bands]
    if f.iaf is not None:
        spans.append(f.iaf.fixed_hz and (f.iaf.fixed_hz, f.iaf.fixed_hz) or f.iaf.search_hz)
        spans += [_band_extent(f, b) for b in f.iaf.bands]
    if not spans:
        return None
    return min(lo for lo, _ in spans), max(hi for _, hi in spans)
