"""A stalled loop thread: the watchdog thread stops the output without waiting for the loop."""

from __future__ import annotations

import time

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = pytest.mark.lsl


def test_stalled_loop_thread_is_stopped_by_the_watchdog_thread(repo, tmp_path):
    # stimulation on from the first frames (low threshold pair), then the loop thread hangs for 1.5 s
    resolved = load_pipeline(
        repo / "pipelines" / "alpha_tacs.toml",
        {
            "controller.lower": 9.0,
            "controller.upper": 9.5,
            "controller.onset": 1,
            "controller.blanking_s": 0.0,
            "recording.report": False,
        },
    )
    session = LiveSession(resolved, 20.0, tmp_path, show_status=False)
    timeout = resolved.envelope()["watchdog_timeout_s"]["value"]
    stalled = {}

    def hang(step):
        if not stalled and step.allowed.amplitude_mA >= 0.3:
            stalled["at"] = pylsl.local_clock()
            stalled["output_before"] = session.adapter.output_mA(stalled["at"])
            time.sleep(1.5)  # the loop thread is stuck here, holding nothing the watchdog needs
            stalled["output_after"] = session.adapter.output_mA(pylsl.local_clock())

    session.on_step = hang
    t0 = time.monotonic()
    summary = session.run()
    assert stalled, "stimulation never reached 0.3 mA"
    assert stalled["output_before"] > 0.25
    # while the loop was still stuck, the watchdog thread had already driven the device to zero
    assert stalled["output_after"] == 0.0
    assert "loop thread stalled" in summary["stop_reason"]
    assert summary["watchdog_trips"] >= 1
    assert summary["final_amplitude_mA"] == 0.0
    assert time.monotonic() - t0 < 19.0  # the session ended on the trip, not at its duration
    assert timeout < 1.5
