"""Band power kernel against scipy.signal.welch, on the sample clock."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from closedloop.features import BandPower, FeatureExtractor
from closedloop.types import Chunk, Quality

FS = 250.0
BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}


def welch_band(x: np.ndarray, lo: float, hi: float, fs: float = FS) -> np.ndarray:
    """Reference: one Hann segment, mean removed, PSD summed over [lo, hi] times the bin width."""
    f, p = signal.welch(x, fs=fs, window="hann", nperseg=x.shape[0], axis=0)
    sel = (f >= lo) & (f <= hi)
    return p[sel].sum(axis=0) * (f[1] - f[0])


def test_matches_scipy_welch_on_noise():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 3)) * 5 + 3.0  # offset: the mean must be removed as welch does
    bp = BandPower(FS, 3, BANDS, window=250, hop=50)
    power, times, bad = bp.step(x, np.arange(1000) / FS)
    assert power.shape == (16, 3, 2) and not bad.any()
    for k in range(power.shape[0]):
        end = 250 + 50 * k
        seg = x[end - 250 : end]
        for b, (lo, hi) in enumerate(BANDS.values()):
            np.testing.assert_allclose(power[k, :, b], welch_band(seg, lo, hi), rtol=1e-9)
        assert times[k] == pytest.approx((end - 1) / FS)


def test_known_sinusoid_power():
    # a 10 Hz sine of amplitude A has power A²/2; with a 1-s window on a bin it lands in alpha
    t = np.arange(500) / FS
    x = (20.0 * np.sin(2 * np.pi * 10.0 * t))[:, None]
    power, _, _ = BandPower(FS, 1, BANDS, window=250, hop=250).step(x, t)
    alpha = power[:, 0, 1]
    np.testing.assert_allclose(alpha, 200.0, rtol=0.01)
    assert np.all(power[:, 0, 0] < 0.01 * alpha)  # nothing leaks into theta beyond Hann's skirt


@pytest.mark.parametrize("chunk", [1, 7, 32, 1000])
def test_chunking_invariance(chunk):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 2))
    ts = np.arange(1000) / FS
    ref = BandPower(FS, 2, BANDS, window=250, hop=10).step(x, ts)[0].copy()
    bp = BandPower(FS, 2, BANDS, window=250, hop=10)
    got = [bp.step(x[i : i + chunk], ts[i : i + chunk])[0].copy() for i in range(0, 1000, chunk)]
    np.testing.assert_array_equal(np.concatenate(got), ref)


def test_extractor_ratio_log_and_flags():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 1))
    ts = np.arange(600) / FS
    ex = FeatureExtractor(FS, ["roi"], BANDS, {"theta_alpha": ("theta", "alpha")}, window=250, hop=50)
    frames = ex.step(Chunk(x, ts))
    assert len(frames) == 8 and frames[0].names == ("theta", "alpha", "theta_alpha")
    ref_t = welch_band(x[:250], *BANDS["theta"])[0]
    ref_a = welch_band(x[:250], *BANDS["alpha"])[0]
    assert frames[0]["theta"] == pytest.approx(np.log10(ref_t), rel=1e-9)
    assert frames[0]["theta_alpha"] == pytest.approx(np.log10(ref_t / ref_a), rel=1e-9)
    assert all(f.flags == Quality.OK for f in frames)
    # a NaN sample flags every frame whose window holds it; a time jump flags the next frame
    y = rng.standard_normal((100, 1))
    y[10] = np.nan
    later = ex.step(Chunk(y, 600 / FS + np.arange(100) / FS + 5.0))
    assert later and all(f.flags & Quality.NONFINITE for f in later)
    assert later[0].flags & Quality.GAP


def test_smoothing_follows_ema():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 1))
    ts = np.arange(2000) / FS
    raw = [f["alpha"] for f in FeatureExtractor(FS, ["c"], BANDS, window=250, hop=25).step(Chunk(x, ts))]
    sm = [f["alpha"] for f in FeatureExtractor(FS, ["c"], BANDS, window=250, hop=25, smoothing_s=1.0).step(Chunk(x, ts))]
    a = 1 - np.exp(-25 / 250.0)
    ema = raw[0]
    assert sm[0] == ema
    for r, s in zip(raw[1:], sm[1:]):
        ema += a * (r - ema)
        assert s == pytest.approx(ema, rel=1e-12)
