"""The live start-up: the kernels load in the background, and nothing loads there once the loop may run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from closedloop.live import warmup as warmup_module
from closedloop.live.warmup import Warmup


def test_a_failed_kernel_warm_up_is_kept_and_still_lets_the_session_go_on(monkeypatch):
    def broken(resolved):
        raise RuntimeError("no channels")

    monkeypatch.setattr(warmup_module, "guess_channels", broken)
    warm = Warmup(resolved=None).start()
    warm.join()
    assert isinstance(warm.error, RuntimeError)


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


@pytest.mark.lsl
@pytest.mark.timeout(600)
def test_nothing_heavy_is_imported_in_the_background_while_the_loop_runs(tmp_path):
    # an import holds the GIL the loop needs every chunk: the report's plotting stack waits for the end
    code = (
        "import sys, json\n"
        "from closedloop.config import load_pipeline\n"
        "from closedloop.live.runtime import LiveSession\n"
        "seen = []\n"
        "on_step = lambda step: seen.append('matplotlib' in sys.modules)\n"
        f"resolved = load_pipeline({str(Path(__file__).resolve().parents[2] / 'pipelines' / 'alpha_tacs.toml')!r})\n"
        f"summary = LiveSession(resolved, 2.0, {str(tmp_path / 'out')!r}, show_status=False, on_step=on_step).run()\n"
        "print(json.dumps({'frames': len(seen), 'with_matplotlib': sum(seen), 'after': 'matplotlib' in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=500)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["frames"] > 0 and got["with_matplotlib"] == 0
    assert got["after"] and (tmp_path / "out" / "report.html").stat().st_size > 0  # imported for the report, at the end
