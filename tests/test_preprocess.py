"""Streaming preprocessing against scipy with carried state."""

from __future__ import annotations

import numpy as np
from scipy import signal

from closedloop.preprocess import Preprocessor, sosfilt_inplace
from closedloop.types import Chunk

FS = 500.0


def test_sosfilt_matches_scipy_across_chunks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 4))
    sos = signal.butter(4, [8, 12], "bandpass", fs=FS, output="sos")
    ref, _ = signal.sosfilt(sos, x, axis=0, zi=np.zeros((sos.shape[0], 2, 4)))
    y = x.copy()
    zi = np.zeros((sos.shape[0], 4, 2))
    for i in range(0, 3000, 37):
        sosfilt_inplace(sos, zi, y[i : i + 37])
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


def test_mean_of_picks_then_filters_match_scipy():
    rng = np.random.default_rng(1)
    names = ["Fz", "O1", "O2", "Pz"]
    x = rng.standard_normal((2000, 4)) + 40.0
    pre = Preprocessor(names, ["O1", "O2", "Pz"], FS, combine="mean", reference="average",
                       highpass_hz=1.0, notch_hz=50.0)
    out = np.concatenate([pre.step(Chunk(x[i : i + 13], np.zeros(13))).data.copy() for i in range(0, 2000, 13)])
    roi = x[:, 1:].mean(axis=1) - x.mean(axis=1)
    b, a = signal.iirnotch(50.0, 30.0, fs=FS)
    sos = np.vstack([signal.butter(2, 1.0, "highpass", fs=FS, output="sos"), signal.tf2sos(b, a)])
    ref, _ = signal.sosfilt(sos, roi, zi=signal.sosfilt_zi(sos) * roi[0])
    np.testing.assert_allclose(out[:, 0], ref, rtol=1e-10, atol=1e-10)
    assert pre.out_names == ["O1+O2+Pz"]


def test_each_keeps_channels_in_order():
    x = np.arange(12, dtype=float).reshape(4, 3)
    pre = Preprocessor(["A", "B", "C"], ["C", "A"], FS, combine="each")
    np.testing.assert_array_equal(pre.step(Chunk(x, np.zeros(4))).data, x[:, [2, 0]])
