"""Feature extraction on the sample clock (numba kernels inside)."""

from closedloop.features.bandpower import BandPower
from closedloop.features.extractor import FeatureExtractor

__all__ = ["BandPower", "FeatureExtractor"]
