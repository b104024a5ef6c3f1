"""Replay the real resting EEG shared with CI (see tests/conftest.py) through the extractor and compare with MNE."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from closedloop.features import FeaturesConfig, PreprocessConfig, build_chain
from closedloop.types import Chunk

EDF = SHARED_DATA / "eegmat_subject00_rest.edf"
pytestmark = pytest.mark.skipif(not EDF.exists(), reason=f"real recording not present at {EDF}")


@pytest.fixture(scope="module")
def raw():
    import mne

    r = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
    return r


@pytest.mark.parametrize("method", ["welch", "sliding_dft"])
def test_o1_o2_alpha_theta_equal_mne_psd_array_welch(raw, method):
    from mne.time_frequency import psd_array_welch

    fs = raw.info["sfreq"]
    names = raw.ch_names
    data = raw.get_data(picks=["EEG O1", "EEG O2"]).T * 1e6  # V -> µV, (n, 2)
    n = min(data.shape[0], int(60 * fs))
    window, hop = int(2 * fs), int(fs // 4)
    fcfg = FeaturesConfig(
        channels=["EEG O1", "EEG O2"],
        combine="each",
        window_samples=window,
        hop_samples=hop,
        method=method,
        bands={"theta": (4.0, 8.0), "alpha": (8.0, 12.0)},
        ratios={},
        log10=False,
    )
    full = raw.get_data().T[:n] * 1e6
    pre, ext = build_chain(fcfg, PreprocessConfig(), fs, names)
    frames = []
    for i in range(0, n, 37):  # an odd chunk size, as LSL would deliver
        frames += ext.step(pre.step(Chunk(full[i : i + 37], np.arange(i, min(i + 37, n)) / fs)))
    ends = window + hop * np.arange(len(frames))
    picked = list(range(0, len(frames), 20))
    segs = np.stack([data[ends[k] - window : ends[k]].T for k in picked])  # (frames, 2, window)
    for band, (lo, hi) in {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}.items():
        psd, _ = psd_array_welch(  # fmax half a bin below hi: MNE's inclusive edge selects [lo, hi)
            segs,
            fs,
            fmin=lo,
            fmax=hi - 0.5 * fs / window,
            n_fft=window,
            n_per_seg=window,
            n_overlap=0,
            window="hann",
            verbose="error",
        )
        ref = psd.sum(axis=-1) * fs / window
        got = np.array([[frames[k][f"{band}_EEG O1"], frames[k][f"{band}_EEG O2"]] for k in picked])
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    # the recording's clear posterior alpha: O2 alpha well above theta on average
    alpha = np.mean([f["alpha_EEG O2"] for f in frames])
    theta = np.mean([f["theta_EEG O2"] for f in frames])
    assert alpha > 3 * theta


def _flags(raw, data, notch=50.0):
    """Flag bits per frame of the real chain on every EEG channel (1-s window, 50-ms hop), and window ends."""
    from closedloop.types import Quality  # noqa: F401  (flags are Quality bits)

    fs = raw.info["sfreq"]
    eeg = [c for c in raw.ch_names if c.startswith("EEG") and "A2-A1" not in c]
    fcfg = FeaturesConfig(channels=eeg, combine="each", window_samples=int(fs), hop_samples=int(fs // 20))
    pre, ext = build_chain(fcfg, PreprocessConfig(highpass_hz=1.0, notch_hz=notch), fs, eeg)
    flags = []
    for i in range(0, data.shape[0], 50):
        chunk = Chunk(data[i : i + 50], np.arange(i, min(i + 50, data.shape[0])) / fs)
        flags += [int(f.flags) for f in ext.step(pre.step(chunk))]
    ends = int(fs) + int(fs // 20) * np.arange(len(flags))
    return np.array(flags), ends, eeg


def _eeg(raw):
    eeg = [c for c in raw.ch_names if c.startswith("EEG") and "A2-A1" not in c]
    return raw.get_data(picks=eeg).T * 1e6


def test_default_quality_flags_leave_clean_resting_eeg_unflagged(raw):
    from closedloop.types import Quality

    flags, ends, _ = _flags(raw, _eeg(raw))
    for kind in (Quality.ARTIFACT, Quality.EMG, Quality.SATURATION, Quality.NONFINITE, Quality.GAP):
        assert np.mean(flags & kind != 0) == 0.0, kind
    # the recording ends on 0.5 s of a flat Pz: only the last frames are FLAT
    flat = flags & Quality.FLAT != 0
    assert flat.mean() < 0.01 and flat[-1] and not flat[: int(0.98 * flat.size)].any()


def test_artefacts_injected_into_real_eeg_are_flagged(raw):
    from scipy import signal

    from closedloop.types import Quality

    fs = raw.info["sfreq"]
    x = _eeg(raw)[: int(60 * fs)].copy()
    _, _, names = _flags(raw, x[: int(2 * fs)])
    ch = {n.replace("EEG ", ""): i for i, n in enumerate(names)}
    rng = np.random.default_rng(0)
    t = np.arange(int(0.6 * fs)) / fs
    blink = 250 * np.exp(-0.5 * ((t - 0.3) / 0.07) ** 2)  # a 250 µV blink, peak at 10.3 s
    x[int(10 * fs) : int(10 * fs) + t.size, ch["Fp1"]] += blink
    x[int(10 * fs) : int(10 * fs) + t.size, ch["Fp2"]] += blink
    m = int(1.5 * fs)  # 1.5 s of 30 µV RMS broadband (20-150 Hz) muscle activity on T3 from 20 s
    burst = signal.sosfilt(signal.butter(4, [20, 150], "bandpass", fs=fs, output="sos"), rng.standard_normal(m))
    x[int(20 * fs) : int(20 * fs) + m, ch["T3"]] += 30 * burst / burst.std()
    x[int(40 * fs) : int(42 * fs), ch["Cz"]] = 187_500.0  # an amplifier at its rail from 40 s
    flags, ends, _ = _flags(raw, x)
    win = int(fs)

    def holds(i):
        return (ends > i) & (ends - win <= i)

    whole = (ends - win <= int(10 * fs)) & (ends >= int(10.6 * fs))  # windows holding the whole blink
    assert whole.any() and np.all(flags[whole] & Quality.ARTIFACT)
    inside = (ends - win >= int(20 * fs)) & (ends <= int(20 * fs) + m)
    assert inside.any() and np.all(flags[inside] & Quality.EMG)
    assert np.all(flags[holds(int(40 * fs))] & Quality.SATURATION)
    before = ends < int(10 * fs)  # nothing injected yet: clean
    assert not np.any(flags[before] & (Quality.ARTIFACT | Quality.EMG | Quality.SATURATION | Quality.FLAT))


def test_unnotched_mains_is_not_taken_for_muscle(raw):
    from closedloop.types import Quality

    fs = raw.info["sfreq"]
    x = _eeg(raw)[: int(30 * fs)]
    mains = 30.0 * np.sin(2 * np.pi * 50.0 * np.arange(x.shape[0]) / fs)[:, None]
    flags, _, _ = _flags(raw, x + mains, notch=None)
    assert not np.any(flags & Quality.EMG)
