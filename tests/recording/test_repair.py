"""Repair never loses data: damaged XDF files keep every valid chunk, and the original is never touched.

Repaired files are compared with the undamaged original through pyxdf (raw
timestamps, so values and timestamps compare exactly) and closedloop's own
reader.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from xdf_helpers import build_session, load_raw  # noqa: E402 (tests/recording on sys.path)

from closedloop.cli import app
from closedloop.recording import XDFReader, XDFWriter, repair_xdf, repaired_path, scan_xdf
from closedloop.recording.repair import backup_path
from closedloop.recording.xdf import TAG_SAMPLES, chunk_bytes, encode_varlen

REPO = Path(__file__).resolve().parents[2]


def chunk_ranges(path: Path) -> list[tuple[int, int, int, int]]:
    """(start, end, tag, stream id) of every chunk of an intact file."""
    raw = path.read_bytes()
    out, pos = [], 4
    while pos < len(raw):
        width = raw[pos]
        length = int.from_bytes(raw[pos + 1 : pos + 1 + width], "little")
        start = pos + 1 + width
        tag = int.from_bytes(raw[start : start + 2], "little")
        sid = int.from_bytes(raw[start + 2 : start + 6], "little") if tag in (2, 3, 4, 6) else -1
        out.append((pos, start + length, tag, sid))
        pos = start + length
    return out


def assert_same_streams(got: Path, ref: Path, skip: dict[int, slice] | None = None) -> None:
    """Streams of ``got`` equal those of ``ref`` (through pyxdf and XDFReader), minus ``skip`` samples per id."""
    skip = skip or {}
    a, _ = load_raw(got)
    b, _ = load_raw(ref)
    assert sorted(a) == sorted(b)
    for sid, sb in b.items():
        sa = a[sid]
        assert sa["info"]["name"] == sb["info"]["name"]
        keep = np.ones(len(sb["time_stamps"]), bool)
        if sid in skip:
            keep[skip[sid]] = False
        np.testing.assert_array_equal(sa["time_stamps"], sb["time_stamps"][keep])
        if isinstance(sb["time_series"], list):
            assert sa["time_series"] == [row for row, k in zip(sb["time_series"], keep) if k]
        else:
            np.testing.assert_array_equal(sa["time_series"], sb["time_series"][keep])
        assert sa["clock_values"] == sb["clock_values"]
        assert int(sa["footer"]["info"]["sample_count"][0]) == int(keep.sum())
    ours, theirs = XDFReader(got), XDFReader(ref)
    assert ours.truncated is None
    for sid, stream in theirs.streams.items():
        if stream.channel_format == "string":
            continue
        v_ref, t_ref = theirs.read_stream(sid)
        keep = np.ones(len(t_ref), bool)
        if sid in skip:
            keep[skip[sid]] = False
        v, t = ours.read_stream(sid)
        np.testing.assert_array_equal(t, t_ref[keep])
        np.testing.assert_array_equal(v, v_ref[keep])


# -- a cut file ------------------------------------------------------------------------------


def check_repaired_cut(original: bytes, cut: int, log, truth, work: Path):
    """Cut ``original`` at ``cut`` bytes, repair, load, compare with the truth."""
    path = work / "cut.xdf"
    path.write_bytes(original[:cut])
    out = repaired_path(path)
    out.unlink(missing_ok=True)
    report = repair_xdf(path)
    assert path.read_bytes() == original[:cut]  # never modified
    if report.ok:  # whole: the original, or just the file header (no stream yet)
        assert cut in (len(original), log[0][0]) and report.out_path is None and not out.exists()
        return report
    assert report.out_path == str(out)
    streams, _ = load_raw(out)
    header_end = log[0][0]
    if cut < header_end:
        assert report.header_rebuilt
        assert streams == {}
        return report
    kept = report.bytes_before - report.bytes_dropped
    boundary, counts = max((entry for entry in log if entry[0] <= cut), key=lambda e: e[0])
    assert kept == boundary, f"cut at {cut}: kept {kept}, last whole chunk ends at {boundary}"
    assert report.bytes_after == out.stat().st_size
    if cut > boundary:
        assert [(d.start, d.end) for d in report.dropped] == [(boundary, cut)]
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


def test_repair_of_intact_file_writes_nothing(tmp_path):
    path = tmp_path / "ok.xdf"
    build_session(path, n_eeg=500)
    before = path.read_bytes()
    report = repair_xdf(path)
    assert report.ok and report.bytes_dropped == 0 and report.footers_added == [] and report.dropped == []
    assert report.chunks_kept > 10 and report.cut_reason is None and report.out_path is None
    assert path.read_bytes() == before and not repaired_path(path).exists()


def test_repair_adds_footers_when_only_footers_are_missing(tmp_path):
    path = tmp_path / "nofooter.xdf"
    w = XDFWriter(path)
    w.add_stream(1, "EEG", "EEG", 2, 100, "int32")
    w.add_stream(2, "Markers", "Markers", 1, 0, "string")
    w.write_samples(1, np.arange(20, dtype=np.int32).reshape(10, 2), np.arange(10) * 0.01)
    w.close_fd()  # as if killed before close()
    before = path.read_bytes()
    report = scan_xdf(path)
    assert not report.ok and report.bytes_dropped == 0 and report.footers_added == [1, 2]
    assert repair_xdf(path).out_path == str(tmp_path / "nofooter.repaired.xdf")
    out = repaired_path(path)
    assert path.read_bytes() == before
    assert out.stat().st_size == report.bytes_after > len(before)
    streams, _ = load_raw(out)
    assert streams[1]["footer"]["info"]["sample_count"] == ["10"]
    assert float(streams[1]["footer"]["info"]["last_timestamp"][0]) == 0.09
    assert streams[2]["footer"]["info"]["sample_count"] == ["0"]
    assert scan_xdf(out).ok


def test_a_samples_chunk_that_does_not_parse_is_skipped_and_what_follows_kept(tmp_path):
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
    bad = chunk_bytes(TAG_SAMPLES, content, stream_id=1)
    later = np.full((3, 8), 2.0, np.float32)
    with open(path, "ab") as f:
        f.write(bad)
        f.write(chunk_bytes(TAG_SAMPLES, encode_varlen(3) + _records(later, [2.0, 2.002, 2.004]), stream_id=1))
    out = tmp_path / "fixed.xdf"
    before = path.read_bytes()
    report = repair_xdf(path, out)
    assert path.read_bytes() == before  # out_path leaves the source alone
    assert [(d.start, d.end) for d in report.dropped] == [(size_good, size_good + len(bad))]
    assert report.cut_reason.startswith(f"chunk at byte {size_good} (tag 3, stream 1):")
    assert "invalid timestamp byte" in report.cut_reason  # 7 channels: the 2nd sample starts off
    streams, _ = load_raw(out)
    np.testing.assert_array_equal(streams[1]["time_series"], np.concatenate([good, later]))
    np.testing.assert_array_equal(streams[1]["time_stamps"], [0, 0.002, 0.004, 0.006, 2.0, 2.002, 2.004])


def _records(values: np.ndarray, stamps) -> bytes:
    return b"".join(b"\x08" + np.float64(t).tobytes() + row.tobytes() for t, row in zip(stamps, values))


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
    streams, _ = load_raw(report.out_path)
    np.testing.assert_allclose(streams[1]["time_stamps"], [5.0, 5.01, 5.02, 7.5, 7.51])
    summary = report.streams[1]
    assert summary.sample_count == 5 and summary.first_timestamp == 5.0
    assert summary.last_timestamp == streams[1]["time_stamps"][-1]


def test_repair_refuses_a_file_that_is_not_xdf(tmp_path):
    path = tmp_path / "x.xdf"
    path.write_bytes(b"GDF 2.20 not an xdf file" * 10)
    with pytest.raises(ValueError, match="not an XDF file"):
        repair_xdf(path)
    assert path.read_bytes().startswith(b"GDF") and not repaired_path(path).exists()


# -- damage in the middle ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    """A session.xdf as closedloop records it (file header with the resolved pipeline), and its chunks."""
    from session_helpers import record_session

    from closedloop.config import load_pipeline

    folder = tmp_path_factory.mktemp("session")
    rec, _, _ = record_session(folder, load_pipeline(REPO / "pipelines" / "alpha_tacs.toml"), seconds=6.0)
    rec.close({})
    path = folder / "session.xdf"
    return path, chunk_ranges(path)


def test_360_random_bytes_in_the_file_header_lose_nothing_else(session_file, tmp_path):
    original, chunks = session_file
    raw = original.read_bytes()
    header_end = chunks[0][1]
    assert chunks[0][2] == 1 and header_end > 2000  # the resolved pipeline is in the file header
    damaged = bytearray(raw)
    at = 700  # inside the file header XML (the pipeline JSON)
    damaged[at : at + 360] = np.random.default_rng(12).integers(0, 256, 360, dtype=np.uint8).tobytes()
    path = tmp_path / "session.xdf"
    path.write_bytes(bytes(damaged))
    report = repair_xdf(path)
    assert path.read_bytes() == bytes(damaged)
    assert report.header_rebuilt and report.out_path == str(tmp_path / "session.repaired.xdf")
    assert [(d.start, d.end) for d in report.dropped] == [(4, header_end)]
    assert "file header" in report.dropped[0].reason
    assert report.bytes_dropped == header_end - 4 and report.footers_added == []
    assert report.chunks_kept == len(chunks)  # every other chunk, and the rebuilt header
    assert_same_streams(Path(report.out_path), original)
    # the header elements the damage did not reach are recovered
    _, header = load_raw(report.out_path)
    info = header["info"]
    _, ref_header = load_raw(original)
    for key in ("closedloop_version", "session_id", "pipeline_toml", "device_profile_json"):
        assert info[key] == ref_header["info"][key], key
    assert "pipeline_json" not in info  # the damaged element is left out, not half-kept
    assert "rebuilt" in info["closedloop_repair"][0]
    assert scan_xdf(report.out_path).ok


@pytest.mark.parametrize("where", ["content", "head"])
def test_a_corrupted_chunk_in_the_middle_is_the_only_loss(session_file, tmp_path, where):
    original, chunks = session_file
    raw = original.read_bytes()
    eeg = [c for c in chunks if c[2] == 3 and c[3] == 1]
    start, end, _, _ = eeg[len(eeg) // 2]
    n_before = sum(_n_samples(raw, c) for c in eeg[: len(eeg) // 2])
    n_lost = _n_samples(raw, eeg[len(eeg) // 2])
    damaged = bytearray(raw)
    if where == "content":  # the length is intact: the chunk's own length finds the next one
        damaged[start + 12] = 0x77  # a sample's timestamp byte (1 + 4 length, 2 tag, 4 id, varlen)
    else:  # the head itself: the length is garbage, the walk scans forward
        damaged[start : start + 9] = b"\x08\xff\xff\xff\x7f\x00\x00\x00\x00"
    path = tmp_path / "session.xdf"
    path.write_bytes(bytes(damaged))
    report = repair_xdf(path)
    lost = [d for d in report.dropped if "replaced" not in d.reason]
    assert [(d.start, d.end) for d in lost] == [(start, end)], report.dropped
    assert report.footers_replaced == [1] and report.footers_added == [1]
    assert_same_streams(Path(report.out_path), original, skip={1: slice(n_before, n_before + n_lost)})


def _n_samples(raw: bytes, chunk) -> int:
    start = chunk[0] + 1 + raw[chunk[0]] + 6
    width = raw[start]
    return int.from_bytes(raw[start + 1 : start + 1 + width], "little")


def test_a_damaged_stream_header_loses_that_stream_only_and_says_so(session_file, tmp_path):
    original, chunks = session_file
    raw = original.read_bytes()
    header = next(c for c in chunks if c[2] == 2 and c[3] == 2)  # the features stream
    damaged = bytearray(raw)
    damaged[header[0] + 40] = 0x00  # a NUL inside the XML
    path = tmp_path / "session.xdf"
    path.write_bytes(bytes(damaged))
    report = repair_xdf(path)
    assert 2 not in report.streams and 1 in report.streams
    orphans = [d for d in report.dropped if "stream 2, whose header is missing" in d.reason]
    assert len(orphans) == sum(1 for c in chunks if c[3] == 2 and c[2] != 2)
    streams, _ = load_raw(report.out_path)
    ref, _ = load_raw(original)
    assert 2 not in streams and sorted(streams) == sorted(set(ref) - {2})
    for sid in streams:
        np.testing.assert_array_equal(streams[sid]["time_stamps"], ref[sid]["time_stamps"])


# -- fuzzing ---------------------------------------------------------------------------------


def _damage(raw: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(0, 6)
    b = bytearray(raw)
    pos = int(rng.integers(0, len(b)))
    if kind == 0:  # overwrite with random bytes
        k = int(rng.integers(1, 400))
        b[pos : pos + k] = rng.integers(0, 256, len(b[pos : pos + k]), dtype=np.uint8).tobytes()
    elif kind == 1:  # a few bit flips
        for p in rng.integers(0, len(b), int(rng.integers(1, 6))):
            b[int(p)] ^= 1 << int(rng.integers(0, 8))
    elif kind == 2:  # zeroed span (a bad sector)
        k = int(rng.integers(1, 3000))
        b[pos : pos + k] = bytes(len(b[pos : pos + k]))
    elif kind == 3:  # bytes lost
        del b[pos : pos + int(rng.integers(1, 500))]
    elif kind == 4:  # bytes inserted
        b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 500)), dtype=np.uint8).tobytes()
    else:  # overwritten, then cut
        b[pos : pos + 50] = rng.integers(0, 256, len(b[pos : pos + 50]), dtype=np.uint8).tobytes()
        del b[int(rng.integers(pos, len(b) + 1)) :]
    return bytes(b)


def test_random_damage_never_raises_never_loses_the_intact_prefix_and_loads(tmp_path, caplog):
    src = tmp_path / "src.xdf"
    truth, log = build_session(src, n_eeg=600, eeg_chunks=(50, 1, 97, 13), n_feat=30, feat_chunk=4)
    raw = src.read_bytes()
    path = tmp_path / "damaged.xdf"
    out = repaired_path(path)
    kinds = {"dropped": 0, "header": 0, "magic": 0}
    caplog.set_level(logging.WARNING, logger="pyxdf")
    for seed in range(300):
        damaged = _damage(raw, np.random.default_rng(seed))
        path.write_bytes(damaged)
        out.unlink(missing_ok=True)
        diff = next((i for i, (x, y) in enumerate(zip(raw, damaged)) if x != y), min(len(raw), len(damaged)))
        prefix = max((e for e in log if e[0] <= diff), key=lambda e: e[0], default=(0, {1: 0, 2: 0, 3: 0}))[1]
        report = repair_xdf(path)  # never raises
        assert path.read_bytes() == damaged, seed
        kinds["dropped"] += bool(report.dropped)
        kinds["header"] += report.header_rebuilt
        kinds["magic"] += report.magic_restored
        result = Path(report.out_path) if report.out_path else path
        caplog.clear()
        streams, _ = load_raw(result)
        assert not caplog.records, (seed, [r.getMessage() for r in caplog.records])
        reader = XDFReader(result)
        assert reader.truncated is None, seed
        assert scan_xdf(result).ok, seed  # a repaired file needs no further repair
        for sid, n in prefix.items():
            if n == 0:
                continue
            got = streams[sid]
            assert len(got["time_stamps"]) >= n, seed
            values, stamps = truth[sid]
            np.testing.assert_array_equal(got["time_stamps"][:n], stamps[:n])
            if isinstance(values, list):
                assert got["time_series"][:n] == values[:n]
            else:
                np.testing.assert_array_equal(got["time_series"][:n], values[:n])
    assert kinds["dropped"] > 150 and kinds["header"] > 0  # the fuzz reached the damaged paths


# -- where the repaired file goes ---------------------------------------------------------------


def _cut_file(tmp_path) -> tuple[Path, bytes]:
    path = tmp_path / "session.xdf"
    build_session(path, n_eeg=300)
    damaged = path.read_bytes()[:-100]
    path.write_bytes(damaged)
    return path, damaged


def test_in_place_keeps_the_original_as_bak(tmp_path):
    path, damaged = _cut_file(tmp_path)
    report = repair_xdf(path, in_place=True)
    bak = backup_path(path)
    assert bak == tmp_path / "session.xdf.bak" and report.backup_path == str(bak)
    assert bak.read_bytes() == damaged
    assert report.out_path == str(path) and scan_xdf(path).ok
    assert path.stat().st_size == report.bytes_after
    assert not repaired_path(path).exists()
    path.write_bytes(damaged)
    with pytest.raises(FileExistsError, match=r"session\.xdf\.bak"):  # an older backup is never overwritten
        repair_xdf(path, in_place=True)
    assert path.read_bytes() == damaged and bak.read_bytes() == damaged


def test_an_existing_output_is_never_overwritten(tmp_path):
    path, damaged = _cut_file(tmp_path)
    repaired_path(path).write_bytes(b"earlier work")
    with pytest.raises(FileExistsError, match="repaired.xdf"):
        repair_xdf(path)
    assert repaired_path(path).read_bytes() == b"earlier work" and path.read_bytes() == damaged
    with pytest.raises(ValueError, match="in_place"):
        repair_xdf(path, path)


def test_cli_repair_writes_a_copy_reports_drops_and_keeps_a_backup_in_place(tmp_path):
    path, damaged = _cut_file(tmp_path)
    runner = CliRunner()
    dry = runner.invoke(app, ["repair", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would drop" in dry.output and not repaired_path(path).exists()
    done = runner.invoke(app, ["repair", str(path)])
    assert done.exit_code == 0, done.output
    out = "".join(done.output.split())  # rich wraps long lines, even inside a path
    assert "session.repaired.xdf" in out and "bytes" in out and "runspasttheend" in out
    assert path.read_bytes() == damaged and scan_xdf(repaired_path(path)).ok
    again = runner.invoke(app, ["repair", str(path)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert len(again.output.strip().splitlines()) <= 2
    in_place = runner.invoke(app, ["repair", str(path), "--in-place"])
    assert in_place.exit_code == 0, in_place.output
    assert backup_path(path).read_bytes() == damaged and scan_xdf(path).ok
    intact = runner.invoke(app, ["repair", str(path)])
    assert intact.exit_code == 0 and "intact" in intact.output
