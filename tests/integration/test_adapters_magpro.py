"""MagPro adapter against the MagPro protocol emulator (pseudo-terminal serial line)."""

from __future__ import annotations

import struct

import pytest
from adapter_helpers import adapter_maker, wait_for

from closedloop.adapters import LimitViolation
from closedloop.adapters.crc import crc8_maxim
from closedloop.adapters.emulators import MagProEmulator
from closedloop.adapters.magpro import frame
from closedloop.types import Command

pytestmark = pytest.mark.timeout(30)

MT = 60.0


def fire(**extra) -> Command:
    return Command(
        0.0, 20.0, True, 0.0, {"intensity_pct": 100.0, "pulses": 2.0, "train_duration_s": 0.1, **extra}, fire=True
    )


@pytest.fixture
def emu():
    e = MagProEmulator()
    e.open_pty()
    yield e
    e.close()


@pytest.fixture
def make(repo, emu):
    with adapter_maker(
        repo / "devices" / "magpro_x100.toml",
        {"port": emu.url, "reply_timeout_s": 0.1, "heartbeat_s": 0.2},
        motor_threshold_pct_mso=MT,
    ) as make:
        yield make


def test_frames_carry_length_dallas_crc_and_end_byte():
    f = frame(0x06, struct.pack(">4H", 200, 32, 1, 50))
    assert f[0] == 0xFE and f[1] == 9 and f[2] == 0x06 and f[-1] == 0xFF
    assert f[-2] == crc8_maxim(f[2:-2])
    assert frame(0x00) == bytes([0xFE, 0x01, 0x00, 0x00, 0xFF])  # CRC8 of a single zero byte is 0


def test_happy_path_enables_programs_fires_and_ends_disabled(make, emu):
    a = make()
    a.connect()
    assert a.unit["enabled"] is False and a.unit["model"] == 1
    a.arm()
    assert emu.enabled
    a.apply(fire(), a.clock())
    assert wait_for(lambda: len(emu.pulses) == 1)
    assert emu.pulses[0][1:] == (60, "train") and emu.amp_a == 60  # 100 %MT of a 60 %MSO threshold
    assert emu.train == (20.0, 2, 1, 5.0)  # rate, pulses, one train, ITI from the profile
    a.guard.last_end = -1e9
    a.apply(fire(pulses=1.0, train_duration_s=0.0), a.clock())  # a single pulse
    assert wait_for(lambda: len(emu.pulses) == 2) and emu.pulses[1][2] == "single"
    n = len(a.log.records(["tx"]))
    assert wait_for(lambda: len(a.log.records(["tx"])) >= n + 3, 10.0)  # status polls while idle ...
    polls = a.log.records(["tx"])[n:]
    assert all(r.note == "status poll" for r in polls)
    # ... each at least heartbeat_s after the previous exchange (the adapter's own send times)
    assert all(r1.time - r0.time >= 0.2 for r0, r1 in zip(polls, polls[1:]))
    a.stop()
    assert not emu.enabled and emu.amp_a == 0
    tx = [r.data for r in a.log.records(["tx"])]
    assert all(m[0] == 0xFE and m[-1] == 0xFF and m[-2] == crc8_maxim(m[2:-2]) for m in tx)


def test_transient_faults_are_retried(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("no_reply", match=bytes([0xFE, 0x02, 0x01]))  # the amplitude setting
    emu.inject("bad_crc", match=bytes([0xFE, 0x09, 0x06]))  # the train settings
    a.apply(fire(), a.clock())
    assert wait_for(lambda: len(emu.pulses) == 1)
    assert a.fault is None and a.retries_used == 2


def test_persistent_garbled_replies_are_a_fault_and_the_unit_is_disabled(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("bad_crc", count=3)  # the next status poll and both retries
    assert wait_for(lambda: a.fault is not None)
    assert "garbled reply" in a.fault and "bad CRC8" in a.fault
    assert wait_for(lambda: not emu.enabled)


def test_no_reply_to_fire_is_not_repeated(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("no_reply", match=bytes([0xFE, 0x01, 0x04]))  # start train
    a.apply(fire(), a.clock())
    assert wait_for(lambda: a.fault is not None)
    assert "start train" in a.fault and "not retried" in a.fault
    assert len(emu.pulses) == 1 and wait_for(lambda: not emu.enabled)


def test_a_setting_the_unit_does_not_take_is_an_error_reply(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("error", match=bytes([0xFE, 0x02, 0x01]))
    a.apply(fire(), a.clock())
    assert wait_for(lambda: a.fault is not None)
    assert "error reply" in a.fault and "amplitude 60 % not accepted" in a.fault
    assert emu.pulses == [] and wait_for(lambda: not emu.enabled)


def test_disconnect_mid_session_is_a_fault(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("disconnect")
    assert wait_for(lambda: a.fault is not None)
    assert "link lost" in a.fault
    a.stop()


def test_out_of_profile_commands_are_refused_and_disable(make, emu):
    a = make()
    a.connect()
    a.arm()
    with pytest.raises(LimitViolation, match="intensity"):
        a.apply(fire(intensity_pct=120.0), a.clock())
    assert wait_for(lambda: not emu.enabled)
    a.arm()
    with pytest.raises(LimitViolation, match="train rate"):
        a.apply(Command(0.0, 50.0, True, 0.0, {"intensity_pct": 100.0, "pulses": 5.0}, fire=True), a.clock())
    assert wait_for(lambda: not emu.enabled) and emu.pulses == []
