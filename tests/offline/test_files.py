"""Reading recordings as they are: units, channel types, labels, EDF+ annotation encodings."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from conftest import REPO, SHARED_DATA

from closedloop.config import load_pipeline
from closedloop.offline.files import RecordingError, open_recording, plan_channels
from closedloop.offline.replay import replay
from closedloop.pipeline import Pipeline
from closedloop.recording.xdf import XDFWriter
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.types import Chunk

EEGMAT = SHARED_DATA / "eegmat_subject00_rest.edf"
LSL_PIPELINE = REPO / "pipelines" / "alpha_tacs_lsl.toml"


def write_xdf(path, data, labels, units, types=None, fmt="float32", stream_type="EEG", fs=500.0):
    """One EEG stream: ``data`` (n, ch) as stored, with the given header labels, units and types."""
    types = types or [""] * len(labels)
    channels = [{"label": lab, "unit": u, "type": t} for lab, u, t in zip(labels, units, types)]
    with XDFWriter(path) as w:
        w.add_stream(1, "amp", stream_type, len(labels), fs, fmt, channels=channels)
        w.write_samples(1, data, 100.0 + np.arange(data.shape[0]) / fs)


def all_blocks(rec, picks=None):
    return np.concatenate([d for d, _ in rec.blocks(picks)])


@pytest.fixture(scope="module")
def volts():
    """4 s of synthetic EEG on 19 channels in volts (float32, as an amplifier streams it) plus an ECG."""
    gen = SyntheticEEG(n_channels=19, sfreq=500.0, seed=3)
    uv = gen.generate(2000)
    ecg = np.sin(np.arange(2000) / 500.0 * 2 * np.pi * 1.2)[:, None] * 1000.0
    return np.hstack([uv, ecg]).astype(np.float32) * np.float32(1e-6), [*gen.ch_names, "ECG"]


def test_xdf_values_are_scaled_to_microvolts_from_the_declared_unit(tmp_path, volts):
    data, labels = volts
    path = tmp_path / "v.xdf"
    write_xdf(path, data, labels, ["V"] * 19 + ["millivolts"], stream_type="eeg")
    rec = open_recording(path, type="EEG")  # the stream type is matched ignoring case
    assert rec.ch_types == ["EEG"] * 19 + ["ECG"]
    np.testing.assert_array_equal(rec.factors, [1e6] * 19 + [1e3])
    got = all_blocks(rec)
    # the product is taken in the stored dtype (float32), exactly as the live source takes it
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, data * np.array([1e6] * 19 + [1e3], dtype=np.float32))
    assert rec.eeg_info()["units"] == ["microvolts"] * 20  # what blocks() yields
    assert not rec.notes


def test_missing_and_unknown_units(tmp_path, volts):
    data, labels = volts
    path = tmp_path / "none.xdf"
    write_xdf(path, data * np.float32(1e6), labels, [""] * 20)
    rec = open_recording(path)
    assert any("declares no unit" in n and "taken as µV" in n for n in rec.notes)
    np.testing.assert_array_equal(rec.factors, 1.0)
    bad = tmp_path / "bad.xdf"
    write_xdf(bad, data, labels, ["V"] * 18 + ["furlong", "V"])
    with pytest.raises(RecordingError, match=r"channel 'O2' declares unit 'furlong'") as err:
        open_recording(bad)
    assert "\n" not in str(err.value)
    # a pipeline's [source] units applies to files too: a stream that said µV but sent volts
    lying = tmp_path / "lying.xdf"
    write_xdf(lying, data, labels, ["microvolts"] * 20)
    rec = open_recording(lying)
    plan_channels(rec, load_pipeline(LSL_PIPELINE, {"source.units": "V"}))
    np.testing.assert_array_equal(all_blocks(rec), data * np.float32(1e6))


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["Fz", "C\tz", "Pz"], "control character"),
        (["Fz", "", "Pz"], "empty label"),
        (["Fz", "Fz", "Pz"], "label 'Fz' is used by channels 0 and 1"),
    ],
)
def test_unusable_labels_in_a_file_are_one_line_errors(tmp_path, labels, expected):
    path = tmp_path / "labels.xdf"
    write_xdf(path, np.zeros((10, 3), np.float32), labels, ["µV"] * 3)
    with pytest.raises(RecordingError, match=expected) as err:
        open_recording(path)
    assert "\n" not in str(err.value)


def test_unlabelled_file_names_its_channels_and_says_why_o1_is_missing(tmp_path):
    path = tmp_path / "nolabels.xdf"
    with XDFWriter(path) as w:
        w.add_stream(1, "amp", "EEG", 3, 500.0, "float32")
        w.write_samples(1, np.zeros((600, 3), np.float32), 100.0 + np.arange(600) / 500.0)
    rec = open_recording(path)
    assert rec.ch_names == ["ch0", "ch1", "ch2"]
    with pytest.raises(RecordingError, match=r"features.channels: .* declares no channel labels"):
        replay(path, load_pipeline(LSL_PIPELINE))
    result = replay(path, load_pipeline(LSL_PIPELINE, {"features.channels": ["ch1"]}), keep="trace")
    assert len(result.trace) > 0


def test_rois_without_source_channels_replay(tmp_path):
    gen = SyntheticEEG(n_channels=19, sfreq=500.0, seed=4)
    data = gen.generate(3000).astype(np.float32)
    path = tmp_path / "roi.xdf"
    labels = [f"EEG {c}" for c in gen.ch_names]  # the file's spelling, not the pipeline's
    write_xdf(path, data, labels, ["µV"] * 19)
    over = {
        "features.channels": None,
        "features.rois": {"occ": ["O1", "O2"], "par": {"Pz": 1.0}},
        "controller.feature": "alpha_occ",
    }
    resolved = load_pipeline(LSL_PIPELINE, over)
    result = replay(path, resolved, keep="trace")
    direct = Pipeline(resolved, gen.ch_names).process(Chunk(data, 100.0 + np.arange(3000) / 500.0))
    np.testing.assert_array_equal(result.trace.values, [s.frame.values for s in direct])
    assert "alpha_occ" in result.feature_names
    with pytest.raises(RecordingError, match=r"features.rois.occ: channel\(s\) \['Oz'\]"):
        replay(path, load_pipeline(LSL_PIPELINE, over | {"features.rois": {"occ": ["O1", "Oz"]}}))


@pytest.fixture
def latin1_edf(tmp_path):
    """An EDF+ whose annotation text is latin1 ("Schmerz äü"), which UTF-8 cannot decode."""
    info = mne.create_info(["Fz", "Cz", "Pz", "O1", "O2"], 500.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(0).standard_normal((5, 5000)) * 1e-5, info, verbose=False)
    raw.set_annotations(mne.Annotations([1.0, 3.0], [0.5, 0.0], ["Schmerz xx", "rest"]))
    path = tmp_path / "latin1.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose=False)
    content = path.read_bytes()
    at = content.index(b"Schmerz xx") + len(b"Schmerz ")
    path.write_bytes(content[:at] + "äü".encode("latin1") + content[at + 2 :])  # same length, invalid UTF-8
    with pytest.raises(Exception, match="latin1"):  # what MNE alone says
        mne.io.read_raw_edf(path, verbose=False)
    return path


def test_edf_annotations_in_latin1_open_automatically_or_by_encoding(latin1_edf):
    rec = open_recording(latin1_edf)
    assert [e.label for e in rec.events] == ["Schmerz äü", "rest"]
    assert any("latin1" in n for n in rec.notes)
    rec = open_recording(latin1_edf, encoding="latin1")
    assert [e.label for e in rec.events][0] == "Schmerz äü" and not rec.notes
    with pytest.raises(RecordingError, match="cannot be decoded as utf8"):
        open_recording(latin1_edf, encoding="utf8")
    with pytest.raises(RecordingError, match="unknown text encoding 'klingon'"):
        open_recording(latin1_edf, encoding="klingon")
    result = replay(latin1_edf, load_pipeline(LSL_PIPELINE), keep="trace")
    assert [e.label for e in result.events] == ["Schmerz äü", "rest"] and len(result.trace) > 0


@pytest.mark.skipif(not EEGMAT.exists(), reason="shared real EEG (../shared/data) not present")
def test_eegmat_channels_are_typed_from_their_labels_and_scaled_from_volts():
    rec = open_recording(EEGMAT)
    types = dict(zip(rec.ch_names, rec.ch_types))
    assert len(rec.ch_names) == 21 and types["ECG ECG"] == "ECG" and types["EEG A2-A1"] == "REF"
    assert sum(t == "EEG" for t in rec.ch_types) == 19
    assert rec.eeg_info()["ch_types"][-1] == "ECG"
    raw = mne.io.read_raw_edf(EEGMAT, verbose=False)
    first = next(rec.blocks(block_samples=1000))[0]
    np.testing.assert_array_equal(first, raw.get_data(start=0, stop=1000).T * 1e6)
