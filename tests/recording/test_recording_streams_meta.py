"""SessionRecording: identity, the device I/O audit trail and clock offsets for every stream."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from session_helpers import OFFSET, eeg_desc  # noqa: E402 (tests/ on sys.path)

from closedloop.adapters.iolog import IOLog, IORecord
from closedloop.config import load_pipeline
from closedloop.recording import SessionRecording
from closedloop.synthetic.eeg import SyntheticEEG

REPO = Path(__file__).resolve().parents[2]
IDENTITY = {"participant": "P07", "session": "S2", "site": "lab <A> & co"}


@pytest.fixture(scope="module")
def resolved():
    return load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")


def new_recording(folder, resolved, **kwargs) -> SessionRecording:
    gen = SyntheticEEG(n_channels=32)
    eeg = {**eeg_desc(gen), **kwargs.pop("eeg", {})}
    return SessionRecording(folder, resolved, eeg, ("theta", "alpha", "theta_alpha"), min_free_bytes=0, **kwargs)


def load(path):
    streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}, header


def test_identity_is_in_the_file_header_and_every_stream(tmp_path, resolved):
    rec = new_recording(tmp_path, resolved, identity=IDENTITY, report=False)
    rec.on_marker("task", ["start"], [1.0])  # a stream added later carries it too
    rec.close()
    streams, header = load(rec.path)
    ident = header["info"]["identity"][0]
    assert {k: v[0] for k, v in ident.items()} == IDENTITY  # escaped in XML, read back as written
    assert header["info"]["session_id"][0] == rec.session_id  # the random id stays beside it
    assert len(streams) >= 9
    for name, s in streams.items():
        got = s["info"]["desc"][0]["closedloop"][0]["identity"][0]
        assert {k: v[0] for k, v in got.items()} == IDENTITY, name


def test_identity_keys_must_be_xml_names(tmp_path, resolved):
    with pytest.raises(ValueError, match=r"identity key 'participant id' is not allowed: use letters"):
        new_recording(tmp_path / "a", resolved, identity={"participant id": "P1"})
    with pytest.raises(ValueError, match="identity must be a mapping"):
        new_recording(tmp_path / "b", resolved, identity="P1")
    assert not (tmp_path / "a" / "session.xdf").exists()


def test_control_characters_never_break_a_header(tmp_path, resolved):
    gen = SyntheticEEG(n_channels=32)
    names = list(gen.ch_names)
    names[3] = "O1\x01\x1b[31m"  # a label with control characters (an amplifier's stray bytes)
    rec = new_recording(tmp_path, resolved, identity={"participant": "P\x00 1"}, eeg={"ch_names": names}, report=False)
    rec.close()
    streams, header = load(rec.path)
    assert header["info"]["identity"][0]["participant"] == ["P\ufffd 1"]
    labels = [c["label"][0] for c in streams["EEG-test"]["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels[3] == "O1\ufffd\ufffd[31m" and labels[4] == names[4]


def test_device_io_records_every_byte_as_json_from_any_thread(tmp_path, resolved):
    rec = new_recording(tmp_path, resolved, report=False)
    clock = iter(np.arange(100.0, 200.0, 0.5)).__next__
    log = IOLog(clock, callback=rec.on_io)

    def adapter_thread():  # the adapter's I/O thread produces the records
        log.add("tx", b"\x02SET 1.50\x03", "set amplitude 1.5 mA")
        log.add("rx", b"\x06", "ack")
        log.add("event", note="armed")
        log.add("fault", b"\xff\x00", "over-current")

    t = threading.Thread(target=adapter_thread)
    t.start()
    t.join(5)
    rec.on_io(IORecord(300.0, "tx", bytes(range(256)), "every byte value"))
    rec.close()
    streams, _ = load(rec.path)
    io = streams["closedloop-device-io"]
    assert io["info"]["type"] == ["DeviceIO"]
    rows = [json.loads(r[0]) for r in io["time_series"]]
    assert [r["kind"] for r in rows] == ["tx", "rx", "event", "fault", "tx"]
    assert bytes.fromhex(rows[0]["hex"]) == b"\x02SET 1.50\x03" and rows[0]["note"] == "set amplitude 1.5 mA"
    assert rows[2]["hex"] == "" and rows[2]["note"] == "armed"
    assert bytes.fromhex(rows[4]["hex"]) == bytes(range(256))
    np.testing.assert_array_equal(io["time_stamps"], [100.0, 100.5, 101.0, 101.5, 300.0])
    assert io["info"]["desc"][0]["closedloop"][0]["role"] == ["device-io"]


def test_every_stream_has_clock_offsets_fixed_for_the_local_clock_and_measured_for_the_source(tmp_path, resolved):
    ticks = iter(np.arange(1000.0, 2000.0, 1.0)).__next__
    live = new_recording(tmp_path / "live", resolved, clock=ticks, report=False)  # offset_measured: as for_source
    live.on_clock_offset(999.5, -OFFSET)
    live.add_stream("remote-markers", clock_offset=None)
    live.on_clock_offset(999.6, 0.25, stream="remote-markers")
    live.on_marker("remote-markers", ["x"], [5.0])
    live.close()
    streams, _ = load(live.path)
    assert streams["EEG-test"]["clock_values"] == [-OFFSET]  # measured only: nothing invented
    assert streams["remote-markers"]["clock_values"] == [0.25]
    for name in ("closedloop-features", "closedloop-safety", "closedloop-device-io", "closedloop-applied"):
        s = streams[name]
        assert s["clock_values"] == [0.0, 0.0], name  # at its header and at the end
        assert s["clock_times"][0] < s["clock_times"][1] and s["clock_times"][0] >= 1000.0, name
        footer = s["footer"]["info"]["clock_offsets"][0]["offset"]
        assert [float(o["value"][0]) for o in footer] == [0.0, 0.0], name  # the footer lists them, as LabRecorder

    replayed = new_recording(tmp_path / "replay", resolved, eeg={"offset_measured": False}, report=False)
    replayed.close()
    streams, _ = load(replayed.path)
    assert streams["EEG-test"]["clock_values"] == [OFFSET, OFFSET]  # the pipeline offset, written as constant
    assert np.all(np.diff(streams["EEG-test"]["clock_times"]) >= 0)


def test_finish_closes_the_file_so_the_summary_can_say_it_is_complete(tmp_path, resolved):
    rec = new_recording(tmp_path, resolved, report=True)
    rec.on_chunk(np.zeros((10, 32), np.float32), np.arange(10) / 500)
    assert rec.summary_fields()["recording"]["complete"] is False
    rec.finish()
    fields = rec.summary_fields()["recording"]
    assert fields["complete"] is True and fields["error"] is None and fields["bytes"] == rec.path.stat().st_size
    rec.finish()  # twice is harmless
    rec.close({"frames": 0})  # then the report
    assert rec.report_error is None and (tmp_path / "report.html").exists()


def test_one_queue_item_per_chunk_keeps_every_stream_exact(tmp_path, resolved):
    """A chunk's EEG, frames and applied commands go to the writer as one queue item, written as pushed.

    The EEG comes from a reused buffer (as a live source's), overwritten after each call: the
    recording must still hold the values given. Chunks with several frames, with commands and
    extras, and without frames (queued with the next chunk or at finish) are all covered.
    """
    from closedloop.pipeline import Pipeline
    from closedloop.types import Chunk

    gen = SyntheticEEG(n_channels=32, sfreq=500.0, seed=9)
    pipe = Pipeline(resolved, gen.ch_names)
    rec = SessionRecording(
        tmp_path, resolved, eeg_desc(gen), pipe.feature_names, list(pipe.controller.state()), min_free_bytes=0
    )
    offers = []
    offer = rec.recorder._offer
    rec.recorder._offer = lambda item, *a: (offers.append(item[0]), offer(item, *a))
    buf = np.empty((300, 32), dtype=np.float32)
    rows, issued = np.empty((8, 5)), np.empty(8)  # the driver's reused buffers
    eeg, stamps, frames, applied, extras = [], [], [], [], []
    i, per_chunk, sizes = 0, [], (300, 7, 11, 250, 3, 120, 9)  # some chunks hold several frames, some none
    for size in sizes:
        data = gen.generate(size, out=buf[:size])
        raw = 5000.0 + (i + np.arange(size)) / 500.0
        i += size
        steps = pipe.process(Chunk(data, raw + OFFSET))
        before = len(offers)
        cmds = [s.allowed for s in steps]
        if steps:
            cmds[0] = type(cmds[0])(1.0, 10.0, True, steps[0].frame.time, fire=True, extra={"phase": 0.5})
            for k, c in enumerate(cmds):
                rows[k] = (c.amplitude_mA, c.frequency_Hz, c.on, c.time, 0.001 * k)
                issued[k] = raw[-1] + OFFSET + 0.0001 * k
            rec.on_applied_rows(rows[: len(cmds)], issued[: len(cmds)], cmds)
            applied.append((rows[: len(cmds)].copy(), issued[: len(cmds)].copy()))
            extras.append(issued[0])
        rec.on_chunk(data, raw)
        rec.on_steps(steps)
        per_chunk.append(len(offers) - before)
        eeg.append(data.copy())
        stamps.append(raw)
        frames += [s.frame for s in steps]
        buf[:] = -1.0  # the source reuses its buffer
        rows[:] = -1.0
        issued[:] = -1.0
    assert len(frames) > len(sizes) and 0 in per_chunk  # chunks with several frames and without any
    rec.close()
    # one item per chunk (EEG with the chunk's frames), plus one per chunk with applied commands
    assert len(offers) == len(sizes) + len(applied)
    streams, _ = load(rec.path)
    got = streams["EEG-test"]
    np.testing.assert_array_equal(got["time_series"], np.concatenate(eeg))
    np.testing.assert_array_equal(got["time_stamps"], np.concatenate(stamps))
    feat = streams["closedloop-features"]
    np.testing.assert_array_equal(feat["time_stamps"], [f.time for f in frames])
    np.testing.assert_array_equal(feat["time_series"][:, -1], [f.index for f in frames])
    np.testing.assert_array_equal(feat["time_series"][:, 0], [f.values[0] for f in frames])
    assert len(streams["closedloop-commands"]["time_stamps"]) == len(frames)
    got = streams["closedloop-applied"]
    np.testing.assert_array_equal(got["time_series"], np.concatenate([r for r, _ in applied]))
    np.testing.assert_array_equal(got["time_stamps"], np.concatenate([t for _, t in applied]))
    got = streams["closedloop-applied-extra"]
    np.testing.assert_array_equal(got["time_stamps"], extras)
    assert [json.loads(x[0]) for x in got["time_series"]] == [{"fire": True, "phase": 0.5}] * len(extras)
