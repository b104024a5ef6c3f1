"""Adapter building blocks: checksums, the I/O worker, limits, the registry, the simulated devices."""

from __future__ import annotations

import threading
import time
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from adapter_helpers import wait_for
from hypothesis import given
from hypothesis import strategies as st

import closedloop.adapters as registry
from closedloop.adapters import Adapter, DeviceFault, LimitViolation, build_adapter
from closedloop.adapters.command_checks import TrainGuard, check_command
from closedloop.adapters.crc import crc8_maxim, magstim_crc
from closedloop.adapters.iolog import IOLog
from closedloop.adapters.worker import DeviceWorker
from closedloop.config.profile import DeviceProfile, list_profiles, load_profile
from closedloop.types import Command

pytestmark = pytest.mark.timeout(30)


class Clock:
    """A hand-driven clock for the simulated devices."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# -- checksums -------------------------------------------------------------------------
def test_magstim_checksum_matches_the_published_messages():
    # "Q@n", "R@m", "EBx", "EAy", "EHr": commands as the public protocol description spells them
    for msg in (b"Q@n", b"R@m", b"EBx", b"EAy", b"EHr"):
        assert magstim_crc(msg[:2]) == msg[2]


def test_crc8_maxim_catalogue_check_value():
    assert crc8_maxim(b"123456789") == 0xA1  # CRC-8/MAXIM-DOW check value
    assert crc8_maxim(b"") == 0


@given(st.binary(max_size=64))
def test_crc8_maxim_residue_is_zero(data):
    # a reflected CRC without final XOR: the message followed by its CRC has CRC 0
    assert crc8_maxim(data + bytes([crc8_maxim(data)])) == 0


@given(st.binary(min_size=1, max_size=32), st.integers(0, 7))
def test_crc8_maxim_detects_every_single_bit_error(data, bit):
    flipped = bytes([data[0] ^ (1 << bit)]) + data[1:]
    assert crc8_maxim(flipped) != crc8_maxim(data)


# -- the I/O worker --------------------------------------------------------------------
def test_worker_runs_in_order_and_latest_wins_at_the_tail():
    errors: list[BaseException] = []
    w = DeviceWorker("t", errors.append)
    gate = threading.Event()
    done: list[object] = []
    w.start()
    try:
        w.submit(gate.wait)  # hold the worker while the queue fills
        w.submit(lambda: done.append("a"))
        futures = [w.submit(lambda k=k: done.append(k), key="apply") for k in range(5)]
        w.submit(lambda: done.append("b"))
        w.submit(lambda: done.append(9), key="apply")
        gate.set()
        w.call(lambda: None, 2.0)
        assert done == ["a", 4, "b", 9]
        assert all(f.cancelled() for f in futures[:4]) and w.jobs_replaced == 4
    finally:
        w.stop()
    assert errors == []


def test_worker_urgent_job_cancels_pending_and_errors_are_reported():
    errors: list[BaseException] = []
    w = DeviceWorker("t", errors.append)
    gate = threading.Event()
    done: list[str] = []
    w.start()
    try:
        w.submit(gate.wait)
        pending = [w.submit(lambda: done.append("late")) for _ in range(3)]
        w.submit(lambda: done.append("urgent"), urgent=True)
        w.submit(lambda: 1 / 0)
        gate.set()
        w.call(lambda: None, 2.0)
        assert done == ["urgent"] and all(f.cancelled() for f in pending)
        assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
        with pytest.raises(TimeoutError):
            w.call(lambda: time.sleep(0.5), 0.05)
    finally:
        w.stop()


def test_worker_heartbeat_runs_only_when_the_device_was_not_contacted():
    # judged on timestamps, not on beats per wall second: a busy machine only makes every gap longer
    hb = 0.05
    beats: list[float] = []
    w = DeviceWorker("t", lambda e: None, heartbeat=lambda: beats.append(time.monotonic()), heartbeat_s=lambda: hb)
    w.start()
    try:
        assert wait_for(lambda: len(beats) >= 4, 10.0)  # idle: the heartbeat runs, again and again
        assert np.all(np.diff(beats) >= hb)  # never sooner than heartbeat_s after the previous one
        # contact every 10 ms: a heartbeat is due only where the contacts left a gap of heartbeat_s
        touches: list[tuple[float, float]] = []  # (just before, just after) each touch
        start = len(beats)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            t = time.monotonic()
            w.touch()
            touches.append((t, time.monotonic()))
            time.sleep(0.01)  # the scenario: the device is talked to this often
        later = [b for b in beats[start:] if b > touches[0][1]]
        t_eval = time.monotonic()
        gaps = [after - before for (before, _), (_, after) in zip(touches, touches[1:])]
        gaps.append(t_eval - touches[-1][0])  # since the last touch
        # one beat may have been decided before the first touch; each further one needs a gap of hb
        assert len(later) <= 1 + sum(int(g // hb) for g in gaps)
    finally:
        assert w.stop()


# -- limits ------------------------------------------------------------------------------
def profile(modality: str, limits: dict[str, float], adapter: str = "simulated", **options) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "device": {"name": f"test_{modality}", "modality": modality, "adapter": adapter},
            "limits": {
                k: {"value": v, "source": "test profile, numbers chosen for the test"} for k, v in limits.items()
            },
            "adapter_options": options,
        }
    )


def test_tes_checks_name_every_problem_and_pass_what_is_inside_the_profile():
    timing = {"max_ramp_rate_mA_per_s": 1.0, "emergency_ramp_rate_mA_per_s": 2.0, "max_session_duration_s": 1800.0}
    timing |= {"max_charge_C": 3.6, "watchdog_timeout_s": 0.5, "bad_data_timeout_s": 1.0}
    limits = {"max_amplitude_mA": 2.0, "min_frequency_Hz": 1.0, "max_frequency_Hz": 100.0}
    prof = profile("tes", limits | timing)
    assert check_command(Command(2.0, 100.0, True, 0.0), prof) == []  # the edges are inside
    assert check_command(Command(0.0, 1.0, False, 0.0), prof) == []
    assert check_command(Command(2.5, 10.0, True, 0.0), prof) == ["amplitude 2.5 mA outside 0-2.0 mA"]
    assert check_command(Command(-0.1, 10.0, True, 0.0), prof) == ["amplitude -0.1 mA outside 0-2.0 mA"]
    assert check_command(Command(1.0, 0.5, True, 0.0), prof) == ["frequency 0.5 Hz outside 1.0-100.0 Hz"]
    assert check_command(Command(1.0, 101.0, True, 0.0), prof) == ["frequency 101.0 Hz outside 1.0-100.0 Hz"]
    assert check_command(Command(float("nan"), float("inf"), True, 0.0), prof) == [
        "amplitude_mA is nan (not a finite number)",
        "frequency_Hz is inf (not a finite number)",
    ]


def test_tus_limits_use_mechanical_index_derated_isppa_ispta_and_the_plane_wave_pair(repo):
    prof = load_profile(repo / "devices" / "sim_tus.toml")
    ok = {
        "pnp_MPa": 0.9,
        "center_frequency_MHz": 0.5,
        "isppa_W_per_cm2": 27.0,  # 0.9 MPa in 1.5 MRayl: p² / (2 ρc) = 27 W/cm²
        "duty_cycle": 0.02,
        "prf_Hz": 10.0,
        "burst_s": 0.002,
    }
    assert check_command(Command(0, 0, True, 0, ok, fire=True), prof) == []  # MI 1.27, I_SPTA 540 mW/cm²
    mi = check_command(Command(0, 0, True, 0, {**ok, "pnp_MPa": 1.0, "center_frequency_MHz": 0.25}, fire=True), prof)
    assert mi == ["mechanical index 2 exceeds 1.9"]  # 1.0 / sqrt(0.25); 33 W/cm² is within 30 % of 27
    ispta = check_command(Command(0, 0, True, 0, {**ok, "duty_cycle": 0.03}, fire=True), prof)
    assert ispta == ["I_SPTA 810 mW/cm² (I_SPPA × duty cycle) exceeds 720.0 mW/cm²"]
    pair = check_command(Command(0, 0, True, 0, {**ok, "isppa_W_per_cm2": 5.0}, fire=True), prof)
    assert pair == ["I_SPPA 5 W/cm² disagrees with PNP 0.9 MPa (plane wave in 1.5 MRayl: 27 W/cm², allowed ±30 %)"]
    isppa = check_command(
        Command(0, 0, True, 0, {**ok, "isppa_W_per_cm2": 200.0, "duty_cycle": 0.001}, fire=True), prof
    )
    assert isppa[0] == "I_SPPA 200 W/cm² exceeds 190.0 W/cm²" and "disagrees" in isppa[1]
    off = {k: 0.0 for k in ok}
    assert check_command(Command(0, 0, False, 0, off), prof) == []  # the layer's "off" command passes


def test_tus_adapters_refuse_sonications_without_a_thermal_figure(repo):
    raw = load_profile(repo / "devices" / "sim_tus.toml").model_dump(exclude={"path"})
    del raw["limits"]["thermal_rise_C_per_J_per_cm2"]
    prof = DeviceProfile.model_validate(raw)
    cmd = {"pnp_MPa": 0.3, "center_frequency_MHz": 0.5, "isppa_W_per_cm2": 3.0, "duty_cycle": 0.1}
    assert check_command(Command(0, 0, True, 0, {**cmd, "prf_Hz": 10.0, "burst_s": 0.01}), prof) == [
        "no thermal figure for this setup (limits.thermal_rise_C_per_J_per_cm2): sonications are refused"
    ]


def test_the_adapters_thermal_guard_integrates_what_was_applied(repo):
    guard = TrainGuard.from_profile(load_profile(repo / "devices" / "sim_tus.toml"))  # 0.02 °C per J/cm², 2 °C
    on = Command(0, 10.0, True, 0, {"isppa_W_per_cm2": 12.0, "duty_cycle": 0.05})  # I_SPTA 0.6 W/cm²
    off = Command(0, 0.0, False, 0, {"isppa_W_per_cm2": 0.0, "duty_cycle": 0.0})
    assert guard.check(on, 0.0) == []
    assert guard.check(off, 100.0) == []  # 100 s on: 60 J/cm²
    assert guard.check(off, 500.0) == []  # off time adds nothing
    assert guard.thermal.energy_J_per_cm2 == pytest.approx(60.0)
    assert guard.check(on, 600.0) == []
    assert guard.check(on, 666.0) == []  # 99.6 J/cm²: 1.99 °C
    late = guard.check(on, 666.7)  # 100.02 J/cm² delivered: 2.0 °C exceeded
    assert late and "thermal bound" in late[0] and "exceeds 2.0 °C" in late[0]
    assert guard.thermal.rise_bound_C == pytest.approx(0.02 * 100.02)
    edge = TrainGuard.from_profile(load_profile(repo / "devices" / "sim_tus.toml"))
    edge.check(on, 0.0)
    assert edge.check(on, 166.6) == []  # 99.96 J/cm², + 0.6 W/cm² x 0.05 s slack = 99.99: inside
    assert edge.check(on, 166.62)  # 99.972 + 0.03 = 100.002 J/cm²: refused


def test_rtms_limits_use_the_verified_train_table(repo):
    prof = load_profile(repo / "devices" / "sim_rtms.toml")
    train = {"intensity_pct": 110.0, "pulses": 32.0, "train_duration_s": 1.6}
    assert check_command(Command(0, 20.0, True, 0, train, fire=True), prof) == []
    assert (
        "no verified train-duration cell"
        in check_command(Command(0, 10.0, True, 0, {**train, "pulses": 16.0}, fire=True), prof)[0]
    )
    assert check_command(Command(0, 20.0, True, 0, {**train, "intensity_pct": 120.0}, fire=True), prof)
    assert check_command(Command(0, 0.0, False, 0, {"intensity_pct": 0.0, "pulses": 0.0}), prof) == []


def test_train_guard_interval_and_session_cap():
    g = TrainGuard(min_interval_s=5.0, max_session_pulses=60)
    cmd = Command(0, 20.0, True, 0, {"pulses": 32.0, "train_duration_s": 1.6}, fire=True)
    assert g.check(cmd, 10.0) == []
    g.commit(cmd, 10.0)  # ends at 11.6
    assert "inter-train interval" in g.check(cmd, 16.0)[0]  # 4.4 s after the end
    assert "session pulse cap" in g.check(cmd, 16.6)[0]  # 64 > 60
    assert g.check(Command(0, 20.0, True, 0, {"pulses": 20.0}, fire=True), 16.6) == []


# -- registry ------------------------------------------------------------------------------
def test_registry_finds_builtins_and_entry_points(monkeypatch, repo):
    ep = EntryPoint("thirdparty_sim", "closedloop.adapters.simulated:SimulatedStimulator", "closedloop.adapters")
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == "closedloop.adapters" else [])
    found = registry.available_adapters()
    assert {"simulated", "lsl_commands", "ttl", "magstim", "magpro", "starstim"} <= set(found)
    assert found["thirdparty_sim"].startswith("entry point closedloop.adapters.simulated:")
    base = load_profile(repo / "devices" / "sim_tacs.toml")
    prof = base.model_copy(update={"device": base.device.model_copy(update={"adapter": "thirdparty_sim"})})
    assert type(build_adapter(prof)).__name__ == "SimulatedStimulator"
    bad = base.model_copy(update={"device": base.device.model_copy(update={"adapter": "nope"})})
    with pytest.raises(ValueError, match=r"no adapter named 'nope'; available: \[.*'thirdparty_sim'"):
        build_adapter(bad)


def test_every_shipped_profile_builds_its_adapter(repo, monkeypatch):
    monkeypatch.chdir(repo)
    profiles = list_profiles([repo / "devices"])
    names = {p.device.name for p in profiles}
    assert {"magstim_rapid2", "magpro_x100", "starstim_nic2", "lsl_commands", "ttl_trigger"} <= names
    for prof in profiles:
        kwargs = {"motor_threshold_pct_mso": 50.0} if prof.device.adapter in ("magstim", "magpro") else {}
        a = build_adapter(prof, **kwargs)
        assert isinstance(a, Adapter) and a.fault is None and not a.connected


def test_adapter_refuses_a_profile_without_the_limits_it_enforces():
    prof = profile(
        "rtms",
        {
            "max_intensity_pct": 100,
            "min_inter_train_interval_s": 5,
            "max_pulses_per_session": 100,
            "max_session_duration_s": 100,
            "watchdog_timeout_s": 0.3,
            "bad_data_timeout_s": 2.0,
            "train_max_s_20Hz_110pctMT": 1.6,
        },
        adapter="ttl",
        port="loop://",
    )
    with pytest.raises(ValueError, match=r"lacks limits \['max_frequency_Hz', 'max_pulses_per_train'\]"):
        build_adapter(prof)


def test_cli_devices_lists_adapters_profiles_limits_and_invalid_files(repo, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from closedloop.cli import app

    (tmp_path / "devices").mkdir()
    for f in ("starstim_nic2.toml", "magstim_rapid2.toml"):
        (tmp_path / "devices" / f).write_text((repo / "devices" / f).read_text())
    (tmp_path / "devices" / "broken.toml").write_text(
        '[device]\nname = "broken"\nmodality = "tes"\nadapter = "simulated"\n[limits]\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLOSEDLOOP_DEVICES", raising=False)
    res = CliRunner().invoke(app, ["devices"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for word in (
        "magstim",
        "magpro",
        "starstim",
        "lsl_commands",
        "ttl",
        "simulated",
        "starstim_nic2",
        "magstim_rapid2",
        "train_max_s_20Hz_110pctMT",
        "Chen et al. 1997",
        "tcp_port = 1235",
        "invalid profile",
        "broken.toml",
        "lacks limits",
    ):
        assert word in res.output, word
    one = CliRunner().invoke(app, ["devices", "starstim_nic2"], env={"COLUMNS": "200"})
    assert one.exit_code == 0 and "starstim_nic2" in one.output and "magstim_rapid2" not in one.output


# -- I/O log -------------------------------------------------------------------------------
def test_iolog_is_bounded_and_survives_a_failing_callback():
    seen = []

    def callback(rec):
        seen.append(rec)
        raise RuntimeError("recorder bug")

    log = IOLog(Clock(), maxlen=3, callback=callback)
    for k in range(5):
        log.add("tx", bytes([k]), f"m{k}")
    assert len(log) == 3 and log.total == 5 and len(seen) == 5
    assert [r.data for r in log.records()] == [b"\x02", b"\x03", b"\x04"]
    assert log.records(["rx"]) == [] and log.records()[0].as_text() == "100.000000 tx 02 m2"


# -- simulated devices -------------------------------------------------------------------
def test_simulated_tes_ramps_refuses_and_faults(repo):
    clock = Clock()
    a = build_adapter(load_profile(repo / "devices" / "sim_tacs.toml"), clock=clock)
    a.connect()
    assert a.armed  # arm_on_connect by default for simulated devices
    a.apply(Command(1.0, 10.0, True, 0.0), 100.0)
    assert a.output_mA(100.25) == pytest.approx(0.5)  # the device's 2 mA/s transition
    assert a.output_mA(101.0) == pytest.approx(1.0)
    with pytest.raises(LimitViolation, match="outside 0-2.0 mA"):
        a.apply(Command(2.5, 10.0, True, 0.0), 101.0)
    assert a.output_mA(101.25) == pytest.approx(0.5) and a.output_mA(102.0) == 0.0
    a.inject_fault("disconnect")
    assert "simulated disconnect" in a.fault and a.output_mA(102.0) == 0.0
    a.apply(Command(1.0, 10.0, True, 0.0), 102.0)
    assert a.dropped == 1 and a.output_mA(103.0) == 0.0
    with pytest.raises(DeviceFault):
        a.arm()


def test_simulated_rtms_arms_recharges_and_cuts_a_train(repo):
    clock = Clock()
    a = build_adapter(load_profile(repo / "devices" / "sim_rtms.toml"), clock=clock)
    a.connect()
    train = Command(0, 20.0, True, 0, {"intensity_pct": 110.0, "pulses": 32.0, "train_duration_s": 1.6}, fire=True)
    with pytest.raises(LimitViolation, match="not ready"):
        a.apply(train, 100.1)  # still charging after arming
    a.arm()
    clock.t = 100.6
    a.apply(train, 100.6)
    assert a.trains == [(100.6, 110.0, 20.0, 32)]
    assert a.pulses_delivered(101.0) == 9  # 0.4 s at 20 Hz, first pulse at the start
    clock.t = 101.0
    a.emergency_stop()
    assert a.pulses_delivered(110.0) == 9 and not a.armed


def test_simulated_tus_refuses_unsafe_bursts(repo):
    a = build_adapter(load_profile(repo / "devices" / "sim_tus.toml"), clock=Clock())
    a.connect()
    ok = {
        "pnp_MPa": 0.5,
        "center_frequency_MHz": 0.5,
        "isppa_W_per_cm2": 8.0,  # 0.5 MPa: 8.3 W/cm² as a plane wave in 1.5 MRayl
        "duty_cycle": 0.05,
        "prf_Hz": 10.0,
        "burst_s": 0.005,
    }
    a.apply(Command(0, 0, True, 0, ok, fire=True), 100.0)
    assert len(a.bursts) == 1 and a.sonicating(100.01)
    with pytest.raises(LimitViolation, match="mechanical index"):
        a.apply(Command(0, 0, True, 0, {**ok, "pnp_MPa": 2.0}, fire=True), 200.0)
    assert not a.armed and len(a.bursts) == 1


def test_simulated_tes_gates_and_checks_every_command(repo):
    """Apply before connect raises; after many equal allowed commands, each changed one is still checked."""
    clock = Clock()
    a = build_adapter(load_profile(repo / "devices" / "sim_tacs.toml"), clock=clock)
    with pytest.raises(RuntimeError, match="before connect"):
        a.apply(Command(1.0, 10.0, True, 0.0), 0.0)
    assert a.commands == 0 and a.dropped == 0
    a.connect()
    for i in range(50):
        a.apply(Command(1.0, 10.0, True, float(i)), 100.0 + i)
    assert a.commands == 50 and a.refused == 0
    bad = [Command(1.0, 101.0, True, 50.0), Command(float("nan"), 10.0, True, 50.0), Command(2.5, 10.0, True, 50.0)]
    for k, command in enumerate(bad, 1):
        with pytest.raises(LimitViolation):
            a.apply(command, 150.0)
        assert a.refused == k and a.output_mA(1e6) == 0.0  # driven safe
        a.apply(Command(1.0, 10.0, True, 51.0), 151.0)  # an allowed command after it is applied again
    assert a.commands == 53
