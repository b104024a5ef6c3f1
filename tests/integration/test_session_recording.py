"""SessionRecording: what a session writes to session.xdf, read back with pyxdf and MNE; crash safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mne
import numpy as np
import pytest
import pyxdf

from closedloop.lslconfig import configure_lsl

configure_lsl()

from adapter_helpers import wait_for  # noqa: E402
from session_helpers import OFFSET, eeg_desc, record_session  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.recording import SessionRecording, XDFReader, repair_xdf, scan_xdf  # noqa: E402
from closedloop.recording.xdf import XDFWriter  # noqa: E402
from closedloop.synthetic.eeg import SyntheticEEG  # noqa: E402
from closedloop.types import Command  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def load(path):
    streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}, header


@pytest.fixture(scope="module")
def resolved():
    return load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")


def test_session_xdf_holds_every_stream_exactly(tmp_path, resolved):
    rec, raw_all, steps = record_session(tmp_path, resolved)
    rec.close({"frames": len(steps)})
    assert rec.error is None
    streams, header = load(tmp_path / "session.xdf")
    # file header: version and the resolved pipeline
    info = header["info"]
    assert info["closedloop_version"][0]
    assert json.loads(info["pipeline_json"][0])["controller"]["lower"] == resolved.config.controller.lower
    assert "[controller]" in info["pipeline_toml"][0]
    # EEG exactly as received: values, raw timestamps, labels, offset, source header
    eeg = streams["EEG-test"]
    np.testing.assert_array_equal(eeg["time_series"], np.concatenate([d for d, _ in raw_all]))
    np.testing.assert_array_equal(eeg["time_stamps"], np.concatenate([r for _, r in raw_all]))
    desc = eeg["info"]["desc"][0]
    assert [c["label"][0] for c in desc["channels"][0]["channel"]] == SyntheticEEG(32).ch_names
    assert float(desc["closedloop"][0]["pipeline_offset"][0]) == OFFSET
    assert "acme &amp; co" in desc["closedloop"][0]["source_header_xml"][0]
    assert eeg["clock_values"] == [-OFFSET]
    # one sample per frame, stamped with the frame time
    feats, cmds, state = (
        streams["closedloop-features"],
        streams["closedloop-commands"],
        streams["closedloop-controller"],
    )
    times = np.array([s.frame.time for s in steps])
    for s in (feats, cmds, state):
        np.testing.assert_array_equal(s["time_stamps"], times)
    np.testing.assert_array_equal(feats["time_series"][:, :3], [s.frame.values for s in steps])
    np.testing.assert_array_equal(feats["time_series"][:, 4], np.arange(len(steps)))
    np.testing.assert_array_equal(cmds["time_series"][:, 4], [s.allowed.amplitude_mA for s in steps])
    np.testing.assert_array_equal(cmds["time_series"][:, 0], [s.desired.on for s in steps])
    labels = [c["label"][0] for c in state["info"]["desc"][0]["channels"][0]["channel"]]
    np.testing.assert_array_equal(
        state["time_series"][:, labels.index("switches")], [s.state["switches"] for s in steps]
    )
    assert json.loads(feats["info"]["desc"][0]["closedloop"][0]["pipeline_json"][0])["pipeline"]["name"] == "alpha_tacs"
    # applied commands, markers, ratings and safety events
    applied = streams["closedloop-applied"]
    truth = np.array(rec.applied_truth)
    np.testing.assert_array_equal(applied["time_stamps"], truth[:, 0])
    np.testing.assert_array_equal(applied["time_series"][:, 0], truth[:, 1])  # amplitude_mA
    np.testing.assert_array_equal(applied["time_series"][:, 3], truth[:, 2])  # frame_time
    assert streams["task"]["time_series"] == [["start"], ["stop"]]
    np.testing.assert_array_equal(streams["ratings"]["time_series"], [[3.5], [7.0]])
    events = [json.loads(x[0]) for x in streams["closedloop-safety"]["time_series"]]
    assert {"kind": "clamp", "reason": "2 mA clamped to 1.5 mA"}.items() <= events[-1].items()
    assert scan_xdf(tmp_path / "session.xdf").ok


def test_session_eeg_turns_into_an_mne_raw(tmp_path, resolved):
    rec, raw_all, _ = record_session(tmp_path, resolved, seconds=2.0)
    rec.close()
    streams, _ = load(tmp_path / "session.xdf")
    eeg = streams["EEG-test"]
    chans = eeg["info"]["desc"][0]["channels"][0]["channel"]
    info = mne.create_info([c["label"][0] for c in chans], float(eeg["info"]["nominal_srate"][0]), "eeg")
    raw = mne.io.RawArray(eeg["time_series"].T.astype(np.float64) * 1e-6, info, verbose=False)  # µV -> V
    np.testing.assert_allclose(
        raw.get_data(picks=["O1"])[0] * 1e6,
        np.concatenate([d for d, _ in raw_all])[:, raw.ch_names.index("O1")],
        rtol=1e-6,
    )
    assert raw.n_times == 1000


def test_folder_problems_are_reported_before_the_session(tmp_path, resolved):
    gen = SyntheticEEG(n_channels=32)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=str(blocker)):
        SessionRecording(blocker / "session", resolved, eeg_desc(gen), ("alpha",))
    with pytest.raises(OSError, match="MB free"):
        SessionRecording(tmp_path / "s1", resolved, eeg_desc(gen), ("alpha",), min_free_bytes=10**18)
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "session.xdf").write_bytes(b"XDF:")
    with pytest.raises(FileExistsError, match="s2"):
        SessionRecording(tmp_path / "s2", resolved, eeg_desc(gen), ("alpha",), min_free_bytes=0)


def test_a_failing_disk_shows_in_error_and_never_raises_in_the_loop(tmp_path, resolved):
    folder = tmp_path / "session"
    rec, _, _ = record_session(folder, resolved, seconds=1.0)
    assert rec.recorder.flush() and rec.error is None
    shutil.rmtree(folder)
    data = np.zeros((10, 32), np.float32)
    rec.on_chunk(data, np.arange(10.0))
    rec.recorder.flush()
    assert isinstance(rec.error, FileNotFoundError) and str(folder) in str(rec.error)
    for _ in range(3):  # the loop keeps going; it is the runtime's job to stop and ramp down
        rec.on_chunk(data, np.arange(10.0))
        rec.on_applied(Command(1.0, 10.0, True, 1.0), 2.0, 0.001)
    assert rec.summary_fields()["recording"]["error"].startswith("FileNotFoundError")
    rec.close()


def test_reader_matches_pyxdf_on_deduced_timestamps_and_reads_a_cut_file(tmp_path):
    path = tmp_path / "lab.xdf"
    with XDFWriter(path) as w:  # LabRecorder may omit timestamps of regular samples (byte 0)
        w.add_stream(1, "EEG", "EEG", 2, 100.0, "double64")
        w.add_stream(2, "Markers", "Markers", 1, 0.0, "string")
        w.write_samples(1, np.arange(10.0).reshape(5, 2), 10.0 + np.arange(5) * 0.01)
        w.write_samples(2, [["a"], ["b"]], [10.0, 10.02])
    raw = path.read_bytes()
    from closedloop.recording.xdf import TAG_SAMPLES, chunk_bytes, encode_varlen

    samples = [(0, None, 1.0), (0, None, 2.0), (8, 20.0, 3.0), (0, None, 4.0)]
    content = encode_varlen(4) + b"".join(
        bytes([b]) + (np.float64(t).tobytes() if t else b"") + np.array([v, -v]).tobytes() for b, t, v in samples
    )
    extra = chunk_bytes(TAG_SAMPLES, content, stream_id=1)
    path.write_bytes(raw + extra)
    ref, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    ref = {s["info"]["stream_id"]: s for s in ref}
    reader = XDFReader(path)
    values, stamps = reader.read_stream(1)
    np.testing.assert_array_equal(values, ref[1]["time_series"])
    np.testing.assert_array_equal(stamps, ref[1]["time_stamps"])
    assert reader.streams[2].strings == [["a"], ["b"]]
    # cut inside the last chunk: the reader stops at the last whole chunk and says so
    path.write_bytes(raw + extra[:-3])
    cut = XDFReader(path)
    assert cut.truncated and "runs past the end" in cut.truncated
    assert cut.read_stream(1)[0].shape == (5, 2)


@pytest.mark.lsl
def test_sigkilled_live_session_leaves_a_readable_file(tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        from closedloop.lslconfig import configure_lsl
        configure_lsl()
        from pathlib import Path
        from closedloop.config import load_pipeline
        from closedloop.live.runtime import LiveSession
        resolved = load_pipeline({str(REPO / "pipelines" / "alpha_tacs.toml")!r}, {{"recording.report": False}})
        def progress(message):
            if message == "running":
                print("ready", flush=True)
        LiveSession(resolved, 3600.0, Path({str(out)!r}), show_status=False, on_progress=progress).run()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    path = out / "session.xdf"
    snapshot = tmp_path / "before-the-kill.xdf"
    try:
        assert child.stdout.readline().strip() == "ready"
        # a good part of the session on disk, written while the session runs
        assert wait_for(lambda: path.exists() and path.stat().st_size > 400_000, 60.0)
        shutil.copyfile(path, snapshot)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    path = out / "session.xdf"
    scan = scan_xdf(path)
    assert not scan.ok and 1 in scan.footers_added  # killed: no footers
    reader = XDFReader(path)  # replay needs no repair: it reads up to the last whole chunk
    assert reader.streams[1].sample_count > 0
    report = repair_xdf(path)
    streams, header = load(report.out_path)
    eeg = next(s for s in streams.values() if s["info"]["type"][0] == "EEG")
    # everything flushed before the kill is kept, however slow the machine was
    before = load(repair_xdf(snapshot).out_path)[0]
    before = next(s for s in before.values() if s["info"]["type"][0] == "EEG")
    assert 0 < len(before["time_stamps"]) <= len(eeg["time_stamps"])
    np.testing.assert_array_equal(eeg["time_stamps"][: len(before["time_stamps"])], before["time_stamps"])
    assert len(eeg["time_stamps"]) == report.streams[1].sample_count
    np.testing.assert_array_less(0, np.diff(eeg["time_stamps"]))
    feats = streams["closedloop-features"]
    assert len(feats["time_stamps"]) >= 20
    assert header["info"]["pipeline_json"]
