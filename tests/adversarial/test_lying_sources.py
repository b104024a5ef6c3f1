"""A source that lies: about time, about values, or by going silent — what the device actually outputs.

Each test runs a live session (LiveSession, in this process) on an LSL stream
published by :class:`LyingOutlet` (this machine only), with the simulated tACS
device, and samples the device's own output on the local clock. The
assertions are about that output: it reaches zero within the watchdog or
bad-data bound plus the ramp time, its charge stays within the limit, its
slope within the ramp rate; the session ends with the reason and writes its
summary.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from lying_world import DeviceInputs, DeviceSampler, Lie, LyingOutlet  # noqa: E402
from session_helpers import sim_tacs_copy  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.lsl, pytest.mark.timeout(120)]

RAMP = 1.0  # mA/s, the test profile's ramp rate
EMERGENCY = 4.0  # mA/s, its emergency rate
WATCHDOG = 0.3  # s
BAD_DATA = 2.0  # s
AMPLITUDE = 1.0  # mA, what the controller asks for


def setup(repo, tmp_path, name: str, overrides: dict | None = None, watchdog_s: float = WATCHDOG):
    """A pipeline on stream ``name`` that always wants 1 mA, on a fast-ramping copy of the simulated tACS profile."""
    fast = {"max_ramp_rate_mA_per_s": RAMP, "emergency_ramp_rate_mA_per_s": EMERGENCY, "watchdog_timeout_s": watchdog_s}
    profile = sim_tacs_copy(repo, tmp_path, "sim_tacs_fast", fast)
    over = {
        "source.name": name,
        "source.type": "EEG",
        "source.stall_timeout_s": 2.0,
        "device.profile": str(profile),
        "controller.lower": 100.0,  # log10 alpha power is always below: stimulate all the time
        "controller.upper": 200.0,
        "controller.onset": 1,
        "controller.blanking_s": 0.0,
        "controller.amplitude_mA": AMPLITUDE,
        "recording.report": False,
        **(overrides or {}),
    }
    return load_pipeline(repo / "pipelines" / "alpha_tacs_lsl.toml", over)


def run_session(resolved, tmp_path, outlet: LyingOutlet, duration_s: float, when_stimulating=None):
    """Run a session in this thread while sampling the device; call ``when_stimulating(sampler)`` at 0.9 mA."""
    session = LiveSession(resolved, duration_s, tmp_path / "out", show_status=False)
    result = {}
    with DeviceSampler(session.adapter.output_mA) as device:
        if when_stimulating is not None:

            def watch() -> None:
                device.wait_until(lambda a: a >= 0.9 * AMPLITUDE, timeout=60.0)
                result["lie_at"] = when_stimulating(device)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        summary = session.run()
        if when_stimulating is not None:
            watcher.join(timeout=60.0)
    return session, summary, device, result.get("lie_at")


def assert_within_ramp(inputs: DeviceInputs, window_s: float) -> None:
    """Every ``window_s`` of the device's output rose within the ramp rate over its span on the layer's clock."""
    ratio, rise, span = inputs.worst_rise(window_s, RAMP)
    assert ratio <= 1.0, (
        f"the device rose {rise:.3f} mA/s over {window_s} s; allowed: {RAMP} mA/s over the {span:.3f} s "
        "of the layer's clock that window covers"
    )


@pytest.fixture
def name() -> str:
    return f"cltest-liar-{uuid.uuid4().hex[:10]}"


def _summary_on_disk(tmp_path, summary):
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["stop_reason"] == summary["stop_reason"]
    return on_disk


@pytest.mark.parametrize("stamps,shift", [("epoch", 0.0), ("offset", 1000.0)])
def test_stamps_far_from_the_local_clock_then_silence_ramp_to_zero_and_end(repo, tmp_path, name, stamps, shift):
    """Epoch (or +1000 s) stamps, trusted for the test, then the source stops: output to zero, session ends."""
    resolved = setup(repo, tmp_path, name, {"source.clock_timeout_s": 600.0})
    outlet = LyingOutlet(name, Lie(stamps=stamps, stamp_shift_s=shift)).start()
    try:

        def go_silent(device):
            outlet.lie = Lie(stamps=stamps, stamp_shift_s=shift, stop=True, at_s=0.0)
            return outlet.last_push

        session, summary, device, silent_at = run_session(resolved, tmp_path, outlet, 60.0, go_silent)
    finally:
        outlet.stop()
    assert silent_at is not None
    assert device.max_after(silent_at) <= AMPLITUDE + 1e-9
    bound = WATCHDOG + AMPLITUDE / EMERGENCY + 0.5  # watchdog trip, emergency ramp, margin for a busy machine
    assert device.zero_after(silent_at) <= bound, f"device still on {device.zero_after(silent_at):.2f} s after"
    assert summary["stop_reason"].startswith("source stalled")
    # one silence, one trip (a few at most on a busy machine), not one per loop turn of the 5-s stall
    assert summary["final_amplitude_mA"] == 0.0 and 1 <= summary["watchdog_trips"] <= 3
    _summary_on_disk(tmp_path, summary)


@pytest.mark.parametrize("stamps,shift", [("epoch", 0.0), ("offset", 1000.0), ("offset", -1000.0)])
def test_stamps_far_from_the_local_clock_end_the_session(repo, tmp_path, name, stamps, shift):
    """With the default clock checks, a source whose stamps stay far from the local clock is not trusted."""
    resolved = setup(repo, tmp_path, name)
    timeout = resolved.config.source.clock_timeout_s
    outlet = LyingOutlet(name, Lie(stamps=stamps, stamp_shift_s=shift)).start()
    try:
        session, summary, device, _ = run_session(resolved, tmp_path, outlet, 60.0)
    finally:
        outlet.stop()
    assert summary["stop_reason"].startswith("source clock untrustworthy")
    assert summary["source_clock_events"] > 0 and summary["final_amplitude_mA"] == 0.0
    t, a = device.arrays()
    assert a[-1] == 0.0
    # the session ended soon after the clock timeout, not after its 60 s
    assert summary["duration_s"] <= 1.0 + timeout + 3.0
    _summary_on_disk(tmp_path, summary)


def test_stamps_stepping_back_cannot_exceed_the_charge_limit(repo, tmp_path, name):
    """Stamps step back 30 s mid-session (trusted for the test): the device's own charge stays within the limit."""
    limit_C = 0.004  # ~4 s at 1 mA
    resolved = setup(repo, tmp_path, name, {"source.clock_timeout_s": 600.0, "safety.max_charge_C": limit_C})
    outlet = LyingOutlet(name).start()
    try:

        def step_back(device):
            outlet.lie = Lie(stamps="step", stamp_shift_s=-30.0, at_s=0.0)
            return outlet.start_lying()

        session, summary, device, _ = run_session(resolved, tmp_path, outlet, 60.0, step_back)
    finally:
        outlet.stop()
    delivered = device.charge_C()
    assert delivered <= limit_C * 1.01, f"the device delivered {delivered:.5f} C, limit {limit_C} C"
    assert delivered >= 0.5 * limit_C  # it did stimulate up to near the limit
    assert summary["charge_C"] == pytest.approx(delivered, rel=0.1)  # the layer's account is the device's
    assert summary["stop_reason"].startswith("charge limit") and summary["final_amplitude_mA"] == 0.0
    assert summary["safety_events"].get("dose", 0) >= 1 and summary["source_clock_events"] >= 1


def test_stamps_jumping_ahead_during_the_ramp_never_steepen_it(repo, tmp_path, name):
    """Stamps jump 20 s ahead while the current ramps up: the device's slope stays within the ramp rate.

    The slope is read from the device's exact output, rebuilt from the
    commands it received and when (:class:`DeviceInputs`). A layer timed by
    the source's stamps would allow a 20-s ramp in one frame; the layer's
    clock is the local one, so each command's time is its arrival (less the
    loop's latency). On a busy machine the loop may stall: after a stall of
    ``g`` s the next target is ``RAMP`` × ``g`` higher, so a window's
    allowance is the ramp rate over the layer-clock span it covers, printed
    on failure.
    """
    resolved = setup(repo, tmp_path, name)
    outlet = LyingOutlet(name).start()
    try:
        session = LiveSession(resolved, 60.0, tmp_path / "out", show_status=False)
        inputs = DeviceInputs(session.adapter)
        with DeviceSampler(session.adapter.output_mA) as device:

            def jump() -> None:  # start the lie early in the ramp (0.2 mA), not at full current
                device.wait_until(lambda a: a >= 0.2, timeout=60.0)
                outlet.lie = Lie(stamps="jump", stamp_shift_s=20.0, at_s=0.0)
                outlet.start_lying()

            threading.Thread(target=jump, daemon=True).start()
            summary = session.run()
    finally:
        outlet.stop()
    arrived, stamped, _, _ = inputs.arrays()
    latency = arrived - stamped
    assert latency.min() >= 0.0 and latency.max() < 2.0, "commands are stamped on the local clock, not the source's"
    assert inputs.rebuild_error() < 1e-9  # the rebuilt output is the device's
    window = 0.5  # s: several commands (a frame every 50 ms); the device itself moves at the emergency rate
    assert_within_ramp(inputs, window)
    assert inputs.max_rise(window) >= 0.5 * RAMP  # it did ramp up
    assert summary["stop_reason"].startswith("source clock untrustworthy")
    assert summary["final_amplitude_mA"] == 0.0
    t, a = device.arrays()
    assert a[-1] == 0.0


def test_a_stalled_loop_catches_up_by_the_ramp_rate_over_the_stall_only(repo, tmp_path, name):
    """The loop stalls 0.15 s mid-ramp: the next target rises by the rate × the stall, never more.

    The stall is made, not waited for: the device's ``apply`` (on the loop
    thread) sleeps once. The profile's watchdog is 1 s here, so that a busy
    machine's longer stall is not a trip. Over a window that takes in the
    stall the device rises faster than the rate — the catch-up docs/safety.md
    describes — and within the rate over the layer-clock span the window covers.
    """
    resolved = setup(repo, tmp_path, name, watchdog_s=1.0)
    outlet = LyingOutlet(name).start()
    stall_s, window = 0.15, 0.5
    try:
        session = LiveSession(resolved, 3.0, tmp_path / "out", show_status=False)
        inputs = DeviceInputs(session.adapter)
        record, stalled = session.adapter.apply, []

        def apply(command, now):
            record(command, now)
            if not stalled and session.adapter.output_mA(now) >= 0.3:
                stalled.append(now)
                time.sleep(stall_s)  # the stimulus: a loop that stops for stall_s, as a busy PC makes it

        session.adapter.apply = apply
        summary = session.run()
    finally:
        outlet.stop()
    arrived, stamped, _, target = inputs.arrays()
    assert stalled, "the ramp never reached 0.3 mA"
    assert np.diff(stamped).max() >= stall_s  # the layer saw the stall
    assert_within_ramp(inputs, window)
    # the catch-up happened: some window rose by more than the rate over the window alone
    assert inputs.max_rise(window) >= RAMP * (1.0 + 0.5 * stall_s / window)
    assert target.max() == AMPLITUDE  # it reached the controller's 1 mA after the stall
    assert summary["final_amplitude_mA"] == 0.0 and summary["watchdog_trips"] == 0


@pytest.mark.parametrize("values,flag", [("nan", "NONFINITE"), ("huge", "SATURATION")])
def test_garbage_data_for_too_long_ramps_down_like_no_data(repo, tmp_path, name, values, flag):
    """NaN or 1e30 µV under on_bad_frame = "hold": after bad_data_timeout_s the device goes to zero and stays."""
    resolved = setup(repo, tmp_path, name, {"controller.on_bad_frame": "hold"})
    outlet = LyingOutlet(name).start()
    try:

        def garbage(device):
            outlet.lie = Lie(values=values, at_s=0.0)
            return outlet.start_lying()

        session = LiveSession(resolved, 60.0, tmp_path / "out", show_status=False)
        result = {}
        with DeviceSampler(session.adapter.output_mA) as device:

            def watch() -> None:
                device.wait_until(lambda a: a >= 0.9 * AMPLITUDE, timeout=60.0)
                result["at"] = garbage(device)
                # keep the garbage flowing for a while after the bound, then end the session by silence
                device.wait_until(lambda a: a == 0.0, timeout=30.0)
                threading.Event().wait(2.0)  # the scenario: garbage keeps coming for 2 s more
                outlet.lie = Lie(values=values, stop=True, at_s=0.0)

            threading.Thread(target=watch, daemon=True).start()
            summary = session.run()
    finally:
        outlet.stop()
    bad_at = result["at"]
    window_s = 1.0  # the garbage must fill the feature window before a frame carries the flag
    bound = window_s + BAD_DATA + AMPLITUDE / EMERGENCY + 0.6
    assert device.zero_after(bad_at) <= bound, f"device still on {device.zero_after(bad_at):.2f} s after"
    assert summary["quality_flags"][flag] > 0
    assert summary["safety_events"].get("bad_data", 0) >= 1
    assert summary["final_amplitude_mA"] == 0.0
