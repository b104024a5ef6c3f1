"""Tests of the XDF recording layer: writer and background recorder (repair: test_repair.py).

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
import tracemalloc
from pathlib import Path

import mne
import numpy as np
import pytest
import pyxdf
from adapter_helpers import wait_for
from xdf_helpers import CLOCK_OFFSET, EEG_LABELS, build_session, load_raw  # noqa: E402 (tests/recording on sys.path)

from closedloop.recording import (
    Recorder,
    XDFWriter,
    check_writable,
    repair_xdf,
    scan_xdf,
)
from closedloop.recording.reader import XDFReader
from closedloop.recording.xdf import (
    TAG_SAMPLES,
    chunk_bytes,
    encode_samples,
    encode_varlen,
    make_spec,
    samples_chunk,
)

REPO = Path(__file__).resolve().parents[2]


def test_reader_joins_chunks_into_blocks_of_at_least_min_samples(tmp_path):
    # chunks with explicit timestamps (our writer, LabRecorder) and one with omitted (deduced) timestamps
    path = tmp_path / "mixed.xdf"
    rng = np.random.default_rng(4)
    sizes = [50, 1, 97, 13, 200, 3]
    values = rng.standard_normal((sum(sizes) + 3, 3)).astype(np.float32)
    stamps = 10.0 + np.arange(len(values)) / 100.0
    w = XDFWriter(path)
    w.add_stream(1, "EEG", "EEG", 3, 100.0, "float32")
    w.add_stream(2, "M", "Markers", 1, 0.0, "string")
    a = 0
    for i, n in enumerate(sizes):
        w.write_samples(1, values[a : a + n], stamps[a : a + n])
        w.write_samples(2, [[f"m{i}"]], [stamps[a]])  # another stream's chunk in between
        a += n
    w.close_fd()
    deduced = [8, 0, 0]  # the last 3 samples: one stamped, two deduced (+1/rate)
    content = encode_varlen(3) + b"".join(
        bytes([b]) + (np.float64(stamps[a + j]).tobytes() if b else b"") + values[a + j].tobytes()
        for j, b in enumerate(deduced)
    )
    with open(path, "ab") as f:
        f.write(chunk_bytes(TAG_SAMPLES, content, stream_id=1))
    reader = XDFReader(path)
    chunked = list(reader.iter_samples(1))
    assert [len(t) for _, t in chunked] == [*sizes, 3]
    for min_samples in (1, 60, 150, 10**6):
        blocks = list(reader.iter_samples(1, min_samples))
        np.testing.assert_array_equal(np.concatenate([v for v, _ in blocks]), values)
        np.testing.assert_allclose(np.concatenate([t for _, t in blocks]), stamps, rtol=0, atol=1e-9)
        ends = np.cumsum([len(t) for _, t in blocks])
        assert set(ends) <= set(np.cumsum([*sizes, 3]))  # whole chunks only
        assert all(len(t) >= min_samples for _, t in blocks[:-1]) and ends[-1] == len(values)
        for v, t in blocks:  # new arrays: callers may keep or change them
            assert v.flags.c_contiguous and v.flags.writeable and t.flags.writeable
        # picked channels (in the asked order) are the same columns, in the same blocks, from either layout
        picks = np.array([2, 0])
        picked = list(reader.iter_samples(1, min_samples, picks))
        assert [len(t) for _, t in picked] == [len(t) for _, t in blocks]
        for (v, t), (pv, pt) in zip(blocks, picked, strict=True):
            np.testing.assert_array_equal(pv, v[:, picks])
            np.testing.assert_array_equal(pt, t)
            assert pv.flags.c_contiguous and pv.flags.writeable and pt.flags.writeable
    assert [len(t) for _, t in reader.iter_samples(1, 60)] == [148, 213, 6]


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


@pytest.mark.parametrize(
    ("fmt", "given", "code"),
    [
        ("float32", np.float32, "<f4"),
        ("float32", np.float64, "<f4"),
        ("double64", np.float64, "<f8"),
        ("int16", np.int16, "<i2"),
        ("int32", np.int16, "<i4"),
        ("int64", ">i8", "<i8"),
    ],
)
def test_samples_chunks_hold_the_xdf_records_byte_for_byte_however_the_samples_are_split(tmp_path, fmt, given, code):
    # reference from the XDF 1.0 layout: [varlen length][tag 3][stream id u32][varlen count], then per sample
    # [timestamp byte 8][f8 timestamp][values], all little-endian; values cast to the stream's format
    rng = np.random.default_rng(11)
    n, m = 300, 5
    data = (rng.standard_normal((n, m)) * 1000).astype(given)
    stamps = 1e5 + np.cumsum(rng.uniform(0.001, 0.003, n))
    values = data.astype(code)
    records = b"".join(b"\x08" + stamps[i].astype("<f8").tobytes() + values[i].tobytes() for i in range(n))
    content = (7).to_bytes(4, "little") + b"\x04" + n.to_bytes(4, "little") + records  # n = 300 > 255
    expected = b"\x04" + (2 + len(content)).to_bytes(4, "little") + (3).to_bytes(2, "little") + content
    spec = make_spec(7, "s", m, 100.0, fmt)
    assert encode_samples(spec, data, stamps) == (content[4:], n)
    assert samples_chunk(spec, [(data, stamps)]).tobytes() == expected
    cuts = [(data[a:b], stamps[a:b]) for a, b in ((0, 1), (1, 120), (120, 120), (120, n))]
    assert samples_chunk(spec, [p for p in cuts if len(p[1])]).tobytes() == expected
    with XDFWriter(tmp_path / "a.xdf") as one, XDFWriter(tmp_path / "b.xdf") as parts:
        for w in (one, parts):
            w.add_stream(7, "s", "EEG", m, 100.0, fmt)
        starts = one.bytes_written, parts.bytes_written
        one.write_samples(7, data, stamps)
        parts.write_sample_parts(7, cuts)
        assert one.sample_count(7) == parts.sample_count(7) == n
    for name, start in zip(("a.xdf", "b.xdf"), starts):
        assert (tmp_path / name).read_bytes()[start : start + len(expected)] == expected
    streams, _ = pyxdf.load_xdf(str(tmp_path / "b.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    np.testing.assert_array_equal(streams[0]["time_series"], values)
    np.testing.assert_array_equal(streams[0]["time_stamps"], stamps)


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


def test_recorder_puts_data_on_disk_as_it_goes_not_only_at_close(tmp_path, monkeypatch):
    # an offline replay feeds the recorder as fast as the CPU goes, for far less than a boundary interval:
    # the file must still be fsync'ed every sync_interval_bytes while samples arrive, not all at close
    real_fsync, synced, closing = os.fsync, [], []

    def fsync(fd):
        synced.append((os.fstat(fd).st_size, bool(closing)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "synced.xdf"
    interval = 100_000
    rec = Recorder(
        path,
        flush_interval_s=60.0,
        boundary_interval_s=60.0,
        block_when_full=True,
        max_queue=4,
        max_batch_samples=200,  # a chunk of 53 kB per push
        sync_interval_bytes=interval,
    )
    sid = rec.add_stream("EEG", "EEG", 64, 1000, "float32")
    rec.start()
    values = np.arange(200 * 64, dtype=np.float32).reshape(200, 64)
    for i in range(100):  # 20,000 samples of 265 bytes: 5.3 MB
        rec.push(sid, values, (i * 200 + np.arange(200)) / 1000)
    closing.append(True)
    rec.close()
    during = [size for size, at_close in synced if not at_close]
    assert len(during) >= 40, synced  # ~50 (every second chunk); the queue holds at most 4 pushes at the end
    assert all(b - a >= interval for a, b in zip(during, during[1:]))
    assert synced[-1] == (path.stat().st_size, True)  # and once more when the footers are written
    streams, _ = load_raw(path)
    np.testing.assert_array_equal(streams[sid]["time_series"], np.tile(values, (100, 1)))
    with pytest.raises(ValueError, match="sync_interval_bytes"):
        Recorder(tmp_path / "bad.xdf", sync_interval_bytes=0)


def test_recorder_push_handed_over_arrays_are_checked_and_cast_but_not_copied(tmp_path):
    path = tmp_path / "owned.xdf"
    rec = Recorder(path, flush_interval_s=0.05)
    sid = rec.add_stream("F", "Features", 3, 0, "double64")
    with pytest.raises(ValueError, match="shape"):
        rec.push(sid, np.zeros((2, 4)), np.zeros(2), copy=False)
    with pytest.raises(TypeError):
        rec.push(sid, np.zeros((1, 3), complex), [0.0], copy=False)
    rows = [np.arange(i * 6, i * 6 + 6, dtype=np.float64).reshape(2, 3) for i in range(50)]
    stamps = [np.array([2.0 * i, 2.0 * i + 1]) for i in range(50)]
    for r, t in zip(rows, stamps):
        rec.push(sid, r, t, copy=False)
    rec.push(sid, np.array([[1, 2, 3]], dtype=np.int32), [100.0], copy=False)  # another dtype: cast (a new array)
    rec.push(sid, rows[0], stamps[0])  # by default a copy
    queued = list(rec._queue.queue)  # not started yet: everything still waits
    assert np.shares_memory(queued[0][2], rows[0]) and np.shares_memory(queued[0][3], stamps[0])
    assert queued[50][2].dtype == np.float64 and not np.shares_memory(queued[51][2], rows[0])
    rec.start()
    rec.close()
    streams, _ = load_raw(path)
    expected = np.vstack([*rows, [[1.0, 2.0, 3.0]], rows[0]])
    np.testing.assert_array_equal(streams[sid]["time_series"], expected)
    np.testing.assert_array_equal(streams[sid]["time_stamps"], [*np.arange(100.0), 100.0, 0.0, 1.0])


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


def run_until_the_disk_is_full(body: str, limit: int) -> list[str]:
    """Run ``body`` in a child whose files may not grow past ``limit`` bytes (EFBIG, as ENOSPC on a full disk)."""
    script = textwrap.dedent(f"""
        import resource, signal, sys, time
        import numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    """) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


FOOTER_ROOM = 400  # a footer chunk is ~150 bytes: below this much room they may not all fit


def test_a_full_disk_leaves_whole_chunks_and_the_footers(tmp_path):
    path = tmp_path / "full.xdf"
    limit = 1_000_000
    name, err_no, dropped, footers, close_s = run_until_the_disk_is_full(
        f"""
        from closedloop.recording import Recorder
        rec = Recorder({str(path)!r}, flush_interval_s=0.01)
        sid = rec.add_stream("EEG", "EEG", 16, 1000, "float32")
        mk = rec.add_stream("Markers", "Markers", 1, 0, "string")
        rec.start()
        buf = np.empty((2000, 16), np.float32)  # ~146 kB per push: the failing write is cut far from its end
        t_end = time.monotonic() + 20
        i = 0
        while rec.error is None and time.monotonic() < t_end:
            buf[:] = np.arange(i * 32000, (i + 1) * 32000).reshape(2000, 16)
            rec.push(sid, buf, (i * 2000 + np.arange(2000)) / 1000)
            rec.push(mk, [[f"block {{i}}"]], [i * 2.0])
            rec.flush()
            i += 1
        rec.push(sid, buf, np.arange(2000) / 1000)  # after the error: must not raise
        t0 = time.monotonic()
        rec.close()
        print(type(rec.error).__name__, getattr(rec.error, "errno", None), rec.stats.dropped_pushes,
              rec.stats.footers_written, time.monotonic() - t0)
        """,
        limit,
    )
    assert name == "OSError" and int(err_no) == 27  # EFBIG, like ENOSPC for a full disk
    assert int(dropped) >= 1 and float(close_s) < 2.0
    size = path.stat().st_size
    assert size < limit
    scan = scan_xdf(path)
    assert scan.bytes_dropped == 0  # the partial chunk was cut off: only whole chunks remain
    if footers == "True":
        assert scan.ok  # nothing to repair: pyxdf reads it as it is
    else:
        assert limit - size < FOOTER_ROOM and scan.footers_added
    streams, _ = load_raw(path if scan.ok else repair_xdf(path).out_path)
    n = len(streams[1]["time_stamps"])
    assert n >= 2000 * 5
    np.testing.assert_array_equal(streams[1]["time_series"], np.arange(n * 16).reshape(n, 16))
    assert int(streams[1]["footer"]["info"]["sample_count"][0]) == n


def test_session_close_after_a_full_disk_returns_quickly_keeps_the_error_and_writes_the_footers(tmp_path):
    folder = tmp_path / "session"
    out = run_until_the_disk_is_full(
        f"""
        import json
        from pathlib import Path
        from closedloop.config import load_pipeline
        from closedloop.recording import SessionRecording
        from session_helpers import eeg_desc
        from closedloop.synthetic.eeg import SyntheticEEG
        gen = SyntheticEEG(n_channels=32)
        resolved = load_pipeline({str(REPO / "pipelines" / "alpha_tacs.toml")!r})
        rec = SessionRecording({str(folder)!r}, resolved, eeg_desc(gen), ("alpha",), min_free_bytes=0)
        data = np.ones((5000, 32), np.float32)  # 685 kB per chunk
        t_end = time.monotonic() + 20
        i = 0
        while rec.error is None and time.monotonic() < t_end:
            rec.on_chunk(data, 100.0 + (i * 5000 + np.arange(5000)) / 500)
            rec.recorder.flush()
            i += 1
        rec.on_chunk(data, np.arange(5000.0))  # never raises
        t0 = time.monotonic()
        rec.close({{"frames": 0}})  # never raises
        print(time.monotonic() - t0, rec.summary_fields()["recording"]["error"].split(":")[0],
              rec.recorder.stats.footers_written)
        """,
        2_000_000,
    )
    close_s, error, footers = out
    assert float(close_s) < 5.0 and error == "OSError" and footers == "True"
    path = folder / "session.xdf"
    assert scan_xdf(path).ok
    streams, _ = load_raw(path)
    assert all("footer" in s for s in streams.values()) and len(streams) >= 8


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
    sizes: list[int] = []

    def flushed_while_running() -> bool:
        size = path.stat().st_size if path.exists() else 0
        if not sizes or size != sizes[-1]:
            sizes.append(size)
        return len(sizes) >= 5 and size > 30_000  # written in several flushes; ~0.7 s of EEG (41 bytes a sample)

    snapshot = tmp_path / "before-the-kill.xdf"
    try:
        assert child.stdout.readline().strip() == "ready"
        assert wait_for(flushed_while_running, 60.0), sizes
        shutil.copyfile(path, snapshot)  # what was on disk while the child still ran
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    scan = scan_xdf(path)
    assert scan.footers_added == [1, 2]  # killed: no footers, maybe a cut chunk
    streams, _ = load_raw(repair_xdf(path).out_path)
    eeg = streams[1]
    n = len(eeg["time_stamps"])
    # everything the periodic flushes had written before the kill is kept (however slow the machine was)
    before = load_raw(repair_xdf(snapshot).out_path)[0][1]
    assert 0 < len(before["time_stamps"]) <= n
    np.testing.assert_array_equal(eeg["time_stamps"][: len(before["time_stamps"])], before["time_stamps"])
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
