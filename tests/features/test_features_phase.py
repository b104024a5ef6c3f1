"""Real-time phase features: exact kernels, known-phase accuracy, chunk invariance, gaps, ETP calibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from closedloop.config.features import FeaturesConfig, PhaseConfig, features_of
from closedloop.config.validate import check_phase
from closedloop.features import FeatureExtractor
from closedloop.features.phase import PhaseEstimator, echt_kernel, etp_period, hilbert_kernels
from closedloop.types import Chunk

FS = 500.0
WINDOW, HOP = 250, 5


def known_phase_signal(seconds: float, seed: int = 0, noise_uV: float = 2.0, amp_uV: float = 10.0):
    """A 9.5–10.5 Hz oscillation (phase known exactly), amplitude-modulated, in 1/f-like noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    freq = 10.0 + 0.5 * np.sin(2 * np.pi * 0.05 * t)
    phase = np.cumsum(2 * np.pi * freq / FS)
    amp = amp_uV * (1 + 0.5 * np.sin(2 * np.pi * 0.1 * t))
    noise = signal.lfilter([1.0], [1.0, -0.95], rng.standard_normal(t.size)) * noise_uV
    return t, amp * np.cos(phase) + noise, np.angle(np.exp(1j * phase)), freq, amp


def run_estimator(x: np.ndarray, cfg: PhaseConfig, chunk: int | None = None) -> np.ndarray:
    """Frames (k, 4) of one estimator on a single channel, fed in chunks of ``chunk`` samples."""
    est = PhaseEstimator("mu", cfg, FS, 1, WINDOW, HOP)
    xx = np.ascontiguousarray(x[:, None], dtype=float)
    out = np.full((xx.shape[0] // HOP + 2, 1, 4), np.nan)
    k = 0
    step = chunk or xx.shape[0]
    for a in range(0, xx.shape[0], step):
        k += _process(est, xx[a : a + step], out, k)
    return out[:k, 0, :]


def _process(est: PhaseEstimator, x: np.ndarray, out: np.ndarray, k0: int) -> int:
    tmp = np.full((x.shape[0] // HOP + 2, 1, 4), np.nan)
    k = est.process(x, tmp, 0)
    out[k0 : k0 + k] = tmp[:k]
    return k


def frame_samples(k: int) -> np.ndarray:
    """Index of each frame's newest sample."""
    return WINDOW - 1 + HOP * np.arange(k)


def circ_stats(err: np.ndarray) -> tuple[float, float]:
    """Circular mean (deg) and circular standard deviation (deg) of phase errors (rad)."""
    z = np.mean(np.exp(1j * err))
    return float(np.degrees(np.angle(z))), float(np.degrees(np.sqrt(-2 * np.log(np.abs(z)))))


# -- the kernels are the transforms they stand for --------------------------------------------------


def test_echt_kernel_is_the_fft_endpoint_corrected_hilbert_transform():
    rng = np.random.default_rng(1)
    n = 250
    x = rng.standard_normal(n)
    b, a = signal.butter(2, [8, 13], btype="bandpass", fs=FS)
    _, h = signal.freqz(b, a, worN=np.arange(n) * FS / n, fs=FS)
    mask = np.r_[1.0, 2.0 * np.ones(n // 2 - 1), 1.0, np.zeros(n // 2 - 1)]
    reference = np.fft.ifft(np.fft.fft(x) * mask * h)[-1]  # Schreglmann et al. 2021, as FFT, filter, inverse
    g = echt_kernel(n, (8.0, 13.0), FS, order=2, calibrate=False)
    assert np.isclose(g[0] @ x + 1j * (g[1] @ x), reference, rtol=1e-10, atol=1e-12)


def test_calibrated_echt_reads_a_pure_tone_at_the_band_centre_exactly():
    n = 250
    k = np.arange(n)
    g = echt_kernel(n, (8.0, 13.0), FS, order=2, calibrate=True)
    b, a = signal.butter(2, [8, 13], btype="bandpass", fs=FS)
    grid = np.linspace(8, 13, 401)
    f0 = grid[np.argmax(np.abs(signal.freqz(b, a, worN=grid, fs=FS)[1]))]
    for theta in (0.0, 1.0, np.pi, -2.0):
        x = 7.0 * np.cos(2 * np.pi * f0 / FS * (k - (n - 1)) + theta)  # ends at phase theta
        z = g[0] @ x + 1j * (g[1] @ x)
        # what remains is the negative-frequency leakage, the "irreducible" residual term
        assert abs(np.angle(z * np.exp(-1j * theta))) < np.radians(2.0)
        assert abs(abs(z) - 7.0) < 0.2


def test_hilbert_kernels_are_scipy_hilbert_at_their_positions():
    x = np.random.default_rng(2).standard_normal(64)
    z = signal.hilbert(x)
    hk = hilbert_kernels(64, [31, 5, 60])
    for i, q in enumerate((31, 5, 60)):
        assert np.isclose(hk[i, 0] @ x + 1j * (hk[i, 1] @ x), z[q], rtol=1e-12, atol=1e-12)


# -- known phase -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator, extra, max_bias, max_sd",
    [("ar", {}, 8.0, 40.0), ("etp", {"train_s": 30.0}, 10.0, 35.0), ("echt", {}, 10.0, 30.0)],
)
def test_estimators_recover_a_known_phase_within_tolerance(estimator, extra, max_bias, max_sd):
    t, x, true_phase, true_freq, true_amp = known_phase_signal(90.0, seed=3)
    cfg = PhaseConfig(band=(8.0, 13.0), estimator=estimator, **extra)
    out = run_estimator(x, cfg)
    idx = frame_samples(out.shape[0])
    use = idx > 35 * FS  # after ETP's calibration block and every window
    assert np.isfinite(out[use, 0]).mean() > 0.99
    err = np.angle(np.exp(1j * (out[use, 0] - true_phase[idx[use]])))
    bias, sd = circ_stats(err[np.isfinite(err)])
    assert abs(bias) < max_bias and sd < max_sd, (bias, sd)
    # better than chance by far: accuracy 1 - |err|/π averages 0.5 for a random phase
    assert np.nanmean(1 - np.abs(err) / np.pi) > 0.8
    assert np.nanmedian(np.abs(out[use, 2] - true_freq[idx[use]])) < 0.6  # Hz
    ratio = out[use, 1] / true_amp[idx[use]]
    assert 0.5 < np.nanmedian(ratio) < 1.3
    # the band holds the oscillation: its SNR against the flanks is well above 0 dB
    assert np.nanmedian(out[use, 3]) > 6.0


@pytest.mark.parametrize("estimator", ["ar", "echt"])
def test_phase_convention_peak_is_zero_trough_is_pi(estimator):
    t = np.arange(int(4 * FS)) / FS
    x = 10 * np.cos(2 * np.pi * 10.0 * t)  # 10 Hz: a peak every 50 samples, at t = 0
    out = run_estimator(x, PhaseConfig(band=(8.0, 12.0), estimator=estimator))
    idx = frame_samples(out.shape[0])
    at_peak = (idx % 50 == 0) & (idx > 2 * FS)
    at_trough = (idx % 50 == 25) & (idx > 2 * FS)
    assert np.all(np.abs(out[at_peak, 0]) < np.radians(12))
    assert np.all(np.abs(np.abs(out[at_trough, 0]) - np.pi) < np.radians(12))
    assert np.allclose(out[idx > 2 * FS, 2], 10.0, atol=0.3)


def test_etp_calibrates_the_period_of_the_rhythm():
    _t, x, *_ = known_phase_signal(40.0, seed=4, noise_uV=1.0)
    taps = signal.firwin(65, [8, 13], pass_zero=False, fs=FS)
    period = etp_period(x, taps, WINDOW, FS, (8.0, 13.0))
    assert abs(FS / period - 10.0) < 0.4  # the mean frequency is 10 Hz
    assert np.isnan(etp_period(np.full(20000, np.nan), taps, WINDOW, FS, (8.0, 13.0)))


# -- the sample clock ------------------------------------------------------------------------------


def test_frames_are_bit_identical_for_any_chunking_including_the_etp_calibration():
    rng = np.random.default_rng(5)
    n = int(16 * FS)
    t = np.arange(n) / FS
    x = np.stack([10 * np.cos(2 * np.pi * 10 * t), 6 * np.sin(2 * np.pi * 11 * t)], axis=1)
    x += rng.standard_normal(x.shape) * 3
    phase = {
        "ar": PhaseConfig(band=(8, 13)),
        "etp": PhaseConfig(band=(8, 13), estimator="etp", train_s=10.0),
        "ec": PhaseConfig(band=(8, 13), estimator="echt"),
    }

    def frames(chunk: int) -> np.ndarray:
        ext = FeatureExtractor(
            FS, ["a", "b"], {"alpha": (8, 12)}, window=WINDOW, hop=HOP, per_channel=True, phase=phase
        )
        rows = []
        for a in range(0, n, chunk):
            rows += [f.values.copy() for f in ext.step(Chunk(x[a : a + chunk], t[a : a + chunk]))]
        return np.array(rows)

    ref = frames(1000)
    assert ref.shape == ((n - WINDOW) // HOP + 1, 2 * (1 + 3 * 4))
    late = ref[-1].reshape(2, -1)
    assert np.all(np.isfinite(late))  # the ETP rhythm was calibrated at 10 s
    for chunk in (1, 7, 32):
        assert np.array_equal(frames(chunk), ref, equal_nan=True), chunk


def test_a_gap_of_nan_samples_blanks_the_estimates_while_a_window_holds_it_then_they_recover():
    t, x, *_ = known_phase_signal(10.0, seed=6)
    x = x.copy()
    x[2000:2003] = np.nan
    out = run_estimator(x, PhaseConfig(band=(8.0, 13.0), estimator="ar", snr_window_s=1.0))
    idx = frame_samples(out.shape[0])
    assert np.all(np.isnan(out[(idx >= 2000) & (idx - 250 < 2002), 0]))  # the 250-sample window holds a NaN
    assert np.all(np.isfinite(out[(idx - 250 >= 2002) & (idx < 2400), 0]))  # ... and then no longer
    # the SNR and frequency come from a 1-s spectrum refreshed every 50 ms
    assert np.all(np.isnan(out[(idx >= 2025) & (idx - 500 < 2002), 3]))
    assert np.all(np.isfinite(out[idx > 2002 + 500 + 25, :]))


def test_extractor_names_and_config_agree():
    f = FeaturesConfig(
        channels=["C3"], window_samples=WINDOW, hop_samples=HOP, ratios={}, phase={"mu": {"band": [8, 13]}}
    )
    assert features_of(f) == ["theta", "alpha", "mu_phase", "mu_amp", "mu_freq", "mu_snr"]
    ext = FeatureExtractor.from_config(f, FS, ["C3"])
    assert ext.names == tuple(features_of(f))


def test_estimator_specific_keys_and_sample_rate_checks_name_the_key():
    with pytest.raises(ValueError, match="train_s: only estimator 'etp' reads it, not 'ar'"):
        PhaseConfig(band=(8, 13), train_s=30.0)
    with pytest.raises(ValueError, match="snr_flank_hz: the lower flank"):
        PhaseConfig(band=(2, 4), snr_flank_hz=2.0)
    problems = check_phase("features.phase.mu", PhaseConfig(band=(8, 13), window_s=0.15), 500.0)
    assert any(p.startswith("features.phase.mu.window_s:") for p in problems)
    problems = check_phase("features.phase.mu", PhaseConfig(band=(8, 13), estimator="etp", train_s=5.0), 500.0)
    assert problems == ["features.phase.mu.train_s: 5 s is too short to calibrate the period; allowed: >= 10"]
    assert check_phase("features.phase.mu", PhaseConfig(band=(100, 260)), 500.0)[0].startswith(
        "features.phase.mu.band: upper edge 260.0 Hz is not below Nyquist"
    )
    assert check_phase("features.phase.mu", PhaseConfig(band=(8, 13)), 500.0) == []


def test_no_allocation_in_steady_state_with_phase_features():
    import gc
    import tracemalloc

    phase = {e: PhaseConfig(band=(8, 13), estimator=e, **({"train_s": 10.0} if e == "etp" else {})) for e in
             ("ar", "etp", "echt")}  # fmt: skip
    ext = FeatureExtractor(FS, ["C3"], {"mu": (8, 13)}, window=WINDOW, hop=2, method="iir", phase=phase)
    _t, x, *_ = known_phase_signal(40.0, seed=8)
    xx = np.ascontiguousarray(x[:, None])
    t = np.arange(xx.shape[0]) / FS
    chunks = [Chunk(xx[i : i + 10], t[i : i + 10]) for i in range(0, xx.shape[0], 10)]
    gc.collect()
    tracemalloc.start()
    try:
        for c in chunks[:1500]:  # 30 s: ETP calibrates at 10 s (its one allocation), the dispatcher settles
            ext.step(c)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        n_frames = sum(len(ext.step(c)) for c in chunks[1500:])
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_frames == 500 * 5
    assert now - base < 512, f"kept {now - base} bytes"
    assert peak - base < 12_000, f"peak grew by {peak - base} bytes"
