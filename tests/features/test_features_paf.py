"""Peak alpha frequency: against scipy's zero-padded Welch, synthetic peaks, and no-peak spectra."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from closedloop.config.features import PafConfig
from closedloop.features import FeatureExtractor, PeakAlphaFrequency
from closedloop.types import Chunk

FS = 250.0
SEG = 500  # 2 s segments, zero-padded 4x: 0.125 Hz bins


def pink(n: int, rng: np.random.Generator, scale: float = 10.0) -> np.ndarray:
    """1/f noise by spectral shaping (power ∝ 1/f)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0.0
    y = np.fft.irfft(spec, n)
    return scale * y / y.std()


def run_paf(x: np.ndarray, **kw):
    paf = PeakAlphaFrequency(FS, x.shape[1], window=SEG, hop=SEG // 2, segment=SEG, segments=15, **kw)
    out = np.full((x.shape[0] // (SEG // 2) + 1, x.shape[1], len(paf.names)), np.nan)
    k = paf.process(np.ascontiguousarray(x), out)
    return paf, out[:k]


def test_spectrum_and_cog_equal_scipy_zero_padded_welch():
    rng = np.random.default_rng(0)
    n = SEG + 14 * (SEG // 2)  # exactly 15 half-overlapping segments
    x = (pink(n, rng) + 8 * np.sin(2 * np.pi * 10.3 * np.arange(n) / FS))[:, None]
    paf, est = run_paf(x)
    f, p = signal.welch(x[:, 0], fs=FS, window="hann", nperseg=SEG, noverlap=SEG // 2, nfft=4 * SEG)
    sel = (f >= paf.freqs[0] - 1e-9) & (f <= paf.freqs[-1] + 1e-9)
    np.testing.assert_allclose(f[sel], paf.freqs, rtol=1e-12)
    np.testing.assert_allclose(paf.spectrum[0], p[sel], rtol=1e-9)
    cog_sel = (f >= 8) & (f <= 12)
    cog = np.sum(f[cog_sel] * p[cog_sel]) / np.sum(p[cog_sel])
    assert est[-1, 0, 0] == pytest.approx(cog, rel=1e-9)


@pytest.mark.parametrize("peak_hz", [9.1, 10.37, 11.6])
def test_interpolated_peak_recovers_a_synthetic_peak(peak_hz):
    rng = np.random.default_rng(1)
    n = int(40 * FS)
    t = np.arange(n) / FS
    x = (pink(n, rng) + 6 * np.sin(2 * np.pi * peak_hz * t + 0.3))[:, None]
    _, est = run_paf(x)
    assert abs(est[-1, 0, 1] - peak_hz) < 0.1


def test_centre_of_gravity_recovers_a_dominant_peak():
    rng = np.random.default_rng(2)
    n = int(40 * FS)
    t = np.arange(n) / FS
    x = (pink(n, rng, scale=2.0) + 20 * np.sin(2 * np.pi * 10.2 * t))[:, None]
    _, est = run_paf(x)
    assert abs(est[-1, 0, 0] - 10.2) < 0.1


@pytest.mark.parametrize("seed", range(5))
def test_no_peak_above_the_background_gives_nan(seed):
    rng = np.random.default_rng(10 + seed)
    x = pink(int(40 * FS), rng)[:, None]
    _, est = run_paf(x)
    assert np.isnan(est[-1, 0, 1])
    assert 8.0 < est[-1, 0, 0] < 10.0  # the centre of gravity of a 1/f slope leans to the low edge


def test_nan_until_the_buffer_is_full_and_per_channel():
    rng = np.random.default_rng(3)
    n = int(20 * FS)
    t = np.arange(n) / FS
    x = np.stack(
        [pink(n, rng) + 8 * np.sin(2 * np.pi * 9.5 * t), pink(n, rng) + 8 * np.sin(2 * np.pi * 11.0 * t)], axis=1
    )
    ext = FeatureExtractor(
        FS,
        ["a", "b"],
        {"alpha": (8.0, 12.0)},
        window=250,
        hop=125,
        per_channel=True,
        paf=PafConfig(segment_samples=SEG, segments=15),
    )
    frames = ext.step(Chunk(x, t))
    first_full = SEG + 14 * (SEG // 2)  # 15 segments seen
    ends = 250 + 125 * np.arange(len(frames))
    peaks = np.array([[f["paf_peak_a"], f["paf_peak_b"]] for f in frames])
    assert np.all(np.isnan(peaks[ends < first_full]))
    assert np.all(np.abs(peaks[ends >= first_full] - [9.5, 11.0]) < 0.1)
