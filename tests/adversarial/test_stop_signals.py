"""Every stop signal takes the Ctrl-C path: ramp down, footers, summary — checked on the device.

``closedloop run`` runs as a real subprocess (its own LSL synthetic source)
and receives SIGTERM (kill, systemd, docker stop), SIGHUP (terminal closed),
SIGQUIT or SIGINT while stimulating. With the NIC2 emulator (in this
process) the device's own state is sampled; with the simulated device, the
commands the device was given are read back from session.xdf.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.adapters import nic2_protocol as P  # noqa: E402
from closedloop.adapters.emulators import NIC2Emulator  # noqa: E402
from closedloop.recording import XDFReader, scan_xdf  # noqa: E402
from closedloop.recording.session import APPLIED_CHANNELS, APPLIED_STREAM  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.lsl, pytest.mark.timeout(180)]

ALWAYS_ON = [
    "controller.lower=100.0",  # log10 alpha power is always below: stimulate all the time
    "controller.upper=200.0",
    "controller.onset=1",
    "controller.blanking_s=0.0",
    "recording.report=false",
]


def start_run(pipeline: str, out, *settings: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "closedloop", "run", pipeline, "--duration", "300", "--out", str(out), "-q"]
    for s in (*ALWAYS_ON, *settings):
        args += ["--set", s]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def applied(path) -> tuple[np.ndarray, np.ndarray]:
    """Issue times and amplitudes of the commands handed to the device, from a (growing) session.xdf."""
    reader = XDFReader(path)
    stream = next((s for s in reader.streams.values() if s.name == APPLIED_STREAM), None)
    if stream is None:
        return np.zeros(0), np.zeros(0)
    values, stamps = reader.read_stream(stream.stream_id)
    return stamps, values[:, APPLIED_CHANNELS.index("amplitude_mA")]


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"closedloop run exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stimulating_in_recording(path, level_mA: float):
    def check() -> bool:
        if not path.exists():
            return False
        try:
            _, amps = applied(path)
        except (ValueError, OSError):
            return False
        return amps.size > 0 and amps.max() >= level_mA

    return check


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGINT"])
def test_a_stop_signal_ramps_down_and_writes_everything(repo, tmp_path, sig):
    out = tmp_path / "out"
    proc = start_run(str(repo / "pipelines" / "alpha_tacs.toml"), out)
    try:
        wait_for(stimulating_in_recording(out / "session.xdf", 0.3), 90.0, "stimulation", proc)
        os.kill(proc.pid, getattr(signal, sig))
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    expected = "interrupted by the operator (Ctrl-C)" if sig == "SIGINT" else f"stopped by {sig}"
    assert summary["stop_reason"] == expected
    assert summary["final_amplitude_mA"] == 0.0 and summary["amplitude_max_mA"] >= 0.3
    assert summary["duration_s"] < 300.0 and summary["requested_duration_s"] == 300.0  # the actual duration
    assert scan_xdf(out / "session.xdf").ok  # footers written: a complete file
    # what the device was given after the signal: down to zero at the profile's ramp rate (0.2 mA/s), no faster
    t, amps = applied(out / "session.xdf")
    peak = int(np.argmax(amps))
    down_t, down_a = t[peak:], amps[peak:]
    assert down_a[-1] == 0.0 and np.all(np.diff(down_a) <= 1e-12)
    rate = 0.2  # mA/s, sim_tacs's max_ramp_rate_mA_per_s (the normal stop is not an emergency)
    assert (down_a[0] - down_a[-1]) / (down_t[-1] - down_t[0]) <= rate * 1.05


def test_a_second_signal_stops_at_the_emergency_rate(repo, tmp_path):
    out = tmp_path / "out"
    proc = start_run(str(repo / "pipelines" / "alpha_tacs.toml"), out)
    try:
        wait_for(stimulating_in_recording(out / "session.xdf", 0.5), 90.0, "stimulation", proc)
        os.kill(proc.pid, signal.SIGTERM)

        def ramping_down() -> bool:
            try:
                _, amps = applied(out / "session.xdf")
            except (ValueError, OSError):
                return False
            return amps.size > 1 and amps[-1] < amps.max() - 0.01

        wait_for(ramping_down, 30.0, "the normal ramp-down to start", proc)
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_amplitude_mA"] == 0.0
    # the second signal is an emergency stop; a watchdog event only ever comes with a watchdog trip
    assert summary["safety_events"].get("emergency", 0) >= 1
    assert summary["safety_events"].get("watchdog", 0) <= summary["watchdog_trips"]


@pytest.fixture
def nic2():
    emu = NIC2Emulator(ramp_s=0.05)
    emu.serve_tcp()
    yield emu
    emu.close()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_the_starstim_is_left_safe_when_closedloop_is_killed_politely(repo, tmp_path, nic2, sig):
    """The reported case: SIGTERM left the Starstim (NIC2 emulator) at 620 µA after closedloop died."""
    text = (repo / "devices" / "starstim_nic2.toml").read_text().replace("tcp_port = 1235", f"tcp_port = {nic2.port}")
    profile = tmp_path / "starstim_emulated.toml"
    profile.write_text(text)
    out = tmp_path / "out"
    proc = start_run(
        str(repo / "pipelines" / "alpha_tacs_starstim.toml"),
        out,
        f"device.profile={json.dumps(str(profile))}",
        "controller.amplitude_mA=0.62",
    )
    try:
        wait_for(lambda: nic2.amplitudes_uA[0] >= 600.0, 90.0, "620 µA on the Starstim", proc)
        os.kill(proc.pid, getattr(signal, sig))
        levels = []
        deadline = time.monotonic() + 60.0
        while proc.poll() is None and time.monotonic() < deadline:  # watch the device while closedloop stops
            levels.append(nic2.amplitudes_uA[0])
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert nic2.safe and nic2.amplitudes_uA[0] == 0.0  # the device is off ...
    assert nic2.state == P.NOT_LOADED and nic2.aborts == 1  # ... its protocol aborted and unloaded
    assert levels and max(levels) <= 620.0 + 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == f"stopped by {sig}" and summary["final_amplitude_mA"] == 0.0
