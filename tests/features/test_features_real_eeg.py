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
        psd, _ = psd_array_welch(
            segs, fs, fmin=lo, fmax=hi, n_fft=window, n_per_seg=window, n_overlap=0, window="hann", verbose="error"
        )
        ref = psd.sum(axis=-1) * fs / window
        got = np.array([[frames[k][f"{band}_EEG O1"], frames[k][f"{band}_EEG O2"]] for k in picked])
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    # the recording's clear posterior alpha: O2 alpha well above theta on average
    alpha = np.mean([f["alpha_EEG O2"] for f in frames])
    theta = np.mean([f["theta_EEG O2"] for f in frames])
    assert alpha > 3 * theta
