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
