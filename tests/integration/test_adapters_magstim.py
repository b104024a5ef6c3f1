"""Magstim adapter against the Magstim protocol emulator (pseudo-terminal serial line)."""

from __future__ import annotations

import time

import pytest
from adapter_helpers import adapter_maker, wait_for

from closedloop.adapters import DeviceFault, LimitViolation, build_adapter
from closedloop.adapters.crc import magstim_crc
from closedloop.adapters.emulators import MagstimEmulator
from closedloop.config.profile import load_profile
from closedloop.types import Command

pytestmark = pytest.mark.timeout(30)

MT = 50.0  # participant's motor threshold, % of maximum output
TRAIN = {"intensity_pct": 110.0, "pulses": 32.0, "train_duration_s": 1.6}
SHORT = {"pulses": 2.0, "train_duration_s": 0.1}  # a 0.1-s train, so that the unit is soon ready again


def fire(**extra) -> Command:
    return Command(0.0, 20.0, True, 0.0, {**TRAIN, **extra}, fire=True)


@pytest.fixture
def emu():
    e = MagstimEmulator(armed_timeout_s=0.6, charge_s=0.02)
    e.open_pty()
    yield e
    e.close()


@pytest.fixture
def make(repo, emu):
    with adapter_maker(
        repo / "devices" / "magstim_rapid2.toml",
        {"port": emu.url, "reply_timeout_s": 0.1, "retries": 2, "poll_armed_s": 0.2},
        motor_threshold_pct_mso=MT,
    ) as make:
        yield make


def test_happy_path_programs_fires_keeps_alive_and_ends_safe(make, emu):
    a = make()
    a.connect()
    assert emu.remote and a.settings == {"power": 30, "rate_dHz": 10, "pulses": 1, "duration_ds": 10}
    a.arm()
    assert emu.armed and emu.ready
    a.apply(Command(0.0, 0.0, False, 0.0, {"intensity_pct": 0.0, "pulses": 0.0}), a.clock())
    a.apply(fire(), a.clock())
    assert wait_for(lambda: len(emu.trains) == 1)
    _, power, rate, pulses = emu.trains[0]
    assert (power, rate, pulses) == (55, 20.0, 32)  # 110 %MT of a 50 %MSO threshold
    assert emu.duration_ds == 16
    # keep-alive: armed and idle for twice the unit's own timeout (as the unit counts it), still armed
    t_idle = time.monotonic()
    assert wait_for(lambda: emu.received[-1][0] - t_idle > 2 * emu.armed_timeout_s, 10.0)
    assert emu.armed and emu.auto_disarms == 0 and a.fault is None
    a.stop()
    assert not emu.armed and not emu.remote
    # every command and reply is logged with increasing timestamps; every sent message checks out
    recs = a.log.records()
    tx = [r for r in recs if r.kind == "tx"]
    assert {r.data[:1] for r in tx} >= {b"Q", b"J", b"E", b"@", b"B", b"D", b"[", b"R"}
    assert all(magstim_crc(r.data[:-1]) == r.data[-1] for r in tx)
    assert len([r for r in recs if r.kind == "rx"]) >= len(tx) - 1
    assert all(r1.time >= r0.time for r0, r1 in zip(recs, recs[1:]))


def test_a_lost_reply_is_retried(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("no_reply", count=1)
    a.apply(fire(), a.clock())
    assert wait_for(lambda: len(emu.trains) == 1)
    assert a.fault is None and a.retries_used == 1


def test_a_garbled_reply_is_retried_then_a_persistent_one_is_a_fault(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("bad_crc", count=1)
    a.apply(fire(), a.clock())
    assert wait_for(lambda: len(emu.trains) == 1) and a.fault is None and a.retries_used == 1
    emu.inject("bad_crc", count=3)  # the next poll and both retries
    assert wait_for(lambda: a.fault is not None, 3.0)
    assert "garbled reply" in a.fault and "bad checksum" in a.fault
    assert wait_for(lambda: not emu.armed)  # driven safe (EA got through once the fault cleared)


def test_no_reply_at_all_is_a_fault_and_the_unit_disarms_itself(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("no_reply", count=100)
    assert wait_for(lambda: a.fault is not None, 3.0)
    assert "no reply" in a.fault and "after 3 attempts" in a.fault
    a.apply(fire(), a.clock())  # ignored once faulted
    assert a.dropped == 1
    assert wait_for(lambda: not emu.armed, 3.0)
    assert emu.trains == []


def test_a_fire_without_reply_is_not_repeated(make, emu):
    a = make()
    a.connect()
    a.arm()
    a.apply(fire(pulses=3.0, train_duration_s=0.15), a.clock())
    assert wait_for(lambda: len(emu.trains) == 1)
    assert wait_for(lambda: emu.ready)
    emu.inject("no_reply", count=1, match=b"D")
    # a new train with other parameters: the lost reply to a setting is retried
    a.guard.last_end = -1e9  # pretend the inter-train interval has passed
    a.apply(fire(**SHORT), a.clock())
    assert wait_for(lambda: len(emu.trains) == 2, 3.0)
    assert a.fault is None and a.retries_used == 1 and emu.pulses == 2
    a.guard.last_end = -1e9
    assert wait_for(lambda: emu.ready)
    emu.inject("no_reply", count=1, match=b"EH")
    a.apply(fire(**SHORT), a.clock())
    assert wait_for(lambda: a.fault is not None, 3.0)
    assert "fire" in a.fault and "not retried" in a.fault
    assert len(emu.trains) == 3  # fired once, never twice
    assert wait_for(lambda: not emu.armed)


def test_an_error_reply_drives_the_unit_safe(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("error")
    a.apply(fire(), a.clock())
    assert wait_for(lambda: a.fault is not None)
    assert "error reply" in a.fault and "conflicts with the current settings" in a.fault
    assert wait_for(lambda: not emu.armed) and emu.trains == []


def test_a_disconnect_mid_session_is_reported_and_the_unit_disarms_itself(make, emu):
    faults = []
    a = make()
    a.on_fault = faults.append
    a.connect()
    a.arm()
    emu.inject("disconnect")
    assert wait_for(lambda: a.fault is not None, 3.0)  # the next keep-alive poll finds the line dead
    assert "link lost" in a.fault and faults == [a.fault]
    assert wait_for(lambda: not emu.armed, 3.0) and emu.auto_disarms == 1
    a.stop()  # bounded, does not raise
    assert not a.connected


def test_out_of_profile_commands_are_refused_and_disarm(make, emu):
    a = make()
    a.connect()
    a.arm()
    for bad in (
        fire(intensity_pct=130.0),  # above 110 %MT
        fire(pulses=40.0, train_duration_s=2.0),
    ):  # longer than the verified 1.6 s
        with pytest.raises(LimitViolation):
            a.apply(bad, a.clock())
        assert wait_for(lambda: not emu.armed)
        a.arm()
    with pytest.raises(LimitViolation, match="no verified train-duration cell"):
        a.apply(Command(0.0, 10.0, True, 0.0, {**TRAIN, "pulses": 16.0}, fire=True), a.clock())
    a.arm()
    a.apply(fire(), a.clock())
    assert wait_for(lambda: len(emu.trains) == 1)
    with pytest.raises(LimitViolation, match="inter-train interval"):
        a.apply(fire(), a.clock())
    assert wait_for(lambda: not emu.armed)
    a.worker.call(lambda: None, 5.0)  # whatever the refusals queued has run (and been answered)
    assert len(emu.trains) == 1 and a.refused == 4


def test_fire_before_arm_and_missing_motor_threshold_are_refused(repo, make, emu):
    a = make()
    a.connect()
    with pytest.raises(LimitViolation, match="not armed"):
        a.apply(fire(), a.clock())
    prof = load_profile(repo / "devices" / "magstim_rapid2.toml")
    with pytest.raises(ValueError, match="motor threshold"):
        build_adapter(prof)


def test_connect_to_a_silent_port_fails_within_its_timeouts(make, emu):
    emu.inject("no_reply", count=100)
    a = make(reply_timeout_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(DeviceFault, match="no reply"):
        a.connect()
    assert time.monotonic() - t0 < 3.0


def test_the_same_protocol_over_a_pyserial_socket_url(repo):
    with MagstimEmulator() as e:
        e.serve_tcp()
        prof = load_profile(repo / "devices" / "magstim_rapid2.toml")
        opts = {**prof.adapter_options, "port": e.url, "reply_timeout_s": 0.3}
        a = build_adapter(prof.model_copy(update={"adapter_options": opts}), motor_threshold_pct_mso=MT)
        a.connect()
        a.arm()
        a.apply(fire(**SHORT), a.clock())
        assert wait_for(lambda: len(e.trains) == 1)
        a.stop()
        assert e.url.startswith("socket://127.0.0.1:") and not e.armed and a.fault is None
