"""Feature extraction on the sample clock (numba kernels inside)."""

from __future__ import annotations

from closedloop.features.bandpower import BandPower
from closedloop.features.config import FeaturesConfig, PreprocessConfig
from closedloop.features.extractor import FeatureExtractor
from closedloop.preprocess import Preprocessor


def build_chain(features: FeaturesConfig, preprocess: PreprocessConfig, sfreq: float,
                ch_names: list[str]) -> tuple[Preprocessor, FeatureExtractor]:
    """The preprocessor and feature extractor a pipeline's sections describe."""
    pre = Preprocessor(
        ch_names, features.channels, sfreq, combine=features.combine, reference=preprocess.reference,
        highpass_hz=preprocess.highpass_hz, notch_hz=preprocess.notch_hz, filter_order=preprocess.filter_order,
    )
    ext = FeatureExtractor(
        sfreq, pre.out_names, features.bands, features.ratios, features.window_samples, features.hop_samples,
        log10=features.log10, smoothing_s=features.smoothing_s, per_channel=features.combine == "each",
    )
    return pre, ext


__all__ = ["BandPower", "FeatureExtractor", "FeaturesConfig", "PreprocessConfig", "build_chain"]
