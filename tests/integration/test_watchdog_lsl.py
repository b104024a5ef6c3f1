"""Kill the EEG source mid-session over real LSL: stimulation reaches zero in time, the session ends cleanly.

Runs against the live runtime as it is: when the stream is lost the loop ends
with "source lost" and ramps down through the safety layer; if frames stopped
long enough before that, the watchdog's emergency ramp has already begun and
the layer keeps its rate. The configured time to zero is therefore at most
the watchdog timeout plus the amplitude over the normal ramp rate.
"""

from __future__ import annotations

from closedloop.lslconfig import configure_lsl

configure_lsl()

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402

import pylsl  # noqa: E402
import pytest  # noqa: E402
import tomli_w  # noqa: E402
from conftest import wait_for_stream  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

AMPLITUDE = 1.0
RAMP = 1.0  # mA/s: the test device's normal ramp rate (a copy of sim_tacs with faster ramps)
EMERGENCY = 4.0


def write_setup(tmp_path, repo, stream):
    devices = tmp_path / "devices"
    shutil.copytree(repo / "devices", devices)
    prof = tomllib.loads((devices / "sim_tacs.toml").read_text())
    prof["device"]["name"] = "fast_tacs"
    prof["limits"]["max_ramp_rate_mA_per_s"]["value"] = RAMP
    prof["limits"]["emergency_ramp_rate_mA_per_s"]["value"] = EMERGENCY
    (devices / "fast_tacs.toml").write_bytes(tomli_w.dumps(prof).encode())
    raw = tomllib.loads((repo / "pipelines" / "alpha_tacs_lsl.toml").read_text())
    raw["source"].update(name=stream, source_id=stream)
    raw["device"]["profile"] = "fast_tacs"
    raw["safety"] = {}
    # open loop, on from the first frame: there is something to ramp down whatever the EEG does
    raw["controller"] = {
        "kind": "schedule",
        "amplitude_mA": AMPLITUDE,
        "frequency_Hz": 10.0,
        "on_s": 600.0,
        "ramp_s": AMPLITUDE / RAMP,
    }
    (tmp_path / "pipelines").mkdir()
    path = tmp_path / "pipelines" / "watchdog.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    return path


@pytest.mark.lsl
@pytest.mark.timeout(90)
def test_killing_the_source_ramps_stimulation_to_zero_in_time(tmp_path, repo, unique_name):
    synth = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "closedloop",
            "synth",
            "--name",
            unique_name,
            "--source-id",
            unique_name,
            "--rate",
            "500",
            "--duration",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        resolved = load_pipeline(write_setup(tmp_path, repo, unique_name))
        wait_for_stream(unique_name)
        watchdog = resolved.envelope()["watchdog_timeout_s"]["value"]
        session = LiveSession(resolved, 40.0, tmp_path / "out", show_status=False)
        applied: list[tuple[float, float]] = []
        apply = session.adapter.apply

        def record(cmd, now):
            applied.append((pylsl.local_clock(), cmd.amplitude_mA, cmd.time))
            apply(cmd, now)

        session.adapter.apply = record
        killed: list[float] = []
        at_full = [0]

        def on_step(step):
            if step.allowed.amplitude_mA >= AMPLITUDE:
                at_full[0] += 1
            if at_full[0] == 10 and not killed:  # stimulating at full amplitude: pull the plug
                synth.kill()
                killed.append(pylsl.local_clock())

        session.on_step = on_step
        summary = session.run()
    finally:
        synth.kill()
        synth.wait(5)
    assert killed, f"never reached {AMPLITUDE} mA: {summary}"
    t_kill = killed[0]
    after = [(t, a, tc) for t, a, tc in applied if t >= t_kill]
    assert after and after[-1][1] == 0.0
    t_zero = next(t for t, a, _ in after if a == 0.0)
    # configured time: noticing (at most the watchdog timeout) plus a ramp at the normal rate, with margin
    bound = watchdog + AMPLITUDE / RAMP
    elapsed = t_zero - t_kill
    print(f"\napplied amplitude reached 0 mA {elapsed * 1e3:.0f} ms after the kill (bound {bound:.2f} s)")
    assert elapsed <= bound + 1.0
    # every command after the kill only went down, never faster than the emergency rate
    # (on the safety layer's own time base, which each command carries)
    for (_, a0, t0), (_, a1, t1) in zip(after, after[1:]):
        assert a1 <= a0 and a0 - a1 <= EMERGENCY * max(t1 - t0, 0.0) + 1e-9
    assert "source lost" in summary["stop_reason"]
    assert session.adapter.output_mA(pylsl.local_clock() + 10.0) == 0.0
    # the final ramp is the session's stop (at the emergency rate if the watchdog's ramp had begun), logged as
    # one `stop` event; a `watchdog` event only ever comes with a watchdog trip (frames away for its timeout)
    events = [(e.kind, e.reason) for e in session.driver.safety.log.events]
    assert any(k == "stop" and r.startswith("session end: source lost") for k, r in events), events
    assert summary["safety_events"]["stop"] == 1
    assert summary["safety_events"].get("watchdog", 0) <= summary["watchdog_trips"], (summary, events)
    assert (tmp_path / "out" / "summary.json").exists()
