"""Tests of the XDF recording layer: writer, background recorder, repair.

Files are checked by reading them back with pyxdf (the reader users have),
with raw timestamps (no clock sync, no dejitter) so that values and
timestamps can be compared exactly.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import mne
import numpy as np
import pytest
import pyxdf

from closedloop.recording import (
    Recorder,
    XDFWriter,
    check_writable,
    repair_xdf,
    scan_xdf,
)
from closedloop.recording.xdf import TAG_SAMPLES, chunk_bytes, encode_varlen

REPO = Path(__file__).resolve().parents[2]
EEG_LABELS = ["Fz", "FCz", "Cz", "Pz", "O1", "O2", "C3", "C4"]
MARKERS = ["start", "stim on: 1.5 mA", "<ramp & hold>", "", "Ωμέγα ✓", "stop"]
CLOCK_OFFSET = -0.0125


def load_raw(path):
    """pyxdf streams by id, with raw timestamps."""
    streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["stream_id"]: s for s in streams}, header


def build_session(path, n_eeg=3000, eeg_chunks=(50,), n_feat=60, feat_chunk=7, n_ch=8):
    """Write a session with XDFWriter; return the truth and a write log.

    The log holds, after each write call, ``(file size, {stream id: samples
    written so far})``: the chunk boundaries and what lies before each.
    """
    rng = np.random.default_rng(7)
    eeg = (rng.standard_normal((n_eeg, n_ch)) * 20).astype(np.float32)
    eeg_ts = 1000.0 + np.arange(n_eeg) / 500.0 + rng.normal(0, 1e-4, n_eeg)
    feat = rng.standard_normal((n_feat, 3))
    feat_ts = 1000.0 + np.arange(n_feat) * 0.1 + 0.0123456789
    marker_ts = np.sort(rng.uniform(1000, 1000 + n_eeg / 500, len(MARKERS)))
    channels = [{"label": lab, "unit": "microvolts", "type": "EEG"} for lab in EEG_LABELS[:n_ch]]
    log = []
    counts = {1: 0, 2: 0, 3: 0}
    with XDFWriter(path, {"session": "S01", "operator": "test"}) as w:
        log.append((w.bytes_written, dict(counts)))

        def mark():
            log.append((w.bytes_written, dict(counts)))

        w.add_stream(
            1,
            "EEG-sim",
            "EEG",
            n_ch,
            500.0,
            "float32",
            source_id="sim-eeg",
            channels=channels,
            desc_extra={"reference": "linked mastoids"},
            created_at=999.5,
        )
        mark()
        w.add_stream(
            2,
            "Features",
            "Features",
            3,
            10.0,
            "double64",
            source_id="feat",
            channels=[{"label": n} for n in ("alpha", "theta", "ratio")],
            desc_extra="<window_s>1.0</window_s>",
        )
        mark()
        w.add_stream(3, "Markers", "Markers", 1, 0.0, "string", source_id="mk")
        mark()
        sizes = list(eeg_chunks)
        i = f = m = k = 0
        while i < n_eeg:
            n = sizes[k % len(sizes)]
            k += 1
            w.write_samples(1, eeg[i : i + n], eeg_ts[i : i + n])
            i = min(n_eeg, i + n)
            counts[1] = i
            mark()
            if f < n_feat and feat_ts[f] <= eeg_ts[i - 1]:
                j = min(n_feat, f + feat_chunk)
                w.write_samples(2, feat[f:j], feat_ts[f:j])
                f = counts[2] = j
                mark()
            if m < len(MARKERS) and marker_ts[m] <= eeg_ts[i - 1]:
                w.write_samples(3, [[MARKERS[m]]], marker_ts[m : m + 1])
                m = counts[3] = m + 1
                mark()
            if k % 4 == 1:
                w.write_clock_offset(1, eeg_ts[i - 1], CLOCK_OFFSET)
                mark()
            if k % 8 == 0:
                w.write_boundary()
                mark()
        if f < n_feat:
            w.write_samples(2, feat[f:], feat_ts[f:])
            counts[2] = n_feat
            mark()
        if m < len(MARKERS):
            w.write_samples(3, [[x] for x in MARKERS[m:]], marker_ts[m:])
            counts[3] = len(MARKERS)
            mark()
        for sid in (1, 2, 3):
            w.write_footer(sid)
            mark()
    truth = {
        1: (eeg, eeg_ts),
        2: (feat, feat_ts),
        3: ([[x] for x in MARKERS], marker_ts),
    }
    return truth, log


# -- writer --------------------------------------------------------------------


def test_pyxdf_reads_values_timestamps_headers_footers_exactly(tmp_path):
    path = tmp_path / "session.xdf"
    truth, log = build_session(path, eeg_chunks=(50, 1, 97, 13))
    streams, header = load_raw(path)

    assert header["info"]["version"] == ["1.0"]
    assert header["info"]["session"] == ["S01"]
    eeg = streams[1]
    assert eeg["time_series"].dtype == np.float32
    np.testing.assert_array_equal(eeg["time_series"], truth[1][0])
    np.testing.assert_array_equal(eeg["time_stamps"], truth[1][1])
    feat = streams[2]
    assert feat["time_series"].dtype == np.float64
    np.testing.assert_array_equal(feat["time_series"], truth[2][0])
    np.testing.assert_array_equal(feat["time_stamps"], truth[2][1])
    assert streams[3]["time_series"] == truth[3][0]
    np.testing.assert_array_equal(streams[3]["time_stamps"], truth[3][1])

    info = eeg["info"]
    assert info["name"] == ["EEG-sim"] and info["source_id"] == ["sim-eeg"]
    assert info["nominal_srate"] == ["500.0"] and info["channel_format"] == ["float32"]
    labels = [ch["label"][0] for ch in info["desc"][0]["channels"][0]["channel"]]
    units = {ch["unit"][0] for ch in info["desc"][0]["channels"][0]["channel"]}
    assert labels == EEG_LABELS and units == {"microvolts"}
    assert info["desc"][0]["reference"] == ["linked mastoids"]
    assert feat["info"]["desc"][0]["window_s"] == ["1.0"]

    for sid, (values, stamps) in truth.items():
        footer = streams[sid]["footer"]["info"]
        assert int(footer["sample_count"][0]) == len(values)
        assert float(footer["first_timestamp"][0]) == stamps[0]
        assert float(footer["last_timestamp"][0]) == stamps[-1]

    n_offsets = len(eeg["clock_times"])
    assert n_offsets >= 10
    assert eeg["clock_values"] == [CLOCK_OFFSET] * n_offsets
    assert set(eeg["clock_times"]) <= set(truth[1][1].tolist())
    assert streams[3]["clock_times"] == []
    assert scan_xdf(path).ok


def test_default_pyxdf_load_applies_recorded_clock_offsets(tmp_path):
    path = tmp_path / "session.xdf"
    truth, _ = build_session(path)
    streams, _ = pyxdf.load_xdf(str(path))  # clock sync and dejitter on
    by_id = {s["info"]["stream_id"]: s for s in streams}
    np.testing.assert_array_equal(by_id[1]["time_series"], truth[1][0])
    # timestamps are moved by the recorded offset (dejitter smooths the 0.1 ms jitter)
    np.testing.assert_allclose(by_id[1]["time_stamps"], truth[1][1] + CLOCK_OFFSET, atol=1e-3)
    assert by_id[1]["info"]["effective_srate"] == pytest.approx(500.0, rel=1e-3)
    np.testing.assert_array_equal(by_id[2]["time_series"], truth[2][0])
    assert by_id[3]["time_series"] == truth[3][0]


def test_pyxdf_output_turns_into_mne_raw_with_labels(tmp_path):
    path = tmp_path / "session.xdf"
    truth, _ = build_session(path, n_eeg=1000)
    streams, _ = load_raw(path)
    eeg = streams[1]
    labels = [ch["label"][0] for ch in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    sfreq = float(eeg["info"]["nominal_srate"][0])
    info = mne.create_info(labels, sfreq, ch_types="eeg")
    raw = mne.io.RawArray(eeg["time_series"].T.astype(np.float64) * 1e-6, info, verbose=False)  # µV -> V
    assert raw.ch_names == EEG_LABELS
    assert raw.info["sfreq"] == 500.0
    np.testing.assert_array_equal(raw.get_data(), truth[1][0].T.astype(np.float64) * 1e-6)


def test_writer_uses_smallest_length_field_and_validates(tmp_path):
    assert encode_varlen(255) == b"\x01\xff"
    assert encode_varlen(256) == b"\x04\x00\x01\x00\x00"
    assert encode_varlen(2**32) == b"\x08" + (2**32).to_bytes(8, "little")
    small = chunk_bytes(5, b"x" * 16)
    assert small[0] == 1 and small[1] == 18
    big = chunk_bytes(3, b"x" * 300, stream_id=1)
    assert big[0] == 4 and int.from_bytes(big[1:5], "little") == 306

    path = tmp_path / "v.xdf"
    with XDFWriter(path) as w:
        w.add_stream(1, "EEG", "EEG", 4, 250, "float32")
        with pytest.raises(ValueError, match="shape"):
            w.write_samples(1, np.zeros((5, 3)), np.zeros(5))
        with pytest.raises(ValueError, match="shape"):
            w.write_samples(1, np.zeros((5, 4)), np.zeros(4))
        with pytest.raises(ValueError, match="already used"):
            w.add_stream(1, "again", "EEG", 4, 250, "float32")
        with pytest.raises(ValueError, match="channel_format"):
            w.add_stream(2, "bad", "EEG", 4, 250, "float16")
        with pytest.raises(ValueError, match="well-formed"):
            w.add_stream(2, "bad", "EEG", 1, 0, "string", desc_extra="<a>")
        with pytest.raises(KeyError):
            w.write_clock_offset(9, 0.0, 0.0)
        w.write_samples(1, np.zeros((0, 4)), np.zeros(0))  # nothing to write
        assert w.sample_count(1) == 0
    assert scan_xdf(path).ok
    with pytest.raises(FileExistsError):
        XDFWriter(path)  # never overwrite a session by accident
    XDFWriter(path, overwrite=True).close()


# -- repair --------------------------------------------------------------------


def check_repaired_cut(original: bytes, cut: int, log, truth, work: Path):
    """Cut ``original`` at ``cut`` bytes, repair, load, compare with the truth."""
    path = work / "cut.xdf"
    path.write_bytes(original[:cut])
    report = repair_xdf(path)
    streams, _ = load_raw(path)
    header_end = log[0][0]
    if cut < header_end:
        assert report.header_rebuilt
        assert streams == {}
        return report
    kept = report.bytes_before - report.bytes_dropped
    boundary, counts = max((entry for entry in log if entry[0] <= cut), key=lambda e: e[0])
    assert kept == boundary, f"cut at {cut}: kept {kept}, last whole chunk ends at {boundary}"
    assert report.bytes_after == path.stat().st_size
    for sid, (values, stamps) in truth.items():
        if sid not in report.streams:
            assert sid not in streams
            continue
        n = counts[sid]
        assert report.streams[sid].sample_count == n
        got = streams[sid]
        assert int(got["footer"]["info"]["sample_count"][0]) == n
        np.testing.assert_array_equal(got["time_stamps"], stamps[:n])
        if isinstance(values, list):
            assert got["time_series"] == values[:n]
        else:
            np.testing.assert_array_equal(got["time_series"], values[:n])
    return report


def test_repair_every_cut_of_a_small_file_loads_an_exact_prefix(tmp_path):
    src = tmp_path / "small.xdf"
    truth, log = build_session(src, n_eeg=12, eeg_chunks=(5, 3), n_feat=4, feat_chunk=2, n_ch=2)
    original = src.read_bytes()
    assert 1500 < len(original) < 4000
    rebuilt = dropped = 0
    for cut in range(len(original) + 1):
        report = check_repaired_cut(original, cut, log, truth, tmp_path)
        rebuilt += report.header_rebuilt
        dropped += report.bytes_dropped > 0
    assert rebuilt == log[0][0]  # every cut inside the magic or file header
    assert dropped > len(original) // 2


def test_repair_random_cuts_of_a_session_file(tmp_path):
    src = tmp_path / "session.xdf"
    truth, log = build_session(src, eeg_chunks=(50, 1, 97, 13))
    original = src.read_bytes()
    rng = np.random.default_rng(3)
    cuts = rng.integers(log[0][0], len(original), 200)
    for cut in cuts:
        report = check_repaired_cut(original, int(cut), log, truth, tmp_path)
        assert not report.ok


def test_repair_of_intact_file_changes_nothing(tmp_path):
    path = tmp_path / "ok.xdf"
    build_session(path, n_eeg=500)
    before = path.read_bytes()
    report = repair_xdf(path)
    assert report.ok and report.bytes_dropped == 0 and report.footers_added == []
    assert report.chunks_kept > 10 and report.cut_reason is None
    assert path.read_bytes() == before


def test_repair_adds_footers_when_only_footers_are_missing(tmp_path):
    path = tmp_path / "nofooter.xdf"
    w = XDFWriter(path)
    w.add_stream(1, "EEG", "EEG", 2, 100, "int32")
    w.add_stream(2, "Markers", "Markers", 1, 0, "string")
    w.write_samples(1, np.arange(20, dtype=np.int32).reshape(10, 2), np.arange(10) * 0.01)
    w.close_fd()  # as if killed before close()
    report = scan_xdf(path)
    assert not report.ok and report.bytes_dropped == 0 and report.footers_added == [1, 2]
    size = path.stat().st_size
    repair_xdf(path)
    assert path.stat().st_size == report.bytes_after > size
    streams, _ = load_raw(path)
    assert streams[1]["footer"]["info"]["sample_count"] == ["10"]
    assert float(streams[1]["footer"]["info"]["last_timestamp"][0]) == 0.09
    assert streams[2]["footer"]["info"]["sample_count"] == ["0"]
    assert scan_xdf(path).ok


def test_repair_cuts_at_a_samples_chunk_that_does_not_parse(tmp_path):
    path = tmp_path / "bad.xdf"
    w = XDFWriter(path)
    w.add_stream(1, "EEG", "EEG", 8, 500, "float32")
    good = np.ones((4, 8), np.float32)
    w.write_samples(1, good, np.arange(4) / 500)
    w.close_fd()
    size_good = path.stat().st_size
    # a whole chunk, but with 7 channels' worth of values for an 8-channel stream
    content = encode_varlen(2) + b"".join(
        b"\x08" + np.float64(t).tobytes() + np.zeros(7, np.float32).tobytes() for t in (1.0, 1.002)
    )
    with open(path, "ab") as f:
        f.write(chunk_bytes(TAG_SAMPLES, content, stream_id=1))
        f.write(chunk_bytes(TAG_SAMPLES, content, stream_id=1))
    out = tmp_path / "fixed.xdf"
    before = path.read_bytes()
    report = repair_xdf(path, out)
    assert path.read_bytes() == before  # out_path leaves the source alone
    assert report.bytes_dropped == len(before) - size_good
    assert report.cut_reason.startswith(f"chunk at byte {size_good}:")
    streams, _ = load_raw(out)
    np.testing.assert_array_equal(streams[1]["time_series"], good)


def test_repair_counts_deduced_timestamps_like_pyxdf(tmp_path):
    # LabRecorder omits timestamps (byte 0) of regular samples: they follow at 1/rate
    path = tmp_path / "deduced.xdf"
    w = XDFWriter(path)
    w.add_stream(1, "EEG", "EEG", 1, 100, "double64")
    w.close_fd()
    samples = [(8, 5.0, 1.0), (0, None, 2.0), (0, None, 3.0), (8, 7.5, 4.0), (0, None, 5.0)]
    content = encode_varlen(len(samples)) + b"".join(
        bytes([b]) + (np.float64(t).tobytes() if t is not None else b"") + np.float64(v).tobytes()
        for b, t, v in samples
    )
    with open(path, "ab") as f:
        f.write(chunk_bytes(TAG_SAMPLES, content, stream_id=1))
    report = repair_xdf(path)
    streams, _ = load_raw(path)
    np.testing.assert_allclose(streams[1]["time_stamps"], [5.0, 5.01, 5.02, 7.5, 7.51])
    summary = report.streams[1]
    assert summary.sample_count == 5 and summary.first_timestamp == 5.0
    assert summary.last_timestamp == streams[1]["time_stamps"][-1]


def test_repair_refuses_a_file_that_is_not_xdf(tmp_path):
    path = tmp_path / "x.xdf"
    path.write_bytes(b"GDF 2.20 not an xdf file")
    with pytest.raises(ValueError, match="not an XDF file"):
        repair_xdf(path)
    assert path.read_bytes().startswith(b"GDF")


# -- recorder ------------------------------------------------------------------


def test_recorder_writes_streams_added_before_and_after_start(tmp_path):
    path = tmp_path / "rec.xdf"
    rec = Recorder(path, {"session": "R1"}, flush_interval_s=0.05)
    eeg = rec.add_stream("EEG", "EEG", 8, 500, "float32", channels=[{"label": lab} for lab in EEG_LABELS])
    rec.start()
    with pytest.raises(ValueError, match="shape"):
        rec.push(eeg, np.zeros((3, 7), np.float32), np.zeros(3))
    with pytest.raises(TypeError):
        rec.push(eeg, np.zeros((1, 8), complex), [0.0])
    buf = np.empty((10, 8), np.float32)
    stamps = np.empty(10)
    for i in range(100):
        buf[:] = np.arange(i * 80, (i + 1) * 80).reshape(10, 8)
        stamps[:] = (i * 10 + np.arange(10)) / 500
        rec.push(eeg, buf, stamps)  # buffers are reused: the recorder must copy
        if i == 50:
            rec.push_clock_offset(eeg, stamps[-1], 0.25)
            markers = rec.add_stream("Markers", "Markers", 1, 0, "string")
            rec.push(markers, [["halfway"]], [stamps[-1]])
    rec.close()
    assert not rec.running and rec.error is None
    stats = rec.stats
    assert stats.samples_written == {eeg: 1000, markers: 1}
    assert stats.dropped_pushes == 0 and stats.bytes_written == path.stat().st_size
    streams, header = load_raw(path)
    assert header["info"]["session"] == ["R1"]
    np.testing.assert_array_equal(streams[eeg]["time_series"], np.arange(8000).reshape(1000, 8))
    np.testing.assert_array_equal(streams[eeg]["time_stamps"], np.arange(1000) / 500)
    assert streams[eeg]["clock_values"] == [0.25]
    assert streams[markers]["time_series"] == [["halfway"]]
    assert streams[markers]["footer"]["info"]["sample_count"] == ["1"]
    assert scan_xdf(path).ok


def test_recorder_memory_stays_flat(tmp_path):
    rec = Recorder(tmp_path / "mem.xdf", flush_interval_s=0.05)
    sid = rec.add_stream("EEG", "EEG", 8, 500, "float32")
    rec.start()
    buf = np.ones((10, 8), np.float32)
    stamps = np.zeros(10)
    base = np.arange(10) / 500

    def pump(start, n):
        for i in range(start, start + n):
            np.add(base, i * 0.02, out=stamps)
            rec.push(sid, buf, stamps)
            if i % 1000 == 999:
                assert rec.flush()

    tracemalloc.start()
    try:
        pump(0, 2_000)
        gc.collect()
        after_2k = tracemalloc.get_traced_memory()[0]
        pump(2_000, 18_000)
        gc.collect()
        after_20k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    rec.close()
    assert rec.stats.samples_written[sid] == 200_000 and rec.stats.dropped_pushes == 0
    # 18k more pushes carried 5.8 MB of samples; none of it may stay in memory
    assert after_20k - after_2k < 200_000


def test_recorder_counts_drops_when_the_queue_overflows(tmp_path):
    path = tmp_path / "drop.xdf"
    rec = Recorder(path, max_queue=10)
    sid = rec.add_stream("EEG", "EEG", 2, 100, "float64")
    for i in range(50):  # not started: nothing drains the queue, yet push never blocks
        rec.push(sid, np.full((3, 2), float(i)), i * 0.03 + np.arange(3) * 0.01)
    assert rec.stats.dropped_pushes == 40 and rec.stats.dropped_samples == 120
    rec.start()
    rec.close()
    streams, _ = load_raw(path)
    assert streams[sid]["info"]["channel_format"] == ["double64"]  # numpy's name is accepted
    np.testing.assert_array_equal(streams[sid]["time_series"][:, 0], np.repeat(np.arange(10.0), 3))


def test_recorder_exposes_error_when_its_folder_disappears(tmp_path):
    folder = tmp_path / "session"
    folder.mkdir()
    rec = Recorder(folder / "r.xdf", flush_interval_s=0.05)
    sid = rec.add_stream("EEG", "EEG", 2, 100, "float32")
    rec.start()
    rec.push(sid, np.zeros((5, 2)), np.arange(5) * 0.01)
    assert rec.flush() and rec.error is None
    shutil.rmtree(folder)
    rec.push(sid, np.zeros((5, 2)), np.arange(5) * 0.01)
    assert not rec.flush()  # the flush notices the file is gone
    assert isinstance(rec.error, FileNotFoundError)
    assert str(folder) in str(rec.error)
    for _ in range(5):
        rec.push(sid, np.zeros((5, 2)), np.arange(5) * 0.01)  # never raises
    stats = rec.stats
    assert stats.dropped_pushes >= 5 and "FileNotFoundError" in stats.last_error
    rec.close()
    assert not rec.running


def test_recorder_start_fails_clearly_on_an_unwritable_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rec = Recorder(blocker / "r.xdf")
    sid = rec.add_stream("EEG", "EEG", 1, 100, "float32")
    with pytest.raises(OSError) as err:
        rec.start()
    assert rec.error is err.value and str(blocker) in str(err.value)
    rec.push(sid, np.zeros((3, 1)), np.arange(3.0))  # still no exception
    assert rec.stats.dropped_pushes == 1
    rec.close()


def test_recorder_survives_a_full_disk_and_the_file_repairs(tmp_path):
    path = tmp_path / "full.xdf"
    limit = 150_000
    script = textwrap.dedent(f"""
        import resource, signal, sys, time
        import numpy as np
        from closedloop.recording import Recorder
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        rec = Recorder({str(path)!r}, flush_interval_s=0.01)
        sid = rec.add_stream("EEG", "EEG", 16, 1000, "float32")
        rec.start()
        buf = np.empty((100, 16), np.float32)
        t_end = time.monotonic() + 10
        i = 0
        while rec.error is None and time.monotonic() < t_end:
            buf[:] = np.arange(i * 1600, (i + 1) * 1600).reshape(100, 16)
            rec.push(sid, buf, (i * 100 + np.arange(100)) / 1000)
            i += 1
            time.sleep(0.002)
        rec.push(sid, buf, np.arange(100) / 1000)  # after the error: must not raise
        rec.close()
        print(type(rec.error).__name__, getattr(rec.error, "errno", None), rec.stats.dropped_pushes)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    name, err_no, dropped = done.stdout.split()
    assert name == "OSError" and int(err_no) == 27  # EFBIG, like ENOSPC for a full disk
    assert int(dropped) >= 1
    assert path.stat().st_size == limit
    report = repair_xdf(path)
    assert report.footers_added == [1]
    streams, _ = load_raw(path)
    n = report.streams[1].sample_count
    assert n > 0
    np.testing.assert_array_equal(streams[1]["time_series"], np.arange(n * 16).reshape(n, 16))


def test_sigkill_leaves_a_file_holding_data_until_shortly_before_the_kill(tmp_path):
    path = tmp_path / "killed.xdf"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from closedloop.recording import Recorder
        rec = Recorder({str(path)!r}, flush_interval_s=0.2, boundary_interval_s=0.5)
        eeg = rec.add_stream("EEG", "EEG", 8, 500, "float32")
        mk = rec.add_stream("Markers", "Markers", 1, 0, "string")
        rec.start()
        buf = np.empty((10, 8), np.float32)
        cols = np.arange(8, dtype=np.float32) / 8
        print("ready", flush=True)
        t0 = time.monotonic()
        i = 0
        while True:
            buf[:] = np.arange(i, i + 10, dtype=np.float32)[:, None] + cols
            rec.push(eeg, buf, t0 + np.arange(i, i + 10) / 500)
            if i % 500 == 0:
                rec.push(mk, [[f"second {{i // 500}}"]], [t0 + i / 500])
            i += 10
            time.sleep(max(0.0, t0 + i / 500 - time.monotonic()))
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        t_kill = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    scan = scan_xdf(path)
    assert scan.footers_added == [1, 2]  # killed: no footers, maybe a cut chunk
    repair_xdf(path)
    streams, _ = load_raw(path)
    eeg = streams[1]
    n = len(eeg["time_stamps"])
    assert eeg["time_stamps"][-1] >= t_kill - 1.0
    expected = np.arange(n, dtype=np.float32)[:, None] + np.arange(8, dtype=np.float32) / 8
    np.testing.assert_array_equal(eeg["time_series"], expected)
    np.testing.assert_array_equal(np.diff(eeg["time_stamps"]) > 0, True)
    assert streams[2]["time_series"][0] == ["second 0"]


# -- check_writable -------------------------------------------------------------


def test_check_writable_names_the_folder(tmp_path):
    check_writable(tmp_path / "new" / "sub", min_free_bytes=0)
    assert (tmp_path / "new" / "sub").is_dir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=str(blocker / "rec")):
        check_writable(blocker / "rec")
    with pytest.raises(OSError, match=rf"{tmp_path}.*MB free"):
        check_writable(tmp_path, min_free_bytes=10**18)
    with pytest.raises(ValueError):
        check_writable(tmp_path, min_free_bytes=-1)
