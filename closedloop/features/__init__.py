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
    """The preprocessor and feature extractor a pipeline's sections describe.

    The preprocessor outputs the feature signals (channels or ROIs) and, after
    them, the single electrodes that feed ROI means, so the extractor's quality
    checks see each electrode.
    """
    pre = Preprocessor.from_config(preprocess, features, sfreq, ch_names, monitor=True, ch_types=ch_types)
    method = features.band_method
    if method == "welch":
        options = {"segment": features.welch.segment_samples, "overlap": features.welch.overlap}
    elif method == "iir":
        options = {"order": features.iir.order, "smoothing": features.iir.smoothing, "tau_s": features.iir.tau_s}
    else:
        options = {}
    paf = None
    if features.paf is not None:
        p = features.paf
        paf = dict(
            segment=p.segment_samples,
            segments=p.segments,
            overlap=p.overlap,
            zero_pad=p.zero_pad,
            estimators=tuple(p.estimators),
            cog_band=p.cog_band,
            peak_band=p.peak_band,
            min_peak_log10=p.min_peak_log10,
        )
    bl = features.baseline
    q = features.quality
    ext = FeatureExtractor(
        sfreq,
        pre.signal_names,
        features.bands,
        features.ratios,
        features.window_samples,
        features.hop_samples,
        log10=features.log10,
        smoothing_s=features.smoothing_s,
        per_channel=features.rois is not None or features.combine == "each",
        method=method,
        method_options=options,
        relative_to=features.relative_to,
        paf=paf,
        baseline_s=bl.duration_s if bl else None,
        baseline_features=bl.features if bl else None,
        quality=dict(
            amplitude_uV=q.amplitude_uV,
            flat_uV=q.flat_uV,
            emg_hz=q.emg_hz,
            emg_rms_uV=q.emg_rms_uV,
            gap_tolerance_s=q.gap_tolerance_s,
        ),
        monitor_names=pre.monitor_names,
    )
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
    "WelchBandPower",
    "build_chain",
    "check_features",
    "features_of",
    "make_bandpower",
]
