"""A live session with ``poll = "busy"`` over real LSL: it rehearses, and only its own commands reach the device."""

from __future__ import annotations

import pytest
from session_helpers import STIMULATE_AT_ONCE

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.synthetic.eeg import SyntheticEEG  # noqa: E402
from closedloop.synthetic.outlet import SynthPublisher  # noqa: E402

pytestmark = pytest.mark.lsl


@pytest.mark.timeout(120)
def test_a_busy_polling_session_rehearses_without_touching_the_device(repo, tmp_path, unique_name):
    pub = SynthPublisher(
        SyntheticEEG(n_channels=32, sfreq=500.0, seed=11),
        name=unique_name,
        source_id=unique_name,
        chunk_size=5,  # a chunk every 10 ms: time between chunks for the code to go cold
        markers=False,
        preroll_s=1.0,
    )
    pub.start()
    try:
        resolved = load_pipeline(
            repo / "pipelines" / "alpha_tacs_lsl.toml",
            {
                "source.name": unique_name,
                "source.source_id": unique_name,
                "source.poll": "busy",
                "source.resolve_timeout_s": 15.0,
                **STIMULATE_AT_ONCE,  # stimulating: the twin's controller and safety layer have work too
            },
        )
        session = LiveSession(resolved, 4.0, tmp_path, show_status=False)
        summary = session.run()
    finally:
        pub.stop()
    assert summary["stop_reason"] == "duration reached", summary["stop_reason"]
    assert summary["frames"] > 20 and summary["commands_applied"] > 0
    # the twin ran (one step per chunk at most; a busy machine may leave no time for some) ...
    assert 0 < summary["rehearsals"] <= summary["frames"] * 5 + 5
    assert not any("rehearsal" in w for w in summary["warnings"])
    # ... and the device saw exactly the session's commands: the frames' and the final ramp's, none of the twin's
    assert session.adapter.commands == summary["commands_applied"] + summary["shutdown_commands"]
