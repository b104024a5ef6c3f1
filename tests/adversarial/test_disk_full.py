"""The disk fills mid-session: stimulation ramps down, and the summary survives (in a fallback folder).

A real ENOSPC from the kernel: the session folder is a small tmpfs mounted
for the test (root only; skipped otherwise), filled by another writer while
the session stimulates.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from lying_world import DeviceSampler  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.lsl, pytest.mark.timeout(480)]


@pytest.fixture
def small_disk(tmp_path):
    """A 130 MB tmpfs (the recorder wants 100 MB free before it starts), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=130m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder) -> None:
    """Write zeros into ``folder`` until the disk is full."""
    block = b"\0" * (1 << 20)
    with open(folder / "filler.bin", "wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_a_full_disk_stops_stimulation_and_the_summary_lands_elsewhere(repo, tmp_path, small_disk, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    resolved = load_pipeline(
        repo / "pipelines" / "alpha_tacs.toml",
        {
            "controller.lower": 100.0,  # stimulate all the time
            "controller.upper": 200.0,
            "controller.onset": 1,
            "controller.blanking_s": 0.0,
            "recording.report": False,
        },
    )
    out = small_disk / "session"
    running = threading.Event()
    session = LiveSession(
        resolved, 120.0, out, show_status=False, on_progress=lambda msg: running.set() if msg == "running" else None
    )
    filled = {}
    with DeviceSampler(session.adapter.output_mA) as device:

        def fill_when_stimulating() -> None:
            # the first session of a fresh install compiles every kernel first: minutes on a busy machine
            assert running.wait(timeout=300.0), "the session never started its loop"
            device.wait_until(lambda a: a >= 0.4, timeout=60.0)
            filled["at"] = device.t[-1]
            fill(small_disk)

        threading.Thread(target=fill_when_stimulating, daemon=True).start()
        summary = session.run()
    assert "at" in filled
    assert summary["stop_reason"].startswith("recording failed") and "No space left" in summary["stop_reason"]
    t, a = device.arrays()
    assert a[-1] == 0.0 and summary["final_amplitude_mA"] == 0.0  # ramped down ...
    assert summary["duration_s"] < 120.0  # ... and the session ended, well before its duration
    # the session folder is full: summary.json is in the fallback folder, whole
    rescued = session.summary_path
    assert rescued is not None and rescued.parent != out and rescued.name == "summary.json"
    assert str(tmp_path / "state") in str(rescued)
    on_disk = json.loads(rescued.read_text())
    assert on_disk["stop_reason"] == summary["stop_reason"] and on_disk["charge_C"] == summary["charge_C"]
    assert summary["summary_rescued_to"] == str(rescued)
