"""Offline replay of recordings: XDF (ours and LabRecorder-style) and the formats MNE reads."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import tracemalloc
from pathlib import Path

import mne
import numpy as np
import pytest
from scipy import signal

from closedloop.config import load_pipeline
from closedloop.offline.files import RecordingError, open_recording
from closedloop.offline.metrics import Trace
from closedloop.offline.replay import replay
from closedloop.pipeline import Pipeline
from closedloop.recording.xdf import XDFWriter
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.synthetic.recording import write_synthetic_xdf
from closedloop.types import Chunk

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipelines" / "alpha_tacs.toml"
SHARED_EDF = REPO.parent / "shared" / "data" / "eegmat_subject00_rest.edf"
ANNOTATIONS = [(2.0, 5.0, "pain"), (9.5, 4.0, "rest"), (15.0, 0.0, "blink")]


@pytest.fixture(scope="module")
def resolved():
    return load_pipeline(PIPELINE, {"controller.lower": 1.45, "controller.upper": 1.6})


@pytest.fixture(scope="module")
def mne_raw():
    """20 s of synthetic EEG on the 19 10-20 channels, in volts, with annotations."""
    gen = SyntheticEEG(n_channels=19, sfreq=500.0, seed=11)
    data = gen.generate(10_000).T.astype(np.float64) * 1e-6
    raw = mne.io.RawArray(data, mne.create_info(gen.ch_names, 500.0, "eeg"), verbose=False)
    onset, duration, desc = zip(*ANNOTATIONS)
    raw.set_annotations(mne.Annotations(onset, duration, desc))
    return raw


def direct_trace(resolved, raw, ch_names=None):
    """The pipeline run on MNE's own reading of a file, in one chunk: the reference for a replay."""
    data = raw.get_data() * 1e6
    pipe = Pipeline(resolved, ch_names or raw.ch_names)
    steps = pipe.process(Chunk(np.ascontiguousarray(data.T), np.arange(data.shape[1]) / raw.info["sfreq"]))
    return steps


@pytest.mark.filterwarnings("ignore:Encountered data in 'double' format")  # pybv stores float32
@pytest.mark.parametrize("fmt", ["fif", "edf", "brainvision"])
def test_replay_of_files_written_by_mne(tmp_path, resolved, mne_raw, fmt):
    path = tmp_path / {"fif": "rec_raw.fif", "edf": "rec.edf", "brainvision": "rec.vhdr"}[fmt]
    if fmt == "fif":
        mne_raw.save(path, fmt="single", verbose=False)
    else:
        mne.export.export_raw(path, mne_raw, fmt=fmt, verbose=False)
    result = replay(path, resolved, keep="steps", chunk_samples=333)
    reference = direct_trace(resolved, mne.io.read_raw(path, preload=True, verbose=False))
    assert len(result.steps) == len(reference) == (10_000 - 500) // 25 + 1
    for got, want in zip(result.steps, reference):  # the same numbers as the pipeline on MNE's data
        assert got.frame.time == want.frame.time
        np.testing.assert_array_equal(got.frame.values, want.frame.values)
        assert got.allowed.amplitude_mA == want.allowed.amplitude_mA
    # µV, like the original: close to the unquantised signal (EDF stores 16-bit integers)
    exact = replay(path, resolved, keep="trace").trace if fmt == "fif" else None
    if exact is not None:
        direct = direct_trace(resolved, mne_raw)
        np.testing.assert_allclose(exact.values, [s.frame.values for s in direct], rtol=1e-4)
    labels = [e.label for e in result.events]
    if fmt == "brainvision":  # MNE names BrainVision markers "Comment/<text>"
        assert any(lab.endswith("pain") for lab in labels)
    else:
        assert [(round(e.time, 3), round(e.duration, 3), e.label) for e in result.events] == ANNOTATIONS


def test_channel_and_rate_mismatches_explain_what_the_file_has(tmp_path, resolved, mne_raw):
    path = tmp_path / "rec_raw.fif"
    raw = mne_raw.copy().rename_channels({"O1": "EEG O1-REF", "O2": "Occ2"})
    raw.save(path, verbose=False)
    with pytest.raises(RecordingError) as err:
        replay(path, resolved)
    msg = str(err.value)
    assert "['O2']" in msg and "Occ2" in msg and "EEG O1-REF" in msg  # O1 matched, O2 not; lists the file
    slow = load_pipeline(PIPELINE, {"source.sfreq": 250.0})
    with pytest.raises(RecordingError, match=r"expects 250 Hz.*sampled at 500 Hz"):
        replay(path, slow)
    lsl = load_pipeline(
        REPO / "pipelines" / "alpha_tacs_lsl.toml",
        {"source.channels": ["Pz", "O1", "Fz"], "features.channels": ["O1", "Pz"]},
    )
    rec = open_recording(path)
    steps = replay(path, lsl, recording=rec, keep="steps").steps
    # a source listing channels gets exactly those, in its order; "EEG O1-REF" is matched as O1
    data = mne.io.read_raw(path, verbose=False).get_data(picks=["Pz", "EEG O1-REF", "Fz"]) * 1e6
    direct = Pipeline(lsl, ["Pz", "O1", "Fz"]).process(Chunk(np.ascontiguousarray(data.T), np.arange(10_000) / 500.0))
    np.testing.assert_array_equal([s.frame.values for s in steps], [s.frame.values for s in direct])


def test_labrecorder_style_xdf_uses_raw_timestamps_plus_the_clock_offset(tmp_path, resolved):
    path = tmp_path / "lab.xdf"
    info = write_synthetic_xdf(path, 12.0, n_channels=32, sfreq=500.0, seed=2, start_time=2000.0, clock_offset=0.25)
    result = replay(path, resolved, keep="trace")
    times = result.trace.time
    np.testing.assert_array_equal(times, 2000.0 + (499 + 25 * np.arange(len(times))) / 500.0 + 0.25)
    markers = [(t + 0.25, label) for t, label in info["markers"]]
    assert [(e.time, e.label) for e in result.events] == markers
    # the same data, directly: the file's values go in untouched
    from closedloop.recording import XDFReader

    values, stamps = XDFReader(path).read_stream(1)
    direct = Pipeline(resolved, info["ch_names"]).process(Chunk(values, stamps + 0.25))
    np.testing.assert_array_equal(result.trace.values, [s.frame.values for s in direct])


def test_replay_writes_session_outputs_that_replay_identically(tmp_path, resolved):
    src = tmp_path / "lab.xdf"
    write_synthetic_xdf(src, 30.0, n_channels=32, sfreq=500.0, seed=5, clock_offset=-0.125)
    first = replay(src, resolved, tmp_path / "out1", keep="trace")
    summary = json.loads((tmp_path / "out1" / "summary.json").read_text())
    assert summary["realtime_factor"] > 0 and summary["frames"] == len(first.trace)
    assert summary["stop_reason"] == "end of recording" and summary["recording"]["dropped_samples"] == 0
    assert (tmp_path / "out1" / "report.html").exists()
    again = replay(tmp_path / "out1" / "session.xdf", resolved, keep="trace")
    for name in ("time", "values", "flags", "desired_on", "allowed_amplitude_mA"):
        np.testing.assert_array_equal(getattr(again.trace, name), getattr(first.trace, name))
    assert [(e.time, e.label) for e in again.events] == [(e.time, e.label) for e in first.events]
    recorded = Trace.from_xdf(tmp_path / "out1" / "session.xdf")
    np.testing.assert_array_equal(recorded.allowed_amplitude_mA, first.trace.allowed_amplitude_mA)


def test_what_a_replay_records_does_not_depend_on_its_chunks(tmp_path, resolved):
    # each frame's command goes to the device at that frame's safety-layer time, however many frames a chunk holds
    from closedloop.recording import XDFReader
    from closedloop.recording.session import APPLIED_CHANNELS, APPLIED_STREAM, COMMAND_CHANNELS, COMMANDS_STREAM

    src = tmp_path / "lab.xdf"
    write_synthetic_xdf(src, 20.0, n_channels=32, sfreq=500.0, seed=5)
    got = {}
    for size in (25, 37, 1000, 5000):  # one frame per chunk, 0-2 frames, 40 frames, a whole XDF block
        result = replay(src, resolved, tmp_path / f"out{size}", report=False, chunk_samples=size)
        reader = XDFReader(tmp_path / f"out{size}" / "session.xdf")
        applied = reader.read_stream(reader.find(name=APPLIED_STREAM)[0].stream_id)
        commands = reader.read_stream(reader.find(name=COMMANDS_STREAM)[0].stream_id)
        got[size] = (applied, commands, {k: result.summary[k] for k in ("frames", "commands_applied", "stop_reason")})
    (values, issued), (cmds, _), counts = got[25]
    assert counts["commands_applied"] == counts["frames"] == len(issued) > 300
    assert values[:, APPLIED_CHANNELS.index("amplitude_mA")].max() > 0.5  # stimulation was on
    np.testing.assert_array_equal(issued, cmds[:, COMMAND_CHANNELS.index("safety_time")])  # at the frame's safety time
    frame_time = values[:, APPLIED_CHANNELS.index("frame_time")]
    np.testing.assert_array_equal(values[:, APPLIED_CHANNELS.index("latency_s")], issued - frame_time)
    for size in (37, 1000, 5000):
        for a, b in zip(got[size][:2], got[25][:2]):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        assert got[size][2] == counts


def test_replay_stops_cleanly_when_the_recording_fails(tmp_path, resolved, monkeypatch):
    import shutil

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    src = tmp_path / "lab.xdf"
    write_synthetic_xdf(src, 20.0, n_channels=32, seed=1)
    out = tmp_path / "gone"

    def remove_folder(step):
        if step.frame.index == 50:
            shutil.rmtree(out)

    result = replay(src, resolved, out, on_step=remove_folder)  # returns normally, saying why
    assert result.summary["stop_reason"].startswith("recording failed") and str(out) in result.summary["stop_reason"]
    assert result.summary["recording"]["error"].startswith("FileNotFoundError")
    rescued = tmp_path / "state" / "closedloop" / "rescued" / "gone" / "summary.json"
    assert any(f"summary.json written to {rescued}" in note for note in result.notes)
    assert json.loads(rescued.read_text())["stop_reason"] == result.summary["stop_reason"]


def test_memory_stays_flat_over_a_long_replay(tmp_path, resolved):
    path = tmp_path / "long.xdf"
    rng = np.random.default_rng(0)
    names = SyntheticEEG(n_channels=32).ch_names
    block = (rng.standard_normal((500, 32)) * 10).astype(np.float32)
    n_blocks = 1200  # 20 minutes at 500 Hz
    with XDFWriter(path) as w:
        w.add_stream(1, "long", "EEG", 32, 500.0, "float32", channels=[{"label": c} for c in names])
        for i in range(n_blocks):
            w.write_samples(1, block, 100.0 + (i * 500 + np.arange(500)) / 500.0)
    frames_total = (n_blocks * 500 - 500) // 25 + 1
    marks = {}

    def sample_memory(step):
        if step.frame.index in (frames_total // 4, frames_total - 1):
            gc.collect()
            marks[step.frame.index] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        result = replay(path, resolved, tmp_path / "out", on_step=sample_memory, report=False, chunk_samples=500)
    finally:
        tracemalloc.stop()
    assert result.summary["frames"] == frames_total and len(marks) == 2
    # 15 more minutes of data (about 27 MB of EEG, 18,000 frames) passed through and were recorded;
    # what may wait for the writer at any moment is bounded (32 queued chunks of 64 kB, ~1 MB batches)
    growth = marks[frames_total - 1] - marks[frames_total // 4]
    assert growth < 4_000_000, growth


@pytest.mark.skipif(not SHARED_EDF.exists(), reason="shared real EEG (../shared/data) not present")
def test_real_edf_replays_with_band_powers_equal_to_scipy(resolved):
    plain = load_pipeline(
        PIPELINE, {"features.smoothing_s": 0.0, "preprocess.highpass_hz": None, "preprocess.notch_hz": None}
    )
    result = replay(SHARED_EDF, plain, keep="trace")
    assert "O1" in (names := open_recording(SHARED_EDF).ch_names[14]) or names == "EEG O1"
    raw = mne.io.read_raw(SHARED_EDF, verbose=False)
    x = raw.get_data(picks=["EEG O1", "EEG O2", "EEG Pz"]).mean(axis=0) * 1e6
    fs, win, hop = 500.0, 500, 25
    assert len(result.trace) == (x.size - win) // hop + 1
    for k in (0, 1000, len(result.trace) - 1):
        f, p = signal.welch(x[k * hop : k * hop + win], fs, window="hann", nperseg=win)
        alpha = p[(f >= 8) & (f < 12)].sum() * (f[1] - f[0])  # half-open [8, 12)
        assert result.trace.feature("alpha")[k] == pytest.approx(math.log10(alpha), rel=1e-9)
    # resting EEG with eyes closed: alpha dominates theta
    assert np.nanmean(result.trace.feature("theta_alpha")) < 0


@pytest.mark.skipif(not SHARED_EDF.exists(), reason="shared real EEG (../shared/data) not present")
def test_the_report_of_a_real_recording_shows_the_feature_channels_first(tmp_path, resolved):
    """The pipeline names O1, O2, Pz; the file labels them "EEG O1"...: the raw excerpt starts with those."""
    replay(SHARED_EDF, resolved, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "EEG O1, EEG O2, EEG Pz, EEG Fp1, EEG Fp2, EEG F3, EEG F4, EEG F7 (8 of 21 channels)" in html


def test_cli_replay_and_its_errors(tmp_path, mne_raw):
    path = tmp_path / "rec_raw.fif"
    mne_raw.save(path, verbose=False)
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "closedloop",
            "replay",
            str(path),
            "--pipeline",
            str(PIPELINE),
            "--out",
            str(out),
            "-q",
            "--no-report",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["realtime_factor"] > 0 and summary["replay"]["events"] == 3
    assert "real time" in run.stderr
    bad = tmp_path / "bad_raw.fif"
    mne_raw.copy().pick(["Fz", "Cz"]).save(bad, verbose=False)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "closedloop",
            "replay",
            str(bad),
            "--pipeline",
            str(PIPELINE),
            "--out",
            str(tmp_path / "out2"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3 and "['Fz', 'Cz']" in run.stderr
