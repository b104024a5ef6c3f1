"""Streaming preprocessing against scipy with carried state, and the spatial map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from closedloop.preprocess import Preprocessor, build_spatial_map, design_sos, sosfilt_inplace
from closedloop.types import Chunk

FS = 500.0
NAMES = ["Fz", "Cz", "Pz", "P3", "P4", "O1", "O2", "M1", "M2"]


def stream(pre: Preprocessor, x: np.ndarray, chunk: int) -> np.ndarray:
    t = np.arange(x.shape[0]) / FS
    return np.concatenate(
        [pre.step(Chunk(x[i : i + chunk], t[i : i + chunk])).data.copy() for i in range(0, x.shape[0], chunk)]
    )


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
    pre = Preprocessor(
        names, ["O1", "O2", "Pz"], FS, combine="mean", reference="average", highpass_hz=1.0, notch_hz=50.0
    )
    out = stream(pre, x, 13)
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


def test_notch_harmonics_highpass_and_bandpass_match_scipy_with_carried_zi():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 2)) * 10 + 5.0
    pre = Preprocessor(
        ["A", "B"],
        ["A", "B"],
        FS,
        combine="each",
        highpass_hz=0.5,
        notch_hz=50.0,
        notch_harmonics=3,
        notch_q=25.0,
        bandpass_hz=(1.0, 45.0),
        filter_order=3,
    )
    sos = design_sos(FS, 0.5, 50.0, 3, 25.0, (1.0, 45.0), 3)
    assert sos.shape[0] == 2 + 3 + 3  # high-pass (order 3: 2 sections), 3 notches, band-pass (3 sections)
    for h in (50.0, 100.0, 150.0):  # each harmonic is notched
        _, resp = signal.sosfreqz(sos, [h], fs=FS)
        assert abs(resp[0]) < 1e-6
    out = stream(pre, x, 29)
    zi0 = signal.sosfilt_zi(sos)[:, None, :] * x[0][None, :, None]
    ref, _ = signal.sosfilt(sos, x.T, axis=-1, zi=zi0)
    np.testing.assert_allclose(out, ref.T, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_chosen_reference_laplacian_and_weighted_roi_equal_the_dense_matrix():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, len(NAMES))) * 20
    rois = {"post": {"O1": 0.25, "O2": 0.25, "Pz": 0.5}, "mid": ["Fz", "Cz"]}
    lap = {"Pz": ["P3", "P4", "O1", "O2"]}
    pre = Preprocessor(NAMES, rois=rois, sfreq=FS, reference=["M1", "M2"], laplacian=lap)
    out = stream(pre, x, 300)
    i = {n: j for j, n in enumerate(NAMES)}
    ref = (x[:, i["M1"]] + x[:, i["M2"]]) / 2
    d = x - ref[:, None]
    pz_lap = d[:, i["Pz"]] - (d[:, i["P3"]] + d[:, i["P4"]] + d[:, i["O1"]] + d[:, i["O2"]]) / 4
    post = 0.25 * d[:, i["O1"]] + 0.25 * d[:, i["O2"]] + 0.5 * pz_lap
    mid = (d[:, i["Fz"]] + d[:, i["Cz"]]) / 2
    np.testing.assert_allclose(out, np.stack([post, mid], axis=1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x @ pre.map.dense(len(NAMES)).T, out, rtol=1e-10, atol=1e-10)


def test_laplacian_is_reference_free_and_picks_restrict_the_average():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, len(NAMES)))
    common = rng.standard_normal((200, 1)) * 100  # a common-mode signal on every electrode
    lap = {"Cz": ["Fz", "Pz", "P3", "P4"]}
    a = stream(Preprocessor(NAMES, ["Cz"], FS, laplacian=lap), x, 200)
    b = stream(Preprocessor(NAMES, ["Cz"], FS, laplacian=lap, reference="average"), x + common, 200)
    np.testing.assert_allclose(a, b, atol=1e-9)
    picks = ["Fz", "Cz", "Pz"]
    c = stream(Preprocessor(NAMES, ["Cz"], FS, picks=picks, reference="average"), x, 200)
    i = [NAMES.index(p) for p in picks]
    np.testing.assert_allclose(c[:, 0], x[:, NAMES.index("Cz")] - x[:, i].mean(axis=1), atol=1e-12)
    m = build_spatial_map(NAMES, {"Cz": {"Cz": 1.0}}, laplacian=lap)
    assert m.rowsum[0] == 0.0  # the reference cancels exactly


@pytest.mark.parametrize("chunk", [1, 7, 32, 1000])
def test_output_bit_identical_for_any_chunking(chunk):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2000, len(NAMES))) * 10).astype(np.float32)  # float32 as LSL delivers
    kw = dict(
        rois={"post": ["O1", "O2", "Pz"]},
        sfreq=FS,
        reference="average",
        highpass_hz=1.0,
        notch_hz=50.0,
        notch_harmonics=2,
        monitor=True,
    )
    ref = stream(Preprocessor(NAMES, **kw), x, 2000)
    got = stream(Preprocessor(NAMES, **kw), x, chunk)
    assert got.tobytes() == ref.tobytes()


def test_monitors_follow_the_signals_and_nan_does_not_poison_filters():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1000, len(NAMES))) * 10
    x[300, NAMES.index("O1")] = np.nan
    pre = Preprocessor(NAMES, ["O1", "O2"], FS, highpass_hz=1.0, monitor=True)
    assert pre.out_names == ["O1+O2", "O1", "O2"] and pre.signal_names == ["O1+O2"]
    out = stream(pre, x, 50)
    assert np.isnan(out[300, 0]) and np.isnan(out[300, 1]) and np.isfinite(out[300, 2])
    assert np.isfinite(out[301:]).all() and np.isfinite(pre.zi).all()
    # O1's NaN leaves O2's monitor column exactly as O2 filtered on its own
    clean = stream(Preprocessor(NAMES, ["O2"], FS, highpass_hz=1.0), x, 50)
    np.testing.assert_array_equal(out[:, 2], clean[:, 0])


def test_unknown_channels_are_named():
    with pytest.raises(ValueError, match="Xx"):
        Preprocessor(NAMES, ["Xx"], FS)
    with pytest.raises(ValueError, match="laplacian.Cz"):
        Preprocessor(NAMES, ["Cz"], FS, laplacian={"Cz": ["Qq"]})
