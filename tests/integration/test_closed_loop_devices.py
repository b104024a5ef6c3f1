"""Closed-loop sessions (``LiveSession``, synthetic EEG) through every adapter, ending with the device safe.

Each session runs a pipeline of ``pipelines/`` for a few seconds with a temporary
copy of its device profile pointed at an emulator (or a local sink), with a
threshold the synthetic EEG always crosses, so that the loop fires at least once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import numpy as np  # noqa: E402
import pylsl  # noqa: E402
from adapter_helpers import ByteSink, wait_for  # noqa: E402

from closedloop.adapters.emulators import MagProEmulator, MagstimEmulator  # noqa: E402
from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.recording import XDFReader  # noqa: E402
from closedloop.recording.session import APPLIED_CHANNELS, APPLIED_STREAM  # noqa: E402
from closedloop.types import Command  # noqa: E402

pytestmark = [pytest.mark.lsl, pytest.mark.timeout(40)]

SESSION_S = 3.5
#: Fire as soon as possible: log10 alpha power is always below 100, and 2 frames suffice.
FIRE_NOW = {"controller.direction": "below", "controller.threshold": 100.0, "controller.onset": 2}
NO_REPORT = {"recording.report": False}  # the XDF is still written; the HTML report is not under test here


def profile_copy(repo, tmp_path, name: str, replace: dict[str, str]):
    text = (repo / "devices" / f"{name}.toml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}_test.toml"
    path.write_text(text)
    return path


def run_session(repo, tmp_path, pipeline: str, profile, overrides=None):
    resolved = load_pipeline(
        repo / "pipelines" / pipeline, {"device.profile": str(profile), **NO_REPORT, **(overrides or {})}
    )
    session = LiveSession(resolved, SESSION_S, tmp_path / "out", show_status=False)
    summary = session.run()
    assert summary["stop_reason"] == "duration reached", summary["stop_reason"]
    assert summary["frames"] > 0
    assert summary["adapter_refusals"] == 0 and session.adapter.refused == 0  # never outside the profile
    assert session.pipeline.safety.counts.get("refuse", 0) == 0
    assert session.adapter.fault is None
    return session, summary


def trains_allowed(session) -> int:
    return int(session.pipeline.safety.account.trains)


# -- rTMS ---------------------------------------------------------------------------------
def test_magstim_session_fires_a_train_and_ends_disarmed(repo, tmp_path):
    emu = MagstimEmulator(armed_timeout_s=1.0, charge_s=0.02)
    try:
        port = emu.open_pty()
        prof = profile_copy(repo, tmp_path, "magstim_rapid2", {'port = "/dev/ttyUSB0"': f'port = "{port}"'})
        session, _ = run_session(
            repo, tmp_path, "alpha_rtms_magstim.toml", prof, {**FIRE_NOW, "device.motor_threshold_pct_mso": 50.0}
        )
        assert len(emu.trains) == trains_allowed(session) == 1  # every allowed train reached the unit
        _, power, rate, pulses = emu.trains[0]
        assert (power, rate, pulses) == (55, 20.0, 32)  # 110 %MT of a 50 %MSO threshold, the verified cell
        assert emu.duration_ds == 16
        assert emu.auto_disarms == 0  # kept alive by polling while armed
        assert emu.safe and not emu.remote  # disarmed, remote control handed back
    finally:
        emu.close()


def test_magpro_session_starts_a_train_and_ends_disabled(repo, tmp_path):
    emu = MagProEmulator()
    try:
        port = emu.open_pty()
        prof = profile_copy(repo, tmp_path, "magpro_x100", {'port = "/dev/ttyUSB0"': f'port = "{port}"'})
        session, _ = run_session(
            repo, tmp_path, "alpha_rtms_magpro.toml", prof, {**FIRE_NOW, "device.motor_threshold_pct_mso": 50.0}
        )
        trains = [p for p in emu.pulses if p[2] == "train"]
        assert len(trains) == trains_allowed(session) == 1 and len(emu.pulses) == 1
        assert trains[0][1] == 55 and emu.train == (20.0, 32, 1, 5.0)
        assert emu.safe and emu.amp_a == 0  # disabled, amplitude 0
    finally:
        emu.close()


def test_simulated_rtms_session_fires_and_ends_disarmed(repo, tmp_path):
    session, _ = run_session(repo, tmp_path, "alpha_rtms_magstim.toml", repo / "devices" / "sim_rtms.toml", FIRE_NOW)
    a = session.adapter
    assert len(a.trains) == trains_allowed(session) == 1
    _, intensity, rate, n = a.trains[0]
    assert (intensity, rate, n) == (110.0, 20.0, 32)
    assert not a.armed and not a.connected
    # the train's parameters are in the recording, with the command that fired it
    import json

    import pyxdf

    streams, _ = pyxdf.load_xdf(str(tmp_path / "out" / "session.xdf"))
    extra = next(s for s in streams if s["info"]["name"][0] == "closedloop-applied-extra")
    fired = [json.loads(row[0]) for row in extra["time_series"] if json.loads(row[0]).get("fire") == 1.0]
    assert len(fired) == 1 and fired[0]["intensity_pct"] == 110.0 and fired[0]["pulses"] == 32


def test_ttl_session_sends_one_trigger_per_pulse_and_stops(repo, tmp_path):
    sink = ByteSink()
    try:
        port = sink.open_pty()
        prof = profile_copy(
            repo,
            tmp_path,
            "ttl_trigger",
            {'port = "/dev/ttyUSB0"': f'port = "{port}"', 'line = "rts"': 'line = "byte"'},
        )
        session, _ = run_session(repo, tmp_path, "alpha_ttl.toml", prof, FIRE_NOW)
        assert trains_allowed(session) == 1
        a = session.adapter
        assert not a.armed and not a.connected  # stopped: its device thread has ended, nothing more is sent
        sent = a.log.records(["tx"])
        assert [r.data for r in sent] == [b"\x01"] * 32  # the train's 32 pulses, nothing more
        assert wait_for(lambda: len(sink.received) >= len(sent), 10.0)
        assert [m for _, m in sink.received] == [b"\x01"] * 32  # all arrived, no other byte
        # at 20 Hz (the adapter's send times; the median, so that one late pulse on a busy machine does not count)
        assert np.median(np.diff([r.time for r in sent])) == pytest.approx(1 / 20.0, rel=0.2)
    finally:
        sink.close()


# -- TUS --------------------------------------------------------------------------------------
def test_simulated_tus_session_sonicates_for_the_configured_length(repo, tmp_path):
    session, _ = run_session(
        repo,
        tmp_path,
        "alpha_tus_sim.toml",
        repo / "devices" / "sim_tus.toml",
        {**FIRE_NOW, "controller.sonication.duration_s": 1.0},
    )
    a = session.adapter
    assert len(a.sonications) == 1 == session.pipeline.safety.dose["sonications"]
    start, end, params = a.sonications[0]
    # held for sonication_s of EEG frames, then switched off: the controller counts frame time (a busy machine
    # delays both commands, and the wall-clock length by as much as their latencies differ)
    reader = XDFReader(tmp_path / "out" / "session.xdf")
    applied = next(st for st in reader.streams.values() if st.name == APPLIED_STREAM)
    values, issued = reader.read_stream(applied.stream_id)
    on = values[:, APPLIED_CHANNELS.index("on")] > 0
    i_on = int(np.argmax(on))
    i_off = i_on + int(np.argmin(on[i_on:]))
    assert on[i_on] and not on[i_off]
    frame_time = values[:, APPLIED_CHANNELS.index("frame_time")]
    cfg = session.resolved.config
    hop = cfg.features.hop_samples / cfg.sfreq
    assert frame_time[i_off] - frame_time[i_on] == pytest.approx(1.0, abs=hop + 1e-9)
    assert (start, end) == (issued[i_on], issued[i_off])  # the device sonicated exactly while told to
    assert params["mechanical_index"] == pytest.approx(0.6 / 0.5**0.5)
    assert params["ispta_mW_per_cm2"] == pytest.approx(480.0)  # 12 W/cm² x 0.04 (pipelines/alpha_tus_sim.toml)
    assert not a.sonicating(a.clock()) and not a.armed


# -- LSL command streams -----------------------------------------------------------------------
def test_lsl_command_session_publishes_stimulation_then_an_explicit_zero(repo, tmp_path):
    sid = f"cltest-cl-cmd-{uuid.uuid4().hex[:8]}"
    prof = profile_copy(
        repo,
        tmp_path,
        "lsl_commands",
        {'stream_name = "closedloop-commands"': f'stream_name = "{sid}"\nsource_id = "{sid}"'},
    )
    resolved = load_pipeline(
        repo / "pipelines" / "alpha_lsl_commands.toml",
        {
            "device.profile": str(prof),
            **NO_REPORT,
            "controller.lower": 100.0,
            "controller.upper": 200.0,
            "controller.onset": 2,
            "controller.amplitude_mA": 0.2,
        },
    )
    session = LiveSession(resolved, SESSION_S, tmp_path / "out", show_status=False)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(session.run()), daemon=True)
    runner.start()
    found = pylsl.resolve_byprop("source_id", sid, minimum=1, timeout=10.0)
    markers = pylsl.resolve_byprop("source_id", f"{sid}-markers", minimum=1, timeout=10.0)
    assert found and markers
    inlet, minlet = pylsl.StreamInlet(found[0]), pylsl.StreamInlet(markers[0])
    inlet.open_stream(timeout=5.0)
    minlet.open_stream(timeout=5.0)
    samples, events = [], []
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        chunk, _ = inlet.pull_chunk(timeout=0.05)
        samples += chunk
        mchunk, _ = minlet.pull_chunk(timeout=0.0)
        events += [json.loads(m[0]) for m in mchunk]
        if not runner.is_alive() and any(e.get("event") == "stop" for e in events):
            break
    runner.join(timeout=5.0)
    assert result["stop_reason"] == "duration reached" and result["adapter_refusals"] == 0
    amps = [s[0] for s in samples]
    assert max(amps) > 0 and max(amps) <= 0.2 + 1e-9  # stimulated, within the controller's amplitude
    assert samples[-1][:3] == [0.0, 0.0, 0.0]  # the last thing a bridge sees: zero, off
    assert events[-1]["event"] == "stop" and not session.adapter.armed


def test_after_a_train_abort_rearm_lets_the_next_train_fire(repo):
    from closedloop.adapters import LimitViolation, build_adapter
    from closedloop.config.profile import load_profile

    emu = MagstimEmulator(armed_timeout_s=1.0, charge_s=0.02)
    a = None
    try:
        emu.open_pty()
        prof = load_profile(repo / "devices" / "magstim_rapid2.toml")
        prof = prof.model_copy(update={"adapter_options": {**prof.adapter_options, "port": emu.url}})
        a = build_adapter(prof, motor_threshold_pct_mso=50.0)
        a.connect()
        a.arm()
        train = {"intensity_pct": 110.0, "pulses": 32.0, "train_duration_s": 1.6}
        a.apply(Command(0.0, 20.0, True, 0.0, {**train}, fire=True), 0.0)
        assert wait_for(lambda: len(emu.trains) == 1, 10.0)
        a.apply(Command(0.0, 20.0, False, 0.5, {**train}, abort=True), 0.5)  # the layer cut it
        assert wait_for(lambda: not emu.armed, 10.0)
        assert len(emu.trains) == 1 and not emu.armed and not a.armed  # aborted: disarmed
        with pytest.raises(LimitViolation, match="not armed"):
            a.apply(Command(0.0, 20.0, True, 10.0, {**train}, fire=True), 10.0)
        a.rearm()  # returns at once; the device thread arms after the disarm
        assert wait_for(lambda: a.armed, 10.0)
        assert a.armed and emu.armed
        a.apply(Command(0.0, 20.0, True, 10.0, {**train}, fire=True), 10.0)
        a.apply(Command(0.0, 20.0, True, 10.05, {**train}), 10.05)  # must not replace the fire
        assert wait_for(lambda: len(emu.trains) == 2, 10.0)
        assert len(emu.trains) == 2 and a.fault is None
    finally:
        if a is not None:
            a.stop()
        emu.close()
    assert emu.safe
