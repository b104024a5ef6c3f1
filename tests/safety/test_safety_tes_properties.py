"""Property tests of the tES safety layer: whatever the controller asks, whenever it asks.

For arbitrary sequences of commands (NaN, infinite, negative and huge values),
times (repeated, backwards, non-finite, huge jumps) and watchdog/stop calls:
every applied command stays inside the envelope, slew never exceeds the ramp
rate (emergency ramps toward zero excepted), frequency and phase change only
at zero amplitude, the charge equals the trapezoid integral of what was
applied (computed here independently), and no charge or duration limit is
exceeded while the layer is called at least once per watchdog timeout.

Each example is decoded from one byte string (16 bytes per call) so that
10,000 examples per property stay cheap; the tables below still reach every
kind of nasty value.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safety_programs import ProgramClock, call_at, fraction

from closedloop.safety import StimState, TESEnvelope, TESSafetyLayer
from closedloop.safety.state import TRANSITIONS
from closedloop.session.clocks import ManualClock
from closedloop.types import Command

pytestmark = pytest.mark.slow  # 10,000 hypothesis examples per property

H = 0.3  # watchdog timeout: the longest gap between calls the dose guarantees cover
ENVELOPES = [
    TESEnvelope(
        max_amplitude_mA=2.0,
        max_ramp_rate_mA_per_s=0.5,
        emergency_ramp_rate_mA_per_s=4.0,
        max_session_duration_s=6.0,
        max_charge_C=0.001,
        min_frequency_Hz=0.0,
        max_frequency_Hz=100.0,
        watchdog_timeout_s=H,
    ),
    TESEnvelope(
        max_amplitude_mA=1.0,
        max_ramp_rate_mA_per_s=2.0,
        emergency_ramp_rate_mA_per_s=2.0,
        max_session_duration_s=3.0,
        max_charge_C=0.0005,
        min_frequency_Hz=1.0,
        max_frequency_Hz=40.0,
        watchdog_timeout_s=H,
    ),
    TESEnvelope(
        max_amplitude_mA=1.5,
        max_ramp_rate_mA_per_s=1.0,
        emergency_ramp_rate_mA_per_s=3.0,
        max_session_duration_s=8.0,
        max_charge_C=1.0,
        min_frequency_Hz=0.0,
        max_frequency_Hz=50.0,
        watchdog_timeout_s=H,
    ),
]
NASTY = (math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 5e-324, -5e-324, 1e-12)
FREQS = (0.0, 20.0, 20.0, 40.0, 100.0, 150.0, -5.0, 1.0)
OP_BYTES = 16
EPS = 1e-9
SETTINGS = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
programs = st.tuples(st.sampled_from(ENVELOPES), st.binary(min_size=OP_BYTES, max_size=40 * OP_BYTES))


def decode_dt(mode: int, u: float, gaps: bool) -> float:
    """A time step: mostly within the watchdog timeout, sometimes 0 or backwards; with ``gaps``
    also longer than the watchdog timeout, huge or not finite."""
    if not gaps:
        mode %= 225
    if mode < 200:
        return H * u
    if mode < 215:
        return 0.0
    if mode < 225:
        return -2.0 * H * u if mode < 222 else -1e6 * u
    if mode < 240:
        return H * (1.0 + 3.0 * u)
    if mode < 250:
        return 10.0 ** (9.0 * u)
    return (math.nan, math.inf, -math.inf)[int(u * 2.999)]


def decode_value(mode: int, u: float, lo: float, hi: float) -> float:
    """A requested value: mostly in [lo, hi], sometimes from the nasty table."""
    if mode < 200:
        return lo + (hi - lo) * u
    return NASTY[int(u * (len(NASTY) - 0.001))]


def run(env: TESEnvelope, program: bytes):
    """Drive a layer with a decoded program.

    Returns the layer and, per call: (the layer's clock as the test tracks it,
    the applied command, whether the emergency rate may apply, whether a gap
    longer than the watchdog timeout has happened, whether a stop is latched).
    """
    layer = TESSafetyLayer(env, ManualClock())
    program_clock = ProgramClock(1000.0, H)
    emergency = latched = False
    amp = 0.0
    out = []
    gaps = program[-1] >= 128  # half the programs call the layer at least once per watchdog timeout
    for k in range(len(program) // OP_BYTES):
        b = program[k * OP_BYTES : (k + 1) * OP_BYTES]
        t = program_clock.advance(decode_dt(b[1], fraction(b, 2), gaps))
        clock, gap = program_clock.clock, program_clock.gap
        op = b[0]
        if op < 245:
            amp = amp if b[4] < 120 and k else decode_value(b[4], fraction(b, 5), -0.5, 2.5)  # often unchanged
            freq = 10.0 if b[7] < 240 else FREQS[b[8] % len(FREQS)] if b[7] < 250 else NASTY[b[8] % len(NASTY)]
            extra = {} if b[11] < 235 else {"phase_deg": decode_value(b[13], fraction(b, 14), -720.0, 720.0)}
            cmd = call_at(layer, t, "step", Command(amp, freq, b[10] < 230, t, extra))
            if cmd is not None:
                emergency = latched
        elif op < 251:
            cmd = call_at(layer, t, "ramp_down", "no fresh frame", emergency=True)
            emergency = emergency or cmd is not None
        elif op < 254:
            cmd = call_at(layer, t, "ramp_down", "session end")
        elif op < 255:
            cmd = call_at(layer, t, "stop", "operator stop")
        else:
            cmd = call_at(layer, t, "emergency_stop", "emergency button")
            if cmd is not None:
                emergency = latched = True
        if cmd is not None:
            out.append((clock, cmd, emergency, gap, layer.stopped))
    return layer, out


@SETTINGS
@given(programs)
def test_envelope_slew_frequency_and_state_rules_hold(program):
    env, code = program
    layer, out = run(env, code)
    if not out:  # every call was refused (a non-finite or earlier clock): nothing was applied
        return
    prev_a, prev_f, prev_p, prev_t = 0.0, None, None, None
    for clock, cmd, emergency, _, _ in out:
        a, f = cmd.amplitude_mA, cmd.frequency_Hz
        assert math.isfinite(a) and 0.0 <= a <= env.max_amplitude_mA
        assert math.isfinite(f) and env.min_frequency_Hz <= f <= env.max_frequency_Hz
        assert cmd.on == (a > 0.0)
        dt = 0.0 if prev_t is None else clock - prev_t
        assert a - prev_a <= env.max_ramp_rate_mA_per_s * dt + EPS
        down = env.emergency_ramp_rate_mA_per_s if emergency else env.max_ramp_rate_mA_per_s
        assert prev_a - a <= down * dt + EPS
        p = cmd.extra.get("phase_deg")
        if p is not None:
            assert 0.0 <= p < 360.0
        if (prev_f is not None and f != prev_f) or (prev_p is not None and p != prev_p):
            assert prev_a == 0.0, "frequency or phase changed while current flowed"
        prev_a, prev_f, prev_p = a, f, p
        prev_t = clock if clock is not None else prev_t
    # the state machine follows the output and only takes allowed transitions
    a = out[-1][1].amplitude_mA
    if a > 0:
        assert layer.state in (StimState.STIMULATING, StimState.RAMPING_DOWN)
    else:
        assert layer.state in (StimState.IDLE, StimState.ARMED, StimState.STOPPED)
    assert layer.stopped == (layer.state in (StimState.RAMPING_DOWN, StimState.STOPPED))
    assert bool(layer.stop_reason) == layer.stopped
    for e in layer.events:
        if e.kind == "state":
            old, new = e.reason.split(":")[0].split(" → ")
            assert StimState(new) in TRANSITIONS[StimState(old)]


@SETTINGS
@given(programs)
def test_dose_is_the_integral_of_what_was_applied_and_limits_are_never_exceeded(program):
    env, code = program
    layer, out = run(env, code)
    if not out:  # every call was refused (a non-finite or earlier clock): nothing was applied
        return
    charge = stim_time = 0.0
    prev_a, prev_t, t0 = 0.0, None, None
    was_stopped = False
    for clock, cmd, _, gap, stopped in out:
        a = cmd.amplitude_mA
        if clock is not None and t0 is None:
            t0 = clock
        dt = 0.0 if prev_t is None else clock - prev_t
        charge += 0.5 * (prev_a + a) * dt / 1000.0
        if prev_a > 0 or a > 0:
            stim_time += dt
            if not gap:  # nothing applied past the session duration
                assert clock - t0 <= env.max_session_duration_s + EPS
        if not gap:  # nothing applied past the charge limit
            assert charge <= env.max_charge_C * (1 + 1e-12) + 1e-15
        if was_stopped:
            assert a <= prev_a, "output rose after a latched stop"
        was_stopped = stopped
        prev_a = a
        prev_t = clock if clock is not None else prev_t
    assert math.isclose(layer.charge_C, charge, rel_tol=1e-9, abs_tol=1e-15)
    assert math.isclose(layer.stim_time_s, stim_time, rel_tol=1e-9, abs_tol=1e-12)
    assert layer.dose == {"charge_C": layer.charge_C, "stim_time_s": layer.stim_time_s}
