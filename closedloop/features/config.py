"""``[preprocess]`` and ``[features]`` sections of a pipeline, and their cross-checks."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreprocessConfig(_Strict):
    """Causal preprocessing applied to every chunk before features."""

    reference: Literal["none", "average"] = "none"
    highpass_hz: float | None = Field(None, gt=0, description="causal Butterworth high-pass corner")
    notch_hz: float | None = Field(None, gt=0, description="line frequency to notch (50 or 60)")
    filter_order: int = Field(2, ge=1, le=8)


class FeaturesConfig(_Strict):
    """Band powers on the sample clock: a frame every ``hop_samples`` over ``window_samples``."""

    channels: list[str] = Field(min_length=1, description="channels the features are computed on")
    combine: Literal["mean", "each"] = Field(
        "mean", description="'mean': one virtual channel averaging them; 'each': features per channel"
    )
    window_samples: int = Field(ge=8, description="analysis window (samples)")
    hop_samples: int = Field(ge=1, description="a new frame every hop (samples)")
    bands: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}
    )
    ratios: dict[str, tuple[str, str]] = Field(
        default_factory=lambda: {"theta_alpha": ("theta", "alpha")},
        description="name -> (numerator band, denominator band)",
    )
    log10: bool = Field(True, description="report log10 of powers and ratios")
    smoothing_s: float = Field(0.0, ge=0, description="EMA time constant of the features (s); 0 = off")
    method: Literal["periodogram"] = "periodogram"

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not v:
            raise ValueError("at least one band is needed")
        for name, (lo, hi) in v.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"band name {name!r} must be an identifier")
            if not 0 < lo < hi:
                raise ValueError(f"band {name!r}: need 0 < low < high, got [{lo}, {hi}]")
        return v

    @model_validator(mode="after")
    def _ratios(self) -> "FeaturesConfig":
        for name, (num, den) in self.ratios.items():
            for part in (num, den):
                if part not in self.bands:
                    raise ValueError(
                        f"ratios.{name} refers to band {part!r}; defined bands: {sorted(self.bands)}"
                    )
            if name in self.bands:
                raise ValueError(f"ratios.{name}: the name is already a band")
        if self.hop_samples > self.window_samples:
            raise ValueError(
                f"hop_samples ({self.hop_samples}) must be <= window_samples ({self.window_samples})"
            )
        return self



def features_of(f: FeaturesConfig) -> list[str]:
    """Names of the features a ``[features]`` section produces, in frame order."""
    base = list(f.bands) + list(f.ratios)
    if f.combine == "mean":
        return base
    return [f"{b}_{ch}" for ch in f.channels for b in base]


def check_features(f: FeaturesConfig, pp: PreprocessConfig, sfreq: float, ch_names: list[str] | None) -> list[str]:
    """Problems that need the sampling rate or the source's channels, each naming its key."""
    problems: list[str] = []
    fs = sfreq
    nyq = fs / 2
    for name, (lo, hi) in f.bands.items():
        if hi > nyq:
            problems.append(f"features.bands.{name}: upper edge {hi} Hz is above Nyquist ({nyq} Hz at {fs} Hz)")
        period = fs / lo
        if f.window_samples < period:
            problems.append(
                f"features.window_samples: {f.window_samples} samples is shorter than one period of "
                f"band {name!r} at {lo} Hz ({math.ceil(period)} samples at {fs} Hz); allowed: >= {math.ceil(period)}"
            )
        resolution = fs / f.window_samples
        if hi - lo < resolution:
            problems.append(
                f"features.bands.{name}: {hi - lo} Hz wide but the window resolves only {resolution:.3g} Hz; "
                f"use window_samples >= {math.ceil(fs / (hi - lo))}"
            )
    for key, val in (("highpass_hz", pp.highpass_hz), ("notch_hz", pp.notch_hz)):
        if val is not None and val >= nyq:
            problems.append(f"preprocess.{key}: {val} Hz is not below Nyquist ({nyq} Hz)")
    names = ch_names
    if names is not None:
        missing = [c for c in f.channels if c not in names]
        if missing:
            problems.append(f"features.channels: {missing} not among the source's channels {names}")
    if len(set(f.channels)) != len(f.channels):
        problems.append("features.channels: a channel is listed twice")
    return problems
