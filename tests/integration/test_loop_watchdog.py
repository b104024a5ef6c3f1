"""A stalled loop thread: the watchdog thread stops the output without waiting for the loop."""

from __future__ import annotations

import pytest
from adapter_helpers import wait_for
from session_helpers import STIMULATE_AT_ONCE

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = pytest.mark.lsl


def test_stalled_loop_thread_is_stopped_by_the_watchdog_thread(repo, tmp_path):
    # stimulation on from the first frames (low threshold pair), then the loop thread hangs for 1.5 s
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", STIMULATE_AT_ONCE)
    session = LiveSession(resolved, 20.0, tmp_path, show_status=False)
    env = resolved.envelope()
    timeout = env["watchdog_timeout_s"]["value"]
    emergency_rate = env["emergency_ramp_rate_mA_per_s"]["value"]
    stalled = {}

    def hang(step):
        if not stalled and step.allowed.amplitude_mA >= 0.3:
            t0 = pylsl.local_clock()
            stalled["output_before"] = session.adapter.output_mA(t0)
            # the scenario: the loop thread is stuck here, holding nothing the watchdog needs, until the
            # output is off (or for 30 s, far past any trip): how late the off comes is what is measured
            stalled["zero"] = wait_for(lambda: session.adapter.output_mA(pylsl.local_clock()) == 0.0, 30.0)
            stalled["after_s"] = pylsl.local_clock() - t0

    session.on_step = hang
    summary = session.run()
    assert stalled, "stimulation never reached 0.3 mA"
    assert stalled["output_before"] > 0.25
    # while the loop was still stuck, the watchdog thread drove the device to zero ...
    assert stalled["zero"], "the output stayed on while the loop thread was stuck"
    # ... in time: the timeout, one watchdog period (a quarter of it), the emergency ramp, and 1 s for a busy
    # scheduler (the watchdog thread must be given the CPU to notice)
    bound = timeout * 1.25 + stalled["output_before"] / emergency_rate + 1.0
    print(f"\noutput 0 mA {stalled['after_s'] * 1e3:.0f} ms into the stall (bound {bound:.2f} s)")
    assert stalled["after_s"] <= bound
    assert "loop thread stalled" in summary["stop_reason"]  # the session ended on the trip, not at its duration
    assert summary["watchdog_trips"] >= 1
    assert summary["final_amplitude_mA"] == 0.0
    assert timeout < 1.5
    assert_trips_recorded(summary, tmp_path)


def test_a_loop_stalled_holding_the_lock_is_stopped_and_its_trip_recorded(repo, tmp_path, monkeypatch):
    # the loop hangs inside the controller, holding the driver's lock: the watchdog thread cannot latch the
    # safety layer, stops the device itself, and the loop latches the trip once it runs again
    from closedloop.control.threshold import ThresholdController

    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", STIMULATE_AT_ONCE)
    session = LiveSession(resolved, 20.0, tmp_path, show_status=False)
    stalled = {}
    update = ThresholdController.update

    def hang(self, frame):
        if not stalled and session.adapter.output_mA(pylsl.local_clock()) >= 0.3:
            stalled["output_before"] = session.adapter.output_mA(pylsl.local_clock())
            stalled["zero"] = wait_for(lambda: session.adapter.output_mA(pylsl.local_clock()) == 0.0, 30.0)
        return update(self, frame)

    monkeypatch.setattr(ThresholdController, "update", hang)
    summary = session.run()
    assert stalled, "stimulation never reached 0.3 mA"
    assert stalled["zero"], "the output stayed on while the loop thread was stuck holding the lock"
    assert "loop thread stalled" in summary["stop_reason"] and summary["watchdog_trips"] == 1
    assert summary["final_amplitude_mA"] == 0.0
    assert_trips_recorded(summary, tmp_path)


def assert_trips_recorded(summary: dict, folder) -> None:
    """Every trip is one ``watchdog`` event, in the summary and in what ``closedloop view`` shows at the end."""
    from closedloop.live.dashboard.recorded import RecordedSession

    assert summary["safety_events"].get("watchdog", 0) == summary["watchdog_trips"], summary["safety_events"]
    view = RecordedSession(folder)
    end = view.window(view.end_s)["status"]
    assert end["watchdog"]["trips"] == summary["watchdog_trips"]
    assert any(kind == "watchdog" and "loop thread stalled" in reason for _, kind, reason in view.events)
