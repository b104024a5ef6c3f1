"""Live → offline fidelity: a recorded live session replays to the same frames, commands, counters, stop reason.

The live session runs over real LSL on this machine through
:class:`closedloop.live.runtime.LiveSession` (synthetic source published by
its own outlet, read back, recorded); the replay runs the same
:class:`~closedloop.session.driver.SessionDriver` over the recording.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {"controller.lower": 1.45, "controller.upper": 1.6, "controller.onset": 2, "controller.blanking_s": 0.5}


def fingerprint(steps) -> str:
    """sha256 over every frame (time, values, flags, index) and allowed command (on, amplitude, frequency)."""
    h = hashlib.sha256()
    for s in steps:
        f, a = s.frame, s.allowed
        h.update(struct.pack("<dqq", f.time, int(f.flags), f.index))
        h.update(np.ascontiguousarray(f.values, dtype="<f8").tobytes())
        h.update(struct.pack("<?dd", bool(a.on), a.amplitude_mA, a.frequency_Hz))
    return h.hexdigest()


COUNTERS = (
    "frames",
    "flagged_frames",
    "quality_flags",
    "commands_applied",
    "adapter_refusals",
    "samples_in",
    "stop_reason",
    "features",
)


@pytest.mark.lsl
def test_replay_of_a_recorded_live_session_reproduces_frames_commands_counters_and_stop_reason(tmp_path):
    from closedloop.live.runtime import LiveSession

    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", OVERRIDES)
    live = []
    session = LiveSession(resolved, 4.0, tmp_path / "live", show_status=False, on_step=live.append)
    summary = session.run()
    assert summary["stop_reason"] == "duration reached" and summary["recording"]["error"] is None
    assert len(live) > 40 and any(s.allowed.amplitude_mA > 0 for s in live)  # the loop actually stimulated
    result = replay(tmp_path / "live" / "session.xdf", resolved, keep="steps")
    # the same frames, and the same allowed commands: the replay ran the safety layer on the recorded clock
    assert result.summary["replay"]["safety_clock"] == "recorded"
    assert fingerprint(result.steps) == fingerprint(live)
    assert [s.desired.on for s in result.steps] == [s.desired.on for s in live]
    # one session driver: the same counters and the same stop reason
    assert {k: result.summary[k] for k in COUNTERS} == {k: summary[k] for k in COUNTERS}
    assert (tmp_path / "live" / "report.html").stat().st_size > 10_000
