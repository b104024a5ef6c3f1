"""The dashboard through the command line: ``run --dashboard`` prints its address, ``view`` serves a recording."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("tornado", reason="the dashboard extra (tornado) is not installed")

REPO = Path(__file__).resolve().parents[2]
URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")


def _default_sigint() -> None:
    """Give the child the default SIGINT disposition, as a terminal's foreground process has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Command:
    """A closedloop command in a subprocess, its stderr read line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "closedloop", *args],
            cwd=cwd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            # a shell's background job (a CI script run with &) ignores SIGINT, and so would the child: Python
            # then installs no KeyboardInterrupt handler and Ctrl-C (the test's SIGINT) could not end `view`
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def url(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                m = URL.search(line)
                if m:
                    return m.group(1)
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no dashboard address within {timeout} s: {''.join(self.lines)}")

    def wait(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


def test_run_prints_the_dashboard_address_and_view_serves_the_recording(tmp_path):
    out = tmp_path / "session"
    run = Command("run", "alpha_tacs", "-d", "5", "-q", "--dashboard", "--port", "0", "--out", str(out), cwd=tmp_path)
    url = run.url()
    info = json.loads(urllib.request.urlopen(url + "api/info", timeout=10).read())
    assert info["mode"] == "live" and info["features"] == ["theta", "alpha", "theta_alpha"]
    assert run.wait() == 0, "".join(run.lines)
    assert (out / "session.xdf").is_file()

    view = Command("view", str(out), "--port", "0", "--no-browser", cwd=tmp_path)
    url = view.url()
    info = json.loads(urllib.request.urlopen(url + "api/info", timeout=10).read())
    # the timeline holds the 5 s of data and the final ramp-down after them (its commands come later)
    assert info["mode"] == "recorded" and info["end_s"] > 4.0
    assert info["end_s"] == pytest.approx(last_command_s(out / "session.xdf"), abs=2e-3)
    window = json.loads(urllib.request.urlopen(url + "api/window?t=3", timeout=10).read())
    assert window["t"] == 3.0 and window["eeg"]["t"][-1] <= 3.0
    view.proc.send_signal(signal.SIGINT)
    assert view.wait(30) == 0


def last_command_s(path: Path) -> float:
    """Time of the last command handed to the device, from the first EEG sample (pipeline time base)."""
    from closedloop.recording import XDFReader
    from closedloop.recording.session import APPLIED_STREAM

    reader = XDFReader(path)
    eeg = next(s for s in reader.streams.values() if s.desc("closedloop/role") == "eeg")
    applied = next(s for s in reader.streams.values() if s.name == APPLIED_STREAM)
    _, eeg_t = reader.read_stream(eeg.stream_id)
    _, app_t = reader.read_stream(applied.stream_id)
    offset = float(eeg.desc("closedloop/pipeline_offset") or 0.0)
    return float(app_t[-1] - (eeg_t[0] + offset))
