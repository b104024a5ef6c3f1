"""The live loop runs with the start-up's objects out of the garbage collector's reach, and gives them back.

A full collection walks every tracked object: ~230k after the start-up of a session (numba, scipy, mne),
~0.1 s on a quiet machine and several times that on a busy one — enough to trip the loop watchdog (0.3 s)
when Python decides to run one mid-session. The session freezes what exists when its loop starts and
unfreezes it when the loop is over, however it ended.
"""

from __future__ import annotations

import gc

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = pytest.mark.lsl


def _session(repo, out, on_step) -> dict:
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"recording.report": False})
    return LiveSession(resolved, 2.0, out, show_status=False, on_step=on_step).run()


def test_the_loop_runs_with_everything_made_before_it_frozen(repo, tmp_path):
    assert gc.get_freeze_count() == 0
    made_before = []  # a tracked object from before the session
    n_before = len(gc.get_objects())
    during = []

    def look(step):
        # gc.get_freeze_count() walks the whole permanent generation (~20 ms per million objects here, several
        # times that on a busy machine) on the loop thread: once, or a few in a row trip the watchdog (0.3 s)
        if not during:
            during.append(gc.get_freeze_count())

    summary = _session(repo, tmp_path, look)
    assert summary["stop_reason"] == "duration reached" and len(during) == 1
    # inside the loop, every object from before the session (and the start-up's own) is in the permanent
    # generation, which collections skip
    assert during[0] >= n_before
    # afterwards the process collects as before: nothing frozen, the old objects tracked in the generations
    assert gc.get_freeze_count() == 0
    assert any(o is made_before for o in gc.get_objects(generation=2))


def test_a_session_ended_by_an_error_unfreezes_too(repo, tmp_path):
    steps = []
    frozen = []

    def fail(step):
        steps.append(len(steps) + 1)
        if len(steps) == 1:
            frozen.append(gc.get_freeze_count())  # once: it walks the permanent generation (see above)
        if len(steps) == 5:
            raise RuntimeError("a callback that fails")

    summary = _session(repo, tmp_path, fail)
    assert summary["stop_reason"].startswith("internal error: RuntimeError") and len(steps) == 5
    assert frozen[0] > 0 and gc.get_freeze_count() == 0
