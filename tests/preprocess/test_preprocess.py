"""Streaming preprocessing against scipy with carried state, and the spatial map."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA
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


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_two_section_cascade_equals_the_general_loop_bit_for_bit(chunk):
    # a high-pass and a notch (two sections) run output by output with the state in registers; the general
    # loop runs the same two sections followed by an identity section (output = input exactly)
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((1500, len(NAMES))) * 20).astype(np.float32)
    x[400:403, NAMES.index("O1")] = np.nan  # skipped: NaN out, state untouched
    x[:5, NAMES.index("O2")] = np.inf  # a monitor whose filter starts late
    kw = dict(sfreq=FS, reference="average", highpass_hz=1.0, notch_hz=50.0, monitor=True)
    fast = Preprocessor(NAMES, ["O1", "O2", "Pz"], **kw)
    general = Preprocessor(NAMES, ["O1", "O2", "Pz"], **kw)
    assert fast.sos.shape[0] == 2
    general.sos = np.vstack([general.sos, [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    general.zi = np.zeros((3, 2, general.n_out))
    general._zi_unit = np.vstack([general._zi_unit, [0.0, 0.0]])
    got, ref = stream(fast, x, chunk), stream(general, x, chunk)
    assert got.tobytes() == ref.tobytes()
    assert np.isnan(got[400:403, 1]).all() and np.isfinite(got[-1]).all()
    np.testing.assert_array_equal(fast.zi, general.zi[:2])


@pytest.mark.parametrize("reference", ["none", "average", ["Cz", "Fz"]])
def test_float32_input_is_filtered_bit_identically_to_its_float64_copy(reference):
    # of float32 chunks only the channels the map reads are converted (the kernel runs on that gather with
    # remapped indices); the result must be the one of the float64 copy of every channel, strided float32 too
    rng = np.random.default_rng(8)
    x32 = (rng.standard_normal((1500, len(NAMES))) * 20).astype(np.float32)
    x32[700, NAMES.index("Pz")] = np.nan
    kw = dict(sfreq=FS, reference=reference, highpass_hz=1.0, notch_hz=50.0, monitor=True)
    pre32 = Preprocessor(NAMES, ["O1", "O2", "Pz"], **kw)
    pre64 = Preprocessor(NAMES, ["O1", "O2", "Pz"], **kw)
    got = stream(pre32, x32, 50)
    ref = stream(pre64, x32.astype(np.float64), 50)
    assert got.tobytes() == ref.tobytes()
    assert np.isnan(got[700]).any() and np.isfinite(got[-1]).all()
    strided = np.asfortranarray(x32)  # not C-contiguous: staged through the float64 buffer
    assert stream(Preprocessor(NAMES, ["O1", "O2", "Pz"], **kw), strided, 50).tobytes() == ref.tobytes()


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


def test_average_reference_leaves_out_channels_that_are_not_eeg():
    names = ["EEG Fz", "EEG Cz", "EEG Pz", "EEG O1", "EEG A2-A1", "ECG ECG", "Trig"]
    types = ["EEG", "EEG", "EEG", "EEG", "EEG", "EEG", "STIM"]  # as MNE types an EDF (the trigger declared)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, len(names))) * 10
    x[:, 5] *= 100  # an ECG is far larger than EEG
    pre = Preprocessor(names, ["O1"], FS, combine="each", reference="average", ch_types=types)
    assert pre.ch_types == ["EEG", "EEG", "EEG", "EEG", "REF", "ECG", "STIM"]
    assert pre.ref_excluded == ["EEG A2-A1", "ECG ECG", "Trig"]
    out = stream(pre, x, 50)
    np.testing.assert_allclose(out[:, 0], x[:, 3] - x[:, :4].mean(axis=1), rtol=1e-12, atol=1e-12)
    # picks name channels explicitly: then the average runs over exactly those, whatever their type
    pre = Preprocessor(names, ["O1"], FS, reference="average", picks=["Cz", "O1", "ECG ECG"], ch_types=types)
    assert pre.ref_excluded == []
    np.testing.assert_allclose(stream(pre, x, 400)[:, 0], x[:, 3] - x[:, [1, 3, 5]].mean(axis=1), atol=1e-12)


def test_every_channel_list_uses_the_one_matcher():
    # the pipeline says O1, Pz, M1; the stream says "EEG O1", "Pz..", "M1-REF": picks, reference, Laplacian, ROIs
    stream_names = ["EEG Fz", "EEG Cz", "Pz..", "EEG P3", "EEG P4", "EEG O1", "O2-REF", "M1-REF", "M2-REF"]
    rng = np.random.default_rng(8)
    x = rng.standard_normal((300, 9)) * 20
    kw = dict(
        rois={"post": {"O1": 0.25, "O2": 0.25, "Pz": 0.5}, "mid": ["Fz", "Cz"]},
        sfreq=FS,
        reference=["M1", "M2"],
        laplacian={"Pz": ["P3", "P4", "O1", "O2"]},
    )
    got = stream(Preprocessor(stream_names, **kw), x, 300)
    want = stream(Preprocessor(NAMES, **kw), x, 300)  # the same data under the pipeline's own names
    np.testing.assert_array_equal(got, want)
    picked = Preprocessor(stream_names, ["o1"], FS, picks=["O1", "o2", "Fz"], reference="average")
    np.testing.assert_allclose(stream(picked, x, 300)[:, 0], x[:, 5] - x[:, [5, 6, 0]].mean(axis=1), atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(channels=["Oz"]), "features.channels: channel(s) ['Oz'] not in stream 'amp'"),
        (dict(rois={"occ": ["O1", "Oz"]}), "features.rois.occ: channel(s) ['Oz']"),
        (dict(channels=["O1"], picks=["O1", "T7"]), "preprocess.picks: channel(s) ['T7']"),
        (dict(channels=["O1"], reference=["A1"]), "preprocess.reference: channel(s) ['A1']"),
        (dict(channels=["O1"], laplacian={"Cz": ["Qq"]}), "preprocess.laplacian.Cz: channel(s) ['Qq']"),
        (dict(channels=["Fz"], picks=["O1", "O2"]), "features.channels: channel(s) ['Fz'] not in the picked channels"),
    ],
)
def test_a_missing_channel_is_one_line_naming_its_key_and_the_stream(kwargs, key):
    from closedloop.channels import ChannelError

    with pytest.raises(ChannelError) as err:
        Preprocessor(NAMES, sfreq=FS, where="stream 'amp'", **kwargs)
    msg = str(err.value)
    assert msg.startswith(key) and "\n" not in msg


EEGMAT = SHARED_DATA / "eegmat_subject00_rest.edf"


def posterior_theta_mne(raw, ref_channels: list[str], k_frames: list[int], win=500, hop=25) -> np.ndarray:
    """log10 theta (4-8 Hz, Welch/Hann) of mean(O1, O2, Pz) after MNE's average reference over ``ref_channels``."""
    r = raw.copy().set_eeg_reference(ref_channels=ref_channels, projection=False, verbose=False)
    x = r.get_data(picks=["EEG O1", "EEG O2", "EEG Pz"]).mean(axis=0) * 1e6
    out = []
    for k in k_frames:
        f, p = signal.welch(x[k * hop : k * hop + win], FS, window="hann", nperseg=win)
        out.append(np.log10(p[(f >= 4) & (f < 8)].sum() * (f[1] - f[0])))  # half-open [4, 8)
    return np.array(out)


@pytest.mark.skipif(not EEGMAT.exists(), reason="shared real EEG (../shared/data) not present")
def test_eegmat_average_reference_is_mne_average_over_the_19_eeg_electrodes():
    import mne

    from closedloop.config import load_pipeline
    from closedloop.offline.replay import replay

    over = {
        "preprocess.reference": "average",
        "preprocess.highpass_hz": None,
        "preprocess.notch_hz": None,
        "features.smoothing_s": 0.0,
    }
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", over)
    result = replay(EEGMAT, resolved, keep="trace")
    assert any("'ECG ECG' (ECG)" in n and "'EEG A2-A1' (REF)" in n for n in result.notes)
    raw = mne.io.read_raw_edf(EEGMAT, preload=True, verbose=False)
    eeg19 = [n for n in raw.ch_names if n not in ("ECG ECG", "EEG A2-A1")]
    assert len(eeg19) == 19
    ks = list(range(0, len(result.trace), 397))
    want = posterior_theta_mne(raw, eeg19, ks)
    np.testing.assert_allclose(result.trace.feature("theta")[ks], want, rtol=1e-9)
    # the old behaviour (all 21 channels in the average, as MNE types them) gives other numbers: far more theta
    all21 = posterior_theta_mne(raw, raw.ch_names, ks)
    assert np.median(10 ** (all21 - want)) > 2.0


def _plain_preprocess(pre: Preprocessor, x: np.ndarray) -> np.ndarray:
    """The definition, one value at a time in Python floats: reference, map, then each section, skipping non-finite."""
    m, sos = pre.map, pre.sos
    zi_unit = signal.sosfilt_zi(sos)
    state = [[[0.0, 0.0] for _ in range(len(sos))] for _ in range(pre.n_out)]
    started = [False] * pre.n_out
    out = np.empty((x.shape[0], pre.n_out))
    for i, row in enumerate(x.astype(np.float64).tolist()):
        r = 0.0
        for j in m.ref_idx.tolist():
            r += row[j]
        r = r / len(m.ref_idx) if len(m.ref_idx) else 0.0
        for o in range(pre.n_out):
            acc = 0.0
            for k in range(m.ptr[o], m.ptr[o + 1]):
                acc += float(m.weight[k]) * row[m.idx[k]]
            v = acc - float(m.rowsum[o]) * r if m.rowsum[o] != 0.0 else acc
            if not np.isfinite(v):
                out[i, o] = np.nan
                continue
            if not started[o]:
                state[o] = [[float(zi_unit[s, 0]) * v, float(zi_unit[s, 1]) * v] for s in range(len(sos))]
                started[o] = True
            for s, (b0, b1, b2, _, a1, a2) in enumerate(sos.tolist()):
                z0, z1 = state[o][s]
                y = b0 * v + z0
                state[o][s] = [b1 * v - a1 * y + z1, b2 * v - a2 * y]
                v = y
            out[i, o] = v
    return out


@pytest.mark.parametrize(
    "kw",
    [
        dict(channels=NAMES, combine="each", reference="average", highpass_hz=1.0, notch_hz=50.0),  # one channel each
        dict(channels=NAMES, combine="each", highpass_hz=1.0, notch_hz=50.0, notch_harmonics=2),  # three sections
        dict(rois={"post": {"O1": 0.3, "O2": 0.7}}, reference=["M1", "M2"], highpass_hz=1.0, notch_hz=50.0),
    ],
    ids=["each-average-two-sections", "each-three-sections", "roi-chosen-reference"],
)
@pytest.mark.parametrize("chunk", [1, 6, 64])
def test_kernel_equals_the_per_value_definition_bit_for_bit(kw, chunk):
    # the kernel runs stage by stage over a chunk (four reference sums side by side, outputs side by side in
    # the filters, a branch-free loop when the chunk is all finite); each value must still get the bits of the
    # plain per-sample definition, with non-finite values skipped and filters started at their first finite one
    rng = np.random.default_rng(12)
    x = rng.standard_normal((300, len(NAMES))) * 30 + 5.0
    x[40:43, NAMES.index("O1")] = np.nan
    x[:11, NAMES.index("O2")] = np.inf  # starts late
    x[150, NAMES.index("Pz")] = -np.inf
    x[200, :] = np.nan  # every channel at once
    pre = Preprocessor(NAMES, sfreq=FS, **kw)
    got = stream(pre, x, chunk)
    assert got.tobytes() == _plain_preprocess(pre, x).tobytes()
    assert np.isfinite(got[-1]).all()
