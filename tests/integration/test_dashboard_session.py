"""The dashboard's paths into a live session: ratings always reach session.xdf; a failed start frees its port."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.outputs import SessionOutputs  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.recording import XDFReader  # noqa: E402
from closedloop.sources import SourceError  # noqa: E402

pytest.importorskip("tornado", reason="the dashboard extra (tornado) is not installed")
pytestmark = pytest.mark.lsl


def post(url: str, doc: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def test_ratings_are_written_to_the_recording_when_their_stream_cannot_be_resolved(repo, tmp_path, monkeypatch):
    from closedloop.live.dashboard.server import DashboardOptions

    opened = SessionOutputs.open

    def open_without_recording_the_ratings(self, *args):
        opened(self, *args)
        self.record_queries.clear()  # as if LSL could not resolve closedloop-ratings

    monkeypatch.setattr(SessionOutputs, "open", open_without_recording_the_ratings)
    notes: list[str] = []
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml")
    session = LiveSession(
        resolved, 60.0, tmp_path / "s", show_status=False, dashboard=DashboardOptions(port=0), on_progress=notes.append
    )
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not any(n.startswith("running") for n in notes):
        assert time.monotonic() < deadline and thread.is_alive(), notes
        time.sleep(0.02)
    assert any("ratings are written to the recording" in n for n in notes)
    url = session.outputs.url
    before = pylsl.local_clock()
    reply = post(url + "api/rating", {"value": 6, "delay_s": 0.0})
    after = pylsl.local_clock()
    assert reply["ok"] and before <= reply["time"] <= after
    assert post(url + "api/stop", {"confirm": True, "who": "tester"})["ok"]
    thread.join(60)
    reader = XDFReader(tmp_path / "s" / "session.xdf")
    (stream,) = [s for s in reader.streams.values() if s.name == "closedloop-ratings"]
    assert stream.type == "Rating" and stream.ch_names == ["pain_nrs", "prompted", "response_time_s"]
    values, stamps = reader.read_stream(stream.stream_id)
    assert values[:, 0].tolist() == [6.0] and stamps[0] == reply["time"] and np.isnan(values[0, 2])


def test_a_session_that_cannot_start_frees_the_dashboard_port(repo, tmp_path):
    from closedloop.live.dashboard.server import DashboardOptions

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    over = {"source.kind": "lsl", "source.name": "no-such-stream-anywhere", "source.resolve_timeout_s": 0.5}
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs_lsl.toml", over)
    session = LiveSession(resolved, 5.0, tmp_path / "s", show_status=False, dashboard=DashboardOptions(port=port))
    with pytest.raises(SourceError):
        session.run()
    with socket.socket() as again:  # the port is free again
        again.bind(("127.0.0.1", port))
