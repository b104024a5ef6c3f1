"""Session state on LSL, as LabRecorder or a viewer sees it: headers and values checked against session.xdf.

An independent client — plain pylsl inlets, the way LabRecorder pulls, and
mne-lsl's StreamLSL — records the streams a live session publishes; what it
received must be what the session wrote to its own ``session.xdf``.
"""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.publish import APPLIED_CHANNELS, BLINDED_EVENT_KINDS  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.recording import XDFReader  # noqa: E402

pytestmark = pytest.mark.lsl


def start_session(resolved, seconds, folder, gate: threading.Event | None = None, **kw):
    """Run a session in a thread; with ``gate``, it waits there before connecting its device (clients attach first)."""

    def progress(message: str) -> None:
        if gate is not None and message.startswith("connecting to"):
            assert gate.wait(60), "the test did not open its inlets"

    session = LiveSession(resolved, seconds, folder, show_status=False, on_progress=progress, **kw)
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=session.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while (session.outputs is None or session.outputs.publisher is None) and time.monotonic() < deadline:
        assert thread.is_alive(), "the session ended before it published"
        time.sleep(0.02)
    assert session.outputs.publisher is not None, "the session did not start publishing within 120 s"
    return session, thread, result


def open_inlets(source_ids: dict[str, str]) -> dict[str, pylsl.StreamInlet]:
    inlets = {}
    for name, sid in source_ids.items():
        found = pylsl.resolve_byprop("source_id", sid, 1, 10.0)
        assert found, f"{name} ({sid}) is not on LSL"
        inlet = pylsl.StreamInlet(found[0], max_buflen=360, recover=False, processing_flags=0)
        inlet.open_stream(timeout=10.0)
        inlets[name] = inlet
    return inlets


def pull_until_done(inlets, thread) -> dict[str, tuple[list, list]]:
    got = {name: ([], []) for name in inlets}

    lost = set()

    def pull() -> None:
        for name, inlet in inlets.items():
            if name in lost:
                continue
            try:
                values, stamps = inlet.pull_chunk(timeout=0.0)
            except pylsl.util.LostError:  # the session closed its outlets (at least 1 s after its end marker)
                lost.add(name)
                continue
            got[name][0].extend(values)
            got[name][1].extend(stamps)

    while thread.is_alive():
        pull()
        thread.join(0.05)
    pull()
    return got


def header_channels(info_xml: str) -> list[tuple[str, str, str]]:
    root = ET.fromstring(info_xml)
    return [
        (c.findtext("label") or "", c.findtext("unit") or "", c.findtext("type") or "")
        for c in root.findall("./desc/channels/channel")
    ]


def test_a_lab_recorder_style_client_records_what_session_xdf_holds(repo, tmp_path):
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"controller.lower": 1.5, "controller.upper": 1.6})
    gate = threading.Event()  # like LabRecorder, the client connects before the session starts
    session, thread, result = start_session(resolved, 8.0, tmp_path / "s", gate, identity={"participant": "P7"})
    pub = session.outputs.publisher
    assert set(pub.source_ids) == {
        "closedloop-features",
        "closedloop-controller",
        "closedloop-applied",
        "closedloop-events",
    }
    inlets = open_inlets(pub.source_ids)
    infos = {name: inlet.info(timeout=10.0) for name, inlet in inlets.items()}
    gate.set()
    got = pull_until_done(inlets, thread)
    summary = result["summary"]
    assert summary["stop_reason"] == "duration reached"
    reader = XDFReader(tmp_path / "s" / "session.xdf")
    by_name = {s.name: s for s in reader.streams.values()}
    sid = reader.file_header.findtext("session_id")

    # headers: standard LSL headers, channel labels/units/types as in session.xdf, ids tied to the session
    for name, info in infos.items():
        assert info.source_id() == f"closedloop-{sid}-{name[len('closedloop-') :]}"
        root = ET.fromstring(info.as_xml())
        assert root.findtext("./desc/closedloop/session_id") == sid
        assert root.findtext("./desc/closedloop/identity/participant") == "P7"
        assert info.created_at() > 0 and info.uid() and info.hostname()
    feats_rec = by_name["closedloop-features"]
    assert infos["closedloop-features"].type() == "Features"
    assert infos["closedloop-features"].nominal_srate() == pytest.approx(500.0 / 25)
    assert infos["closedloop-features"].channel_format() == pylsl.cf_double64
    pub_feats = header_channels(infos["closedloop-features"].as_xml())
    assert pub_feats == list(zip(feats_rec.ch_names, feats_rec.units, feats_rec.ch_types))
    assert [c[0] for c in pub_feats] == ["theta", "alpha", "theta_alpha", "flags", "frame_index"]
    ctl_rec = by_name["closedloop-controller"]
    assert [c[0] for c in header_channels(infos["closedloop-controller"].as_xml())] == ctl_rec.ch_names
    app_rec = by_name["closedloop-applied"]
    pub_app = header_channels(infos["closedloop-applied"].as_xml())
    assert [c[0] for c in pub_app] == list(APPLIED_CHANNELS)
    assert [(c[0], c[1]) for c in pub_app[:5]] == list(zip(app_rec.ch_names, app_rec.units))
    assert infos["closedloop-events"].type() == "Markers"
    assert infos["closedloop-events"].channel_format() == pylsl.cf_string

    # values: every frame received equals the recorded frame with the same index, at the same time stamp
    rec_v, rec_t = reader.read_stream(feats_rec.stream_id)
    v = np.array(got["closedloop-features"][0])
    t = np.array(got["closedloop-features"][1])
    assert len(t) == len(rec_t) > 50
    idx = v[:, -1].astype(int)
    rows = np.searchsorted(rec_v[:, -1], idx)
    np.testing.assert_array_equal(rec_v[rows, -1], idx)
    np.testing.assert_array_equal(v, rec_v[rows])
    np.testing.assert_array_equal(t, rec_t[rows])
    cv, ct = reader.read_stream(ctl_rec.stream_id)
    np.testing.assert_array_equal(np.array(got["closedloop-controller"][0]), cv[rows])
    # applied commands: the same amplitudes at the same issue times; fire/abort never set for tACS
    av, at = reader.read_stream(app_rec.stream_id)
    pv, pt = np.array(got["closedloop-applied"][0]), np.array(got["closedloop-applied"][1])
    k = np.searchsorted(at, pt)
    np.testing.assert_array_equal(at[k], pt)
    np.testing.assert_array_equal(pv[:, :5], av[k])
    assert len(pt) == len(at) and np.all(pv[:, 5:] == 0)
    assert av[:, 0].max() > 0  # stimulation happened: the comparison covers non-zero amplitudes
    # events: the session markers, and the safety events of session.xdf with the same time stamps
    docs = [json.loads(x[0]) for x in got["closedloop-events"][0]]
    markers = [d["event"] for d in docs if d["kind"] == "session"]
    assert markers == ["start", "stop", "end"]
    assert [d["reason"] for d in docs if d["kind"] == "session" and d["event"] == "end"] == ["duration reached"]
    rec_events = [json.loads(x[0]) for x in by_name["closedloop-safety"].strings]
    pub_events = [(d["kind"], d["reason"]) for d in docs if d["kind"] != "session"]
    received_times = [ts for d, ts in zip(docs, got["closedloop-events"][1]) if d["kind"] != "session"]
    recorded = {(e["kind"], e["reason"]): e["time"] for e in rec_events}
    assert pub_events and all(p in recorded for p in pub_events)
    assert all(recorded[p] == ts for p, ts in zip(pub_events, received_times))


def test_mne_lsl_reads_the_published_features(repo, tmp_path):
    mne_lsl = pytest.importorskip("mne_lsl", reason="mne-lsl (the `test` extra) is not installed")
    from closedloop.lslconfig import configure_mne_lsl

    configure_mne_lsl()
    from mne_lsl.stream import StreamLSL

    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml")
    session, thread, _ = start_session(resolved, 6.0, tmp_path / "s")
    sid = session.outputs.publisher.source_ids["closedloop-features"]
    stream = StreamLSL(bufsize=5.0, name="closedloop-features", source_id=sid).connect(timeout=10.0)
    try:
        assert stream.ch_names == ["theta", "alpha", "theta_alpha", "flags", "frame_index"]
        assert stream.info["sfreq"] == pytest.approx(20.0)
        deadline = time.monotonic() + 30
        while stream.n_new_samples < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        data, ts = stream.get_data(winsize=0.5)
        assert data.shape[0] == 5 and np.all(np.diff(data[-1]) == 1)  # frame_index counts up, one per frame
    finally:
        stream.disconnect()
        thread.join(60)
    assert mne_lsl.__version__


def test_a_blinded_session_publishes_nothing_that_reveals_the_arm(repo, tmp_path):
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs_open.toml")
    session, thread, _ = start_session(resolved, 5.0, tmp_path / "s")
    pub = session.outputs.publisher
    assert "closedloop-applied" not in pub.source_ids
    inlets = open_inlets(pub.source_ids)
    ctl = header_channels(inlets["closedloop-controller"].info(timeout=10.0).as_xml())
    got = pull_until_done(inlets, thread)
    assert [c[0] for c in ctl] == ["block", "in_on_block", "block_elapsed_s", "finished"]  # no arm, no amplitude
    docs = [json.loads(x[0]) for x in got["closedloop-events"][0]]
    assert docs and all(d["kind"] in BLINDED_EVENT_KINDS for d in docs)
    assert not any("applied_mA" in d or "desired_mA" in d for d in docs)


def test_publishing_can_be_switched_off(repo, tmp_path):
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"output.publish": False})
    session = LiveSession(resolved, 3.0, tmp_path / "s", show_status=False)
    summary = session.run()
    assert summary["stop_reason"] == "duration reached" and session.outputs.publisher is None
