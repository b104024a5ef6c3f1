"""``closedloop view``: the dashboard's snapshot at any time of a recording equals what was recorded up to then."""

from __future__ import annotations

import json

import numpy as np
import pytest
from session_helpers import OFFSET, record_session

from closedloop.config import load_pipeline
from closedloop.live.dashboard.recorded import RecordedSession, find_session_file
from closedloop.live.dashboard.state import EEG_SPAN_S, TRACE_SPAN_S
from closedloop.recording import XDFReader


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    folder = tmp_path_factory.mktemp("rec")
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"controller.lower": 1.6, "controller.upper": 1.7})
    rec, raw, steps = record_session(folder, resolved, seconds=8.0)
    rec.close()
    return folder, steps


def test_a_window_holds_what_was_recorded_up_to_its_time(recorded):
    folder, steps = recorded
    view = RecordedSession(folder)
    reader = XDFReader(folder / "session.xdf")
    t0 = 5000.0 + OFFSET  # the first EEG sample, pipeline time base
    # the timeline ends at what came last: here the last command, issued 1 ms after the last sample
    last_issue = max(t for t, _, _ in recorded_applied(reader)) - t0
    assert view.t0 == pytest.approx(t0) and last_issue == pytest.approx(8.0 - 1 / 500 + 0.001, abs=1e-6)
    assert view.end_s == pytest.approx(last_issue, abs=1e-9)
    hello = view.hello()
    assert hello["mode"] == "recorded" and hello["end_s"] == pytest.approx(view.end_s, abs=1e-3)
    json.dumps(hello, allow_nan=False)
    at = 5.0
    snap = view.window(at)
    json.dumps(snap, allow_nan=False)
    assert snap["t"] == at
    eeg_t = np.array(snap["eeg"]["t"])
    assert eeg_t[-1] <= at + 1e-9 and eeg_t[-1] > at - 0.02 and eeg_t[0] >= at - EEG_SPAN_S - 0.1
    # frames: exactly the recorded ones whose time is in (at - span, at], values as recorded (rounded to 1e-4)
    truth = [(s.frame.time - t0, s.frame.values) for s in steps if at - TRACE_SPAN_S <= s.frame.time - t0 <= at]
    np.testing.assert_allclose(snap["frames"]["t"], [t for t, _ in truth], atol=1e-4)
    got = np.array(snap["frames"]["v"], dtype=float).T
    np.testing.assert_allclose(got, np.array([v for _, v in truth]), atol=6e-5)
    # the charge gauge: trapezoid of |I| over the applied commands up to `at`, the last one held until `at`
    app = [(t - t0, a) for t, a, _ in recorded_applied(reader)]
    app = [(t, a) for t, a in app if t <= at]
    ts, amps = np.array([t for t, _ in app]), np.array([a for _, a in app])
    charge = np.trapezoid(amps, ts) / 1000.0 + amps[-1] * (at - ts[-1]) / 1000.0
    dose = {g["label"]: g["value"] for g in snap["status"]["dose"]}
    assert amps.max() > 0 and dose["charge"] == pytest.approx(charge, rel=1e-9)
    assert snap["status"]["phase"] == "recorded"


def recorded_applied(reader):
    s = next(s for s in reader.streams.values() if s.name == "closedloop-applied")
    v, t = reader.read_stream(s.stream_id)
    return [(float(ti), float(row[0]), float(row[3])) for row, ti in zip(v, t)]


def test_events_appear_once_their_time_has_come(recorded):
    folder, _ = recorded
    view = RecordedSession(folder)
    clamp_at = 5002.0 + OFFSET - view.t0  # the helper logs a clamp 2 s after the first sample
    before = [e for e in view.window(clamp_at - 0.1)["events"] if e["kind"] == "clamp"]
    after = [e for e in view.window(clamp_at + 0.1)["events"] if e["kind"] == "clamp"]
    assert before == [] and len(after) == 1 and after[0]["t"] == pytest.approx(clamp_at, abs=1e-3)


def test_times_outside_the_recording_are_clamped(recorded):
    folder, _ = recorded
    view = RecordedSession(folder)
    assert view.window(-5)["t"] == 0.0 and view.window(1e9)["t"] == pytest.approx(view.end_s, abs=1e-3)


def test_what_is_not_a_closedloop_session_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no session.xdf in this folder"):
        find_session_file(tmp_path)
    with pytest.raises(ValueError, match="no such session folder or file"):
        find_session_file(tmp_path / "missing")
    bad = tmp_path / "x.xdf"
    bad.write_bytes(b"not an xdf file")
    with pytest.raises(ValueError, match="x.xdf"):
        RecordedSession(bad)
