"""Feature extraction on the sample clock (numba kernels inside).

``build_chain`` turns a pipeline's ``[preprocess]`` and ``[features]``
sections into the two stateful stages the pipeline runs per chunk.
"""

from __future__ import annotations

from closedloop.config.features import FeaturesConfig, PreprocessConfig, features_of
from closedloop.config.validate import check_features
from closedloop.features.bandpower import BandPowerMethod
from closedloop.features.extractor import FeatureExtractor, make_bandpower
from closedloop.features.iir import IIRBandPower
from closedloop.features.paf import PeakAlphaFrequency
from closedloop.features.quality import QualityMonitor
from closedloop.features.sliding_dft import SlidingDFTBandPower
from closedloop.features.spectrum import SpectrumStage
from closedloop.features.welch import WelchBandPower
from closedloop.preprocess import Preprocessor

BandPower = WelchBandPower  # the reference method under its historical name


def build_chain(
    features: FeaturesConfig,
    preprocess: PreprocessConfig,
    sfreq: float,
    ch_names: list[str],
    ch_types: list[str] | None = None,
) -> tuple[Preprocessor, FeatureExtractor]:
    """Return the preprocessor and feature extractor a pipeline's sections describe.

    The preprocessor outputs the feature signals (channels or ROIs) and, after
    them, the single electrodes that feed ROI means, so the extractor's quality
    checks see each electrode.
    """
    pre = Preprocessor.from_config(preprocess, features, sfreq, ch_names, monitor=True, ch_types=ch_types)
    ext = FeatureExtractor.from_config(features, sfreq, pre.signal_names, pre.monitor_names)
    return pre, ext


__all__ = [
    "BandPower",
    "BandPowerMethod",
    "FeatureExtractor",
    "FeaturesConfig",
    "IIRBandPower",
    "PeakAlphaFrequency",
    "PreprocessConfig",
    "QualityMonitor",
    "SlidingDFTBandPower",
    "SpectrumStage",
    "WelchBandPower",
    "build_chain",
    "check_features",
    "features_of",
    "make_bandpower",
]
