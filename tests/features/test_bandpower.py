"""Band-power methods against scipy.signal.welch and MNE's psd_array_welch, on the sample clock."""

from __future__ import annotations

import numpy as np
import pytest
from mne.time_frequency import psd_array_welch
from scipy import signal

from closedloop.features import IIRBandPower, SlidingDFTBandPower, WelchBandPower, make_bandpower

FS = 250.0
BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}


def scipy_band(x: np.ndarray, lo: float, hi: float, nperseg: int, fs: float = FS, noverlap=None) -> np.ndarray:
    """Reference: scipy Welch PSD (Hann, mean removed), summed over lo <= f < hi times the bin width."""
    f, p = signal.welch(x, fs=fs, window="hann", nperseg=nperseg, noverlap=noverlap, axis=0)
    sel = (f >= lo) & (f < hi)
    return p[sel].sum(axis=0) * (f[1] - f[0])


def mne_band(x: np.ndarray, lo: float, hi: float, nperseg: int, noverlap: int = 0, fs: float = FS) -> np.ndarray:
    """Reference: MNE with scipy-equal arguments (MNE's defaults are Hamming, 256-point FFT).

    MNE's ``fmax`` is inclusive: half a bin below ``hi`` selects the half-open band's bins.
    """
    p, f = psd_array_welch(
        x.T,
        fs,
        fmin=lo,
        fmax=hi - 0.5 * fs / nperseg,
        n_fft=nperseg,
        n_per_seg=nperseg,
        n_overlap=noverlap,
        window="hann",
        average="mean",
        remove_dc=True,
        verbose="error",
    )
    return p.sum(axis=-1) * (fs / nperseg)


def frame_ends(n: int, window: int, hop: int) -> list[int]:
    return list(range(window, n + 1, hop))


def test_welch_single_segment_matches_scipy_and_mne_on_noise():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 3)) * 5 + 3.0  # offset: the mean must be removed as both references do
    ts = np.arange(1000) / FS
    power, times = WelchBandPower(FS, 3, BANDS, window=250, hop=50).step(x, ts)
    ends = frame_ends(1000, 250, 50)
    assert power.shape == (len(ends), 3, 2)
    for k, end in enumerate(ends):
        seg = x[end - 250 : end]
        for b, (lo, hi) in enumerate(BANDS.values()):
            np.testing.assert_allclose(power[k, :, b], scipy_band(seg, lo, hi, 250), rtol=1e-9)
            np.testing.assert_allclose(power[k, :, b], mne_band(seg, lo, hi, 250), rtol=1e-6)
        assert times[k] == ts[end - 1]  # frame time = the newest sample used


def test_welch_segments_match_scipy_and_mne():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1500, 2)) * 3
    wp = WelchBandPower(FS, 2, BANDS, window=1000, hop=100, segment=250, overlap=0.5)
    assert wp.n_segments == 7
    power, _ = wp.step(x, np.arange(1500) / FS)
    for k, end in enumerate(frame_ends(1500, 1000, 100)):
        seg = x[end - 1000 : end]
        for b, (lo, hi) in enumerate(BANDS.values()):
            np.testing.assert_allclose(power[k, :, b], scipy_band(seg, lo, hi, 250, noverlap=125), rtol=1e-9)
            np.testing.assert_allclose(power[k, :, b], mne_band(seg, lo, hi, 250, noverlap=125), rtol=1e-6)


def test_welch_segments_align_to_newest_sample():
    # 1000 samples hold 4 segments of 300 at step 225 (975 used): the oldest 25 are left out
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1000, 1))
    power, _ = WelchBandPower(FS, 1, BANDS, window=1000, hop=1000, segment=300, overlap=0.25).step(
        x, np.arange(1000) / FS
    )
    ref = scipy_band(x[25:], *BANDS["alpha"], 300, noverlap=75)
    np.testing.assert_allclose(power[0, :, 1], ref, rtol=1e-9)


@pytest.mark.parametrize(
    "bands",
    [
        BANDS,
        {"edge_low": (1.0, 3.0), "nyquist": (120.0, 125.5)},  # bin 1 (neighbour 0 is the mean) and bin N/2
        {"one_bin": (10.0, 10.5), "wide": (0.5, 60.0)},
    ],
)
def test_sliding_dft_equals_single_segment_welch(bands):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 2)) * 7 - 20.0
    ts = np.arange(2000) / FS
    ref, _ = WelchBandPower(FS, 2, bands, window=250, hop=7).step(x, ts)
    got, times = SlidingDFTBandPower(FS, 2, bands, window=250, hop=7).step(x, ts)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_band_edges_are_half_open():
    # a bin exactly on a shared edge (8 Hz) counts in the upper band only: theta [4, 8) + alpha [8, 12)
    # holds each bin of [4, 12) once; MNE (inclusive fmax) agrees with fmax half a bin below 8 Hz
    rng = np.random.default_rng(4)
    x = rng.standard_normal((250, 1))
    t = np.arange(250) / FS
    p, _ = WelchBandPower(FS, 1, BANDS, window=250, hop=250).step(x, t)
    both, _ = WelchBandPower(FS, 1, {"b": (4.0, 12.0)}, window=250, hop=250).step(x, t)
    only8, _ = WelchBandPower(FS, 1, {"b": (8.0, 8.5)}, window=250, hop=250).step(x, t)
    below, _ = WelchBandPower(FS, 1, {"b": (4.0, 7.5)}, window=250, hop=250).step(x, t)
    assert p[0, 0, 0] + p[0, 0, 1] == pytest.approx(both[0, 0, 0], rel=1e-12)
    assert p[0, 0, 0] == pytest.approx(below[0, 0, 0], rel=1e-12)  # 4, 5, 6, 7 Hz: not 8
    assert only8[0, 0, 0] > 0 and p[0, 0, 1] > only8[0, 0, 0]  # 8 Hz is alpha's
    np.testing.assert_allclose(p[0, 0, 0], mne_band(x, 4.0, 8.0, 250)[0], rtol=1e-6)
    f, ref = signal.welch(x[:, 0], fs=FS, window="hann", nperseg=250)
    assert p[0, 0, 1] == pytest.approx(ref[(f >= 8) & (f < 12)].sum() * (f[1] - f[0]), rel=1e-9)


@pytest.mark.parametrize("method", ["welch", "sliding_dft", "iir"])
def test_known_sinusoid_power(method):
    # a 10 Hz sine of amplitude A has power A²/2; on a bin, with a Hann window, it stays in alpha
    n = 2500
    t = np.arange(n) / FS
    x = (20.0 * np.sin(2 * np.pi * 10.0 * t))[:, None]
    power, _ = make_bandpower(method, FS, 1, BANDS, 250, 250).step(x, t)
    alpha = power[4:, 0, 1]  # after the IIR filter's transient
    np.testing.assert_allclose(alpha, 200.0, rtol=0.03 if method == "iir" else 1e-9)
    leak = 0.15 if method == "iir" else 1e-3  # a 4th-order band-pass passes ~11 % at 10 Hz into 4-8 Hz
    assert np.all(power[4:, 0, 0] < leak * alpha)


def test_white_noise_band_power_matches_its_density():
    # white noise of variance s² has one-sided PSD 2 s² / fs: band power over [lo, hi) = 2 s² (hi - lo) / fs
    rng = np.random.default_rng(5)
    x = rng.standard_normal((250 * 400, 1)) * 4.0
    power, _ = WelchBandPower(FS, 1, {"b": (20.0, 40.0)}, window=250, hop=250).step(x, np.arange(x.shape[0]) / FS)
    expected = 2 * 16.0 * (40.0 - 20.0) / FS
    assert power[:, 0, 0].mean() == pytest.approx(expected, rel=0.03)


def test_iir_matches_scipy_sosfilt_squared_and_averaged():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3000, 2)) * 5
    ts = np.arange(3000) / FS
    box, _ = IIRBandPower(FS, 2, BANDS, window=250, hop=25).step(x, ts)
    ema_m = IIRBandPower(FS, 2, BANDS, window=250, hop=25, smoothing="ema", tau_s=0.4)
    ema, _ = ema_m.step(x, ts)
    a = 1 - np.exp(-1 / (0.4 * FS))
    for b, (lo, hi) in enumerate(BANDS.values()):
        sos = signal.butter(2, [lo, hi], "bandpass", fs=FS, output="sos")
        y2 = signal.sosfilt(sos, x, axis=0) ** 2
        smooth = signal.lfilter([a], [1, -(1 - a)], y2, axis=0)
        for k, end in enumerate(frame_ends(3000, 250, 25)):
            np.testing.assert_allclose(box[k, :, b], y2[end - 250 : end].mean(axis=0), rtol=1e-9)
            np.testing.assert_allclose(ema[k, :, b], smooth[end - 1], rtol=1e-9)
