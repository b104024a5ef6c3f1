"""The live loop runs with the start-up's objects out of the garbage collector's reach, and gives them back.

A full collection walks every tracked object: ~230k after the start-up of a session (numba, scipy, mne),
~0.1 s on a quiet machine and several times that on a busy one — enough to trip the loop watchdog (0.3 s)
when Python decides to run one mid-session. The session freezes what exists when its loop starts and
unfreezes it when the loop is over, however it ended. Before that, the start-up runs with the collector
off (its passes over the start-up's objects were ~0.2 s of the wait for the first frame); the loop runs
with it on, and the process gets it back as it was, also when the start fails.
"""

from __future__ import annotations

import gc
import time

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = pytest.mark.lsl
SECOND_LOOK = 15  # the step of the second freeze-count reading: ~0.75 s into a 2-s session at ~19 frames per s


def _session(repo, out, on_step) -> dict:
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"recording.report": False})
    return LiveSession(resolved, 2.0, out, show_status=False, on_step=on_step).run()


def test_the_loop_runs_with_everything_made_before_it_frozen(repo, tmp_path):
    assert gc.get_freeze_count() == 0
    made_before = []  # a tracked object from before the session
    n_before = len(gc.get_objects())
    counts = []  # the freeze count at the first step and at step SECOND_LOOK, None between

    def look(step):
        # gc.get_freeze_count() walks the whole permanent generation (~20 ms per million objects here, several
        # times that on a busy machine) on the loop thread: a few walks in a row trip the watchdog (0.3 s), so
        # it is read on two steps far apart, never within one catch-up
        counts.append(gc.get_freeze_count() if len(counts) + 1 in (1, SECOND_LOOK) else None)

    collections = []  # (time, generation) of every collection the process runs during the session
    loop_started = []  # the time of the first step
    clock = time.perf_counter

    def on_collection(phase, info):
        if phase == "start":
            collections.append((clock(), info["generation"]))

    def look_and_note(step):
        if not loop_started:
            loop_started.append(clock())
            assert gc.isenabled()  # the loop collects what the session makes
        look(step)

    gc.callbacks.append(on_collection)
    started = clock()
    try:
        summary = _session(repo, tmp_path, look_and_note)
    finally:
        gc.callbacks.remove(on_collection)
    assert summary["stop_reason"] == "duration reached" and len(counts) > SECOND_LOOK
    # no collection between the session's start and its first step; the loop's own ones came after
    assert [c for c in collections if started <= c[0] < loop_started[0]] == []
    assert gc.isenabled()
    # inside the loop, every object from before the session (and the start-up's own) is in the permanent
    # generation, which collections skip, and stays there
    assert min(counts[0], counts[SECOND_LOOK - 1]) >= n_before
    # afterwards the process collects as before: nothing frozen, the old objects tracked in the generations
    assert gc.get_freeze_count() == 0
    assert any(o is made_before for o in gc.get_objects(generation=2))


def test_a_session_ended_by_an_error_unfreezes_too(repo, tmp_path):
    counts = []  # the freeze count at the first step and at the failing one, None between

    def fail(step):
        counts.append(gc.get_freeze_count() if len(counts) + 1 in (1, SECOND_LOOK) else None)  # see above
        if len(counts) == SECOND_LOOK:
            raise RuntimeError("a callback that fails")

    summary = _session(repo, tmp_path, fail)
    assert summary["stop_reason"].startswith("internal error: RuntimeError") and len(counts) == SECOND_LOOK
    assert min(counts[0], counts[-1]) > 0 and gc.get_freeze_count() == 0


def test_a_session_that_cannot_start_gives_the_collector_back(repo, tmp_path):
    from closedloop.sources import SourceError

    over = {"source.name": "no-such-stream-anywhere", "source.resolve_timeout_s": 0.5}
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs_lsl.toml", over)
    assert gc.isenabled()
    with pytest.raises(SourceError):
        LiveSession(resolved, 5.0, tmp_path / "s", show_status=False).run()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()  # a process that runs without it (a lab's own script) keeps it off
    try:
        with pytest.raises(SourceError):
            LiveSession(resolved, 5.0, tmp_path / "t", show_status=False).run()
        assert not gc.isenabled()
    finally:
        gc.enable()
