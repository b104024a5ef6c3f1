"""Starstim adapter against the NIC2 emulator (TCP on 127.0.0.1), and a closed-loop session through it."""

from __future__ import annotations

import threading
import time

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from adapter_helpers import adapter_maker, wait_for  # noqa: E402

from closedloop.adapters import DeviceFault, LimitViolation, build_adapter  # noqa: E402
from closedloop.adapters import nic2_protocol as P  # noqa: E402
from closedloop.adapters.emulators import NIC2Emulator  # noqa: E402
from closedloop.config import load_pipeline  # noqa: E402
from closedloop.config.profile import load_profile  # noqa: E402
from closedloop.types import Command  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def tacs(mA: float, hz: float = 10.0) -> Command:
    return Command(mA, hz, mA > 0, 0.0)


@pytest.fixture
def emu():
    e = NIC2Emulator(ramp_s=0.05)
    e.serve_tcp()
    yield e
    e.close()


def options(emu, **extra):
    return {
        "tcp_port": emu.port,
        "reply_timeout_s": 0.2,
        "poll_s": 0.01,
        "heartbeat_s": 0.2,
        "arm_on_connect": False,
        "stop_timeout_s": 3.0,
        **extra,
    }


@pytest.fixture
def make(repo, emu):
    with adapter_maker(repo / "devices" / "starstim_nic2.toml", options(emu)) as make:
        yield make


def test_happy_path_loads_starts_changes_online_and_ends_safe(make, emu):
    a = make()
    a.connect()
    assert emu.version == "04.07" and emu.loaded == "closedloop_tacs_0uA" and emu.state == P.LOADED
    a.arm()
    assert emu.state == P.RUNNING and emu.stim == P.FULL
    a.apply(tacs(1.0), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[:2] == [1000.0, 1000.0])
    assert emu.amplitudes_uA[2:] == [0.0] * 6 and emu.frequencies_Hz[:2] == [10.0, 10.0]
    codes = [c for _, c, _, _ in emu.changes]
    assert codes == [P.ONLINE_TACS_FREQUENCY, P.ONLINE_TACS_AMPLITUDE]  # frequency first, at 0 µA
    assert emu.changes[-1][3] == 100  # the transition time sent with the change (ms)
    assert wait_for(lambda: abs(a.output_mA(a.clock()) - 1.0) < 1e-9, 1.0)
    a.stop()
    assert emu.safe and emu.state == P.NOT_LOADED and emu.aborts == 1
    notes = [r.note for r in a.log.records(["tx"])]
    assert any("abort" in n for n in notes) and any("unload" in n for n in notes)


def test_changes_are_paced_and_the_newest_wins(make, emu):
    a = make(min_update_interval_s=0.2)
    a.connect()
    a.arm()
    t_first = time.monotonic()
    for k in range(1, 11):
        a.apply(tacs(0.1 * k), a.clock())
        time.sleep(0.01)  # the scenario: commands come faster than the device may change
    t_last = time.monotonic()
    assert wait_for(lambda: emu.amplitudes_uA[0] == 1000.0)
    a.worker.call(lambda: None, 5.0)
    sent = [r for r in a.log.records(["tx"]) if r.note.startswith("set amplitude")]
    assert len(sent) == len([c for c in emu.changes if c[1] == P.ONLINE_TACS_AMPLITUDE])
    values = [int(r.note.split()[2]) for r in sent]
    assert values == sorted(values) and values[-1] == 1000  # only ever the newest command, the last one last
    # paced on the adapter's own send times (the emulator's receive times jitter with its thread)
    assert all(r1.time - r0.time >= 0.2 for r0, r1 in zip(sent, sent[1:]))
    # not ten: one change per interval while the commands came in, and the newest after them
    assert len(sent) <= 2 + int((t_last - t_first) / 0.2)
    # every job ran or was replaced; a job that found nothing new is always followed by one that sent
    assert a.worker.jobs_replaced >= 10 - (2 * len(sent) + 1)


def test_frequency_changes_only_at_zero_current(make, emu):
    a = make()
    a.connect()
    a.arm()
    a.apply(tacs(1.0, 10.0), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 1000.0)
    a.apply(tacs(0.5, 20.0), a.clock())
    assert wait_for(lambda: emu.frequencies_Hz[0] == 20.0 and emu.amplitudes_uA[0] == 500.0)
    seq = [(c, v[0]) for _, c, v, _ in emu.changes]
    i = seq.index((P.ONLINE_TACS_FREQUENCY, 20.0))
    assert seq[i - 1] == (P.ONLINE_TACS_AMPLITUDE, 0.0)


def test_a_lost_status_reply_is_retried(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("no_reply", match=bytes([P.QUERY_STATUS_PROTOCOL]))
    a.apply(tacs(0.5), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 500.0)
    a.worker.call(lambda: None, 5.0)  # the change's confirmation (and its retry) has run
    assert a.fault is None and a.retries_used == 1


def test_garbled_status_replies_are_a_fault_and_stimulation_is_aborted(make, emu):
    a = make()
    a.connect()
    a.arm()
    a.apply(tacs(1.0), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 1000.0)
    emu.inject("bad_crc", count=3)
    assert wait_for(lambda: a.fault is not None)
    assert "garbled reply" in a.fault and "not a NIC2 status code" in a.fault
    assert wait_for(lambda: emu.safe)


def test_a_protocol_error_is_reported(make, emu):
    a = make()
    a.connect()
    a.arm()
    emu.inject("error", match=bytes([P.ONLINE_TACS_AMPLITUDE]))
    a.apply(tacs(1.0), a.clock())
    assert wait_for(lambda: a.fault is not None)
    assert "protocol error" in a.fault
    assert emu.safe


def test_a_disconnect_mid_session_is_a_fault_that_says_what_to_do(make, emu):
    a = make()
    a.connect()
    a.arm()
    a.apply(tacs(1.0), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 1000.0)
    emu.inject("disconnect")
    assert wait_for(lambda: a.fault is not None)  # the next status poll finds the connection closed
    assert "link lost" in a.fault and "abort it in NIC2" in a.fault
    a.apply(tacs(0.5), a.clock())
    assert a.dropped == 1
    t0 = time.monotonic()
    a.stop()
    assert time.monotonic() - t0 < 2.0


def test_out_of_profile_command_is_refused_and_zeroes_the_current(make, emu):
    a = make()
    a.connect()
    a.arm()
    a.apply(tacs(1.0), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 1000.0)
    with pytest.raises(LimitViolation, match="amplitude 2.5 mA outside"):
        a.apply(tacs(2.5), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 0.0)
    assert emu.stimulating and a.armed and a.refused == 1  # the protocol keeps running at 0 µA
    with pytest.raises(LimitViolation, match="frequency 150.0 Hz"):
        a.apply(tacs(0.5, 150.0), a.clock())
    a.apply(tacs(0.5), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 500.0)


def test_emergency_stop_returns_at_once_and_aborts(make, emu):
    a = make()
    a.connect()
    a.arm()
    a.apply(tacs(1.0), a.clock())
    assert wait_for(lambda: emu.amplitudes_uA[0] == 1000.0)
    gate = threading.Event()
    a.worker.submit(gate.wait)  # the device thread is busy (a slow exchange on the wire)
    returned = threading.Event()
    threading.Thread(target=lambda: (a.emergency_stop(), returned.set()), daemon=True).start()
    try:
        # "at once": it returns while the device thread is still busy, so it waits on no wire
        assert returned.wait(10.0) and not emu.safe
    finally:
        gate.set()
    t_free = time.monotonic()
    assert wait_for(lambda: emu.safe, 5.0) and a.output_mA(a.clock()) == 0.0
    assert time.monotonic() - t_free <= 1.0  # the stop is the device thread's next job: safe within a second


@pytest.mark.parametrize(
    "kwargs, message",
    [({"reject_remote": True}, "rejected remote control"), ({"protocols": {"another"}}, "was not loaded")],
)
def test_connect_fails_clearly(repo, kwargs, message):
    with NIC2Emulator(**kwargs) as e:
        e.serve_tcp()
        prof = load_profile(repo / "devices" / "starstim_nic2.toml")
        prof = prof.model_copy(update={"adapter_options": {**prof.adapter_options, **options(e)}})
        a = build_adapter(prof)
        with pytest.raises(DeviceFault, match=message):
            a.connect()
        a.stop()


def test_nobody_listening_fails_fast(repo, emu):
    port = emu.port
    emu.close()
    prof = load_profile(repo / "devices" / "starstim_nic2.toml")
    prof = prof.model_copy(
        update={"adapter_options": {**prof.adapter_options, "tcp_port": port, "connect_timeout_s": 1.0}}
    )
    a = build_adapter(prof)
    with pytest.raises(DeviceFault, match="cannot connect"):
        a.connect()


@pytest.mark.lsl
def test_closed_loop_session_through_the_emulator_ends_safe(repo, tmp_path, emu):
    from closedloop.live.runtime import LiveSession

    text = (repo / "devices" / "starstim_nic2.toml").read_text()
    text = text.replace("tcp_port = 1235", f"tcp_port = {emu.port}")
    assert f"tcp_port = {emu.port}" in text
    profile = tmp_path / "starstim_emulated.toml"
    profile.write_text(text)
    resolved = load_pipeline(
        repo / "pipelines" / "alpha_tacs_starstim.toml",
        {
            "device.profile": str(profile),
            # log10 alpha power is always below 100: stimulate from the first frames, whichever part of
            # the synthetic signal the session starts on (it starts on the newest data after warm-up)
            "controller.lower": 100.0,
            "controller.upper": 200.0,
            "controller.onset": 2,
            "controller.amplitude_mA": 0.2,  # short ramps keep the test short
            "recording.report": False,  # the XDF is still written; the HTML report is not under test here
        },
    )
    assert resolved.profile.device.adapter == "starstim"
    session = LiveSession(resolved, 4.0, tmp_path / "out", show_status=False)
    summary = session.run()
    assert summary["stop_reason"] == "duration reached"
    assert summary["frames"] > 0 and summary["commands_applied"] > 0
    sent = [v[0] for _, c, v, _ in emu.changes if c == P.ONLINE_TACS_AMPLITUDE]
    assert max(sent) > 0  # the loop stimulated through NIC2
    assert max(sent) <= 200
    assert session.adapter.fault is None and session.adapter.status()["changes_sent"] == len(sent)
    assert emu.safe and emu.aborts == 1 and emu.state == P.NOT_LOADED  # aborted, unloaded, 0 µA
