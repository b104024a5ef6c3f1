"""Aperiodic (1/f) fit and corrected band power: planted truth, specparam on the same spectra, real EEG."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from scipy import signal

from closedloop.config.features import AperiodicConfig, SpectrumConfig
from closedloop.features.aperiodic import AperiodicWork
from closedloop.features.spectrum import SpectrumStage

specparam = pytest.importorskip("specparam")
from specparam.sim import sim_power_spectrum  # noqa: E402

EDF = SHARED_DATA / "eegmat_subject00_rest.edf"
SETTINGS = dict(peak_width_limits=(1.0, 12.0), max_n_peaks=6)


def reference_fit(freqs, power, knee=False, f_range=(2.0, 40.0)):
    """specparam on the same spectrum: (offset, knee, exponent)."""
    fm = specparam.SpectralModel(**SETTINGS, aperiodic_mode="knee" if knee else "fixed", verbose=False)
    fm.fit(freqs, power, list(f_range))
    p = fm.results.get_params("aperiodic")
    return (p[0], 0.0, p[1]) if not knee else (p[0], p[1], p[2])


def aperiodic(freqs, p):
    """log10 of the aperiodic component with parameters (offset, knee, exponent)."""
    return p[0] - np.log10(p[1] + freqs ** p[2])


def corrected(freqs, power, p, lo, hi):
    """Power above the aperiodic component over the half-open band [lo, hi), times the bin width."""
    band = (freqs >= lo - 1e-9) & (freqs < hi - 1e-9)
    return np.sum(power[band] - 10 ** aperiodic(freqs[band], p)) * (freqs[1] - freqs[0])


def planted(rng, knee: bool, seed: int):
    """A simulated spectrum (2-40 Hz, 0.5 Hz) with an alpha and a beta peak: (freqs, power, true params)."""
    exponent = rng.uniform(0.8, 2.2)
    truth = (rng.uniform(0.0, 2.0), rng.uniform(5.0, 50.0) if knee else 0.0, exponent + (0.5 if knee else 0.0))
    ap = [truth[0], truth[1], truth[2]] if knee else [truth[0], truth[2]]
    peaks = [
        [rng.uniform(8.0, 12.0), rng.uniform(0.3, 1.0), rng.uniform(0.8, 2.5)],
        [rng.uniform(18.0, 25.0), rng.uniform(0.1, 0.4), rng.uniform(1.0, 3.0)],
    ]
    np.random.seed(seed)  # specparam's simulator draws its noise from the global generator
    freqs, power = sim_power_spectrum(
        [2, 40], {"knee" if knee else "fixed": ap}, {"gaussian": peaks}, nlv=0.03, freq_res=0.5
    )
    return freqs, power, truth


@pytest.mark.parametrize("knee", [False, True])
def test_fit_recovers_planted_exponent_and_agrees_with_specparam(knee):
    rng = np.random.default_rng(1 + knee)
    for seed in range(25):
        freqs, power, truth = planted(rng, knee, seed)
        work = AperiodicWork(freqs.size, knee, SETTINGS["peak_width_limits"], SETTINGS["max_n_peaks"])
        got = work.fit(freqs, power)
        ref = reference_fit(freqs, power, knee)
        assert abs(got[2] - ref[2]) < 0.05, (seed, got, ref)
        assert abs(got[0] - ref[0]) < 0.05
        if not knee:  # a knee trades off against the exponent: specparam misses the planted one as we do
            assert abs(got[2] - truth[2]) < 0.1, (seed, got, truth)
        alpha = corrected(freqs, power, ref, 7.0, 14.0)
        assert corrected(freqs, power, got, 7.0, 14.0) == pytest.approx(alpha, rel=0.05)


def test_fit_without_peaks_is_the_log_log_least_squares_line():
    f = np.arange(2.0, 40.5, 0.5)
    y = 1.3 - 1.7 * np.log10(f) + 0.05 * np.cos(7 * f)
    got = AperiodicWork(f.size, max_peaks=0).fit(f, 10**y)  # no peak removed: the last fit uses every point
    slope, intercept = np.polyfit(np.log10(f), y, 1)
    assert got[2] == pytest.approx(-slope, abs=1e-9) and got[0] == pytest.approx(intercept, abs=1e-9)


def test_non_finite_spectrum_gives_nan():
    f = np.arange(2.0, 40.5, 0.5)
    p = f**-1.5
    p[10] = np.nan
    assert all(np.isnan(AperiodicWork(f.size).fit(f, p)))


def pink(n: int, fs: float, exponent: float, rng) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent (spectral shaping)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spec[1:] /= f[1:] ** (exponent / 2)
    spec[0] = 0.0
    y = np.fft.irfft(spec, n)
    return 10 * y / y.std()


def test_streaming_spectrum_equals_scipy_welch_and_its_fit_equals_specparam():
    fs, seg, segments = 250.0, 500, 16
    rng = np.random.default_rng(3)
    n = int(120 * fs)
    t = np.arange(n) / fs
    x = (pink(n, fs, 1.6, rng) + 4 * np.sin(2 * np.pi * 10.2 * t))[:, None]
    stage = SpectrumStage(
        fs, 1, 500, 25, {"alpha": (8.0, 12.0)}, SpectrumConfig(segment_samples=seg, segments=segments),
        AperiodicConfig(max_peaks=6), None,
    )  # fmt: skip
    out = np.zeros((n // 25 + 1, 1, len(stage.names)))
    span = seg + (segments - 1) * stage.step
    ends = list(range(span, n + 1, 20 * int(fs)))
    pos = 0
    exponents = []
    for end in ends:
        stage.process(np.ascontiguousarray(x[pos:end]), out)
        pos = end
        f, p = signal.welch(x[end - span : end, 0], fs=fs, window="hann", nperseg=seg, noverlap=seg - stage.step)
        sel = (f >= stage.freqs[0] - 1e-9) & (f <= stage.freqs[-1] + 1e-9)
        np.testing.assert_allclose(stage.spectrum[0], p[sel], rtol=1e-9)
        fit = (f >= 2 - 1e-9) & (f <= 40 + 1e-9)
        ref = reference_fit(f[fit], p[fit])
        row = dict(zip(stage.names, stage._current[0]))
        assert abs(row["ap_exponent"] - ref[2]) < 0.05
        exponents.append(row["ap_exponent"])
        assert row["alpha_ap"] == pytest.approx(corrected(f[fit], p[fit], ref, 8.0, 12.0), rel=0.05)
    # the planted exponent, from 8.5-s windows of one noise realisation (each window scatters by ~0.1)
    assert abs(np.mean(exponents) - 1.6) < 0.1 and np.all(np.abs(np.array(exponents) - 1.6) < 0.3)


def real_windows(x, fs, names, knee=False):
    """Run the stage over the recording; at every 10 s compare with specparam on the stage's own spectrum."""
    seg = int(2 * fs)
    stage = SpectrumStage(
        fs, x.shape[1], seg, 50, {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)},
        SpectrumConfig(segment_samples=seg, segments=8), AperiodicConfig(knee=knee, max_peaks=6), None,
    )  # fmt: skip
    out = np.zeros((x.shape[0] // 50 + 1, x.shape[1], len(stage.names)))
    span = seg + 7 * stage.step
    rows, refs = [], []
    pos = 0
    for end in range(span, x.shape[0] + 1, int(10 * fs)):
        stage.process(np.ascontiguousarray(x[pos:end]), out)
        pos = end
        f = stage.freqs
        fit = (f >= 2 - 1e-9) & (f <= 40 + 1e-9)
        for c in range(x.shape[1]):
            ref = reference_fit(f[fit], stage.spectrum[c][fit], knee)
            refs.append((ref[2], corrected(f, stage.spectrum[c], ref, 8.0, 12.0)))
            row = dict(zip(stage.names, stage._current[c]))
            rows.append((row["ap_exponent"], row["alpha_ap"]))
    return np.array(rows), np.array(refs)


@pytest.mark.skipif(not EDF.exists(), reason=f"real recording not present at {EDF}")
def test_real_eeg_exponent_and_corrected_alpha_agree_with_specparam():
    import mne

    raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
    names = ["EEG O1", "EEG O2", "EEG Fz", "EEG C3", "EEG P4"]
    x = raw.get_data(picks=names).T * 1e6
    rows, refs = real_windows(x, raw.info["sfreq"], names)
    err = np.abs(rows[:, 0] - refs[:, 0])
    assert len(err) >= 80
    # specparam refines peaks with scipy's trust-region solver, we with Levenberg-Marquardt: on a few
    # windows with overlapping beta peaks the two settle in different local optima (measured: 2 of 90
    # windows above 0.05, the largest 0.075); everywhere else they agree to the third decimal
    assert np.median(err) < 0.01
    assert np.mean(err < 0.05) >= 0.95
    np.testing.assert_allclose(rows[:, 1], refs[:, 1], rtol=0.05)
