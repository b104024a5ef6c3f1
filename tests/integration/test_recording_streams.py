"""Other LSL streams a pipeline names ([recording] streams) end up in session.xdf."""

from __future__ import annotations

import threading

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402
import pyxdf  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = pytest.mark.lsl


def test_named_marker_stream_is_recorded(repo, tmp_path, unique_name):
    info = pylsl.StreamInfo(unique_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, unique_name)
    outlet = pylsl.StreamOutlet(info)
    stop = threading.Event()
    sent = []

    def rate_pain():
        k = 0
        while not stop.wait(0.2):
            label = f"pain={k % 10}"
            outlet.push_sample([label])
            sent.append(label)
            k += 1

    pusher = threading.Thread(target=rate_pain, daemon=True)
    pusher.start()
    try:
        resolved = load_pipeline(
            repo / "pipelines" / "alpha_tacs.toml",
            {"recording.streams": [{"name": unique_name}], "recording.report": False},
        )
        summary = LiveSession(resolved, 3.0, tmp_path, show_status=False).run()
    finally:
        stop.set()
        pusher.join(2)
    assert summary["stop_reason"] == "duration reached"
    streams, _ = pyxdf.load_xdf(str(tmp_path / "session.xdf"))
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert unique_name in by_name
    got = [row[0] for row in by_name[unique_name]["time_series"]]
    assert len(got) >= 5 and all(label in sent for label in got)
    # consecutive ratings, none lost in between
    ks = [int(label.split("=")[1]) for label in got]
    assert all((b - a) % 10 == 1 for a, b in zip(ks, ks[1:]))
    assert not (tmp_path / "report.html").exists()


def test_required_stream_missing_refuses_to_stimulate(repo, tmp_path, unique_name):
    resolved = load_pipeline(
        repo / "pipelines" / "alpha_tacs.toml", {"recording.streams": [{"name": unique_name, "required": True}]}
    )
    summary = LiveSession(resolved, 3.0, tmp_path, show_status=False).run()
    assert "required stream" in summary["stop_reason"] and unique_name in summary["stop_reason"]
    assert summary["frames"] == 0 and summary["amplitude_max_mA"] == 0.0
