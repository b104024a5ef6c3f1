"""The live start-up: the session waits for the kernels' warm-up, not for the report's plotting stack."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from closedloop.live import warmup as warmup_module
from closedloop.live.warmup import Warmup


@pytest.fixture
def report_gate(monkeypatch):
    """Make the report's warm-up wait until the test releases it; return (started, release)."""
    from closedloop.offline import report

    started, release = threading.Event(), threading.Event()

    def prepare() -> None:
        started.set()
        assert release.wait(30)

    monkeypatch.setattr(report, "prepare", prepare)
    return started, release


def test_the_session_waits_for_the_kernels_not_for_the_report(monkeypatch, report_gate):
    started, release = report_gate
    loaded = threading.Event()
    monkeypatch.setattr(Warmup, "_kernels", lambda self: loaded.set())
    warm = Warmup(resolved=None, report=True).start()
    warm.join()  # returns while the report's stack is still loading
    assert loaded.is_set()
    assert started.wait(30)
    assert not warm.join_report(timeout=0)
    release.set()
    assert warm.join_report(timeout=30)
    assert warm.error is None and warm.report_error is None


def test_a_failed_kernel_warm_up_is_kept_and_still_lets_the_session_go_on(monkeypatch, report_gate):
    started, release = report_gate
    release.set()

    def broken(resolved):
        raise RuntimeError("no channels")

    monkeypatch.setattr(warmup_module, "guess_channels", broken)
    warm = Warmup(resolved=None, report=True).start()
    warm.join()
    assert isinstance(warm.error, RuntimeError)
    assert warm.join_report(timeout=30) and started.is_set() and warm.report_error is None


def test_a_failed_report_warm_up_is_kept_apart(monkeypatch):
    from closedloop.offline import report

    def broken() -> None:
        raise OSError("no font cache")

    monkeypatch.setattr(report, "prepare", broken)
    monkeypatch.setattr(Warmup, "_kernels", lambda self: None)
    warm = Warmup(resolved=None, report=True).start()
    warm.join()
    assert warm.join_report(timeout=30)
    assert warm.error is None and isinstance(warm.report_error, OSError)


def test_without_a_report_nothing_else_runs_and_an_unstarted_warm_up_is_done():
    assert Warmup(resolved=None, report=False).join_report(timeout=0)


def test_importing_the_live_runtime_leaves_the_processing_stack_to_the_warm_up():
    # the warm-up thread imports numba, scipy.signal and the stages while liblsl resolves the stream
    code = (
        "import sys, closedloop.live.runtime\n"
        "heavy = ('numba', 'scipy.signal', 'closedloop.pipeline', 'closedloop.features', 'closedloop.recording',"
        " 'matplotlib')\n"
        "print(sorted(m for m in sys.modules if m in heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
