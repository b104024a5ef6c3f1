"""Property tests of the rTMS safety layer: no train outside the verified envelope, ever.

For arbitrary sequences of train requests (any rate, intensity, pulse count
and duration, NaN and huge values included), times (repeated, backwards,
huge jumps, non-finite) and watchdog/stop calls: every fired train is within
the intensity cap and a verified cell of the train-duration table, starts at
least the minimum inter-train interval after the previous one ended (or was
aborted), keeps the session under its pulse cap and duration, and the dose
the layer reports equals the trains it fired.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safety_programs import ProgramClock, call_at, fraction

from closedloop.safety import RTMSEnvelope, RTMSSafetyLayer, StimState, TrainLimit
from closedloop.session.clocks import ManualClock
from closedloop.types import Command

pytestmark = pytest.mark.slow  # 10,000 hypothesis examples per property

ENVELOPES = [
    RTMSEnvelope(
        max_intensity_pct=110.0,
        min_inter_train_interval_s=5.0,
        max_pulses_per_session=100,
        max_session_duration_s=40.0,
        watchdog_timeout_s=0.3,
        trains=(TrainLimit(20.0, 110.0, 1.6), TrainLimit(10.0, 100.0, 3.0), TrainLimit(10.0, 90.0, 4.0)),
    ),
    RTMSEnvelope(
        max_intensity_pct=100.0,
        min_inter_train_interval_s=2.0,
        max_pulses_per_session=60,
        max_session_duration_s=25.0,
        watchdog_timeout_s=0.3,
        trains=(TrainLimit(20.0, 110.0, 1.6),),
    ),
]
RATES = (20.0,) * 16 + (10.0,) * 8 + (20.0000001, 25.0, 5.0, 0.0, -20.0, math.nan, math.inf, 1e300)
NASTY = (math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 5e-324, -1.0, 0.5)
OP_BYTES = 16
EPS = 1e-9
programs = st.tuples(st.sampled_from(ENVELOPES), st.binary(min_size=OP_BYTES, max_size=40 * OP_BYTES))


def decode_dt(mode: int, u: float) -> float:
    if mode < 190:
        return 2.5 * u
    if mode < 205:
        return 0.0
    if mode < 220:
        return -3.0 * u
    if mode < 240:
        return 5.0 + 20.0 * u
    if mode < 250:
        return 10.0 ** (9.0 * u)
    return (math.nan, math.inf, -math.inf)[int(u * 2.999)]


def decode_request(b: bytes) -> Command:
    """A train request: mostly plausible, sometimes nasty."""
    rate = RATES[b[4] % len(RATES)]
    intensity = 70.0 + 45.0 * fraction(b, 5) if b[7] < 220 else NASTY[b[7] % len(NASTY)]
    extra: dict[str, float] = {"intensity_pct": intensity}
    size = b[8]
    if size < 100:
        extra["pulses"] = 32.0
    elif size < 160:
        extra["pulses"] = float(1 + b[9] % 64)
    elif size < 190:
        extra["train_duration_s"] = 4.0 * b[9] / 255.0
    elif size < 215:
        extra["pulses"] = float(1 + b[9] % 64)
        extra["train_duration_s"] = extra["pulses"] / rate if b[9] < 200 and rate else 1.0
    elif size < 240:
        extra["pulses"] = NASTY[b[9] % len(NASTY)]
    if b[11] >= 250:
        extra.pop("intensity_pct")
    return Command(0.0, rate, b[12] < 235, 0.0, extra, fire=b[10] < 170)


def run(env: RTMSEnvelope, program: bytes):
    layer = RTMSSafetyLayer(env, ManualClock())
    program_clock = ProgramClock(100.0, 1e300)
    out = []
    for k in range(len(program) // OP_BYTES):
        b = program[k * OP_BYTES : (k + 1) * OP_BYTES]
        t = program_clock.advance(decode_dt(b[1], fraction(b, 2)))
        clock = program_clock.clock
        was_latched = layer.stopped
        op = b[0]
        if op < 235:
            cmd = call_at(layer, t, "step", decode_request(b))
        elif op < 245:
            cmd = call_at(layer, t, "ramp_down", "no fresh frame", emergency=True)
        elif op < 251:
            cmd = call_at(layer, t, "ramp_down", "session end")
        elif op < 253:
            cmd = call_at(layer, t, "stop", "operator stop")
        else:
            cmd = call_at(layer, t, "emergency_stop", "emergency button")
        if cmd is not None:
            out.append((clock, cmd, was_latched, layer.state))
    return layer, out


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_every_fired_train_is_inside_the_verified_envelope_and_dose_is_exact(program):
    env, code = program
    layer, out = run(env, code)
    if not out:  # every call was refused (a non-finite or earlier clock): nothing was applied
        return
    t0 = next((c for c, *_ in out if c is not None), None)
    last_end = None
    pulses = trains = 0
    train_time = 0.0
    for clock, cmd, was_latched, state in out:
        x = cmd.extra
        assert cmd.amplitude_mA == 0.0
        if cmd.abort:
            last_end = clock  # an aborted train ends now
            assert not cmd.on
        if not cmd.fire:
            if last_end is not None and clock is not None:
                assert cmd.on == (clock < last_end)
            continue
        f, intensity, n, d = cmd.frequency_Hz, x["intensity_pct"], x["pulses"], x["train_duration_s"]
        assert not was_latched and cmd.on and state is StimState.STIMULATING
        assert all(math.isfinite(v) for v in (f, intensity, n, d))
        assert 0.0 < intensity <= env.max_intensity_pct
        assert n >= 1 and n == int(n) and math.isclose(d, n / f, rel_tol=1e-12)
        cells = [c for c in env.trains if c.frequency_Hz == f and intensity <= c.intensity_pct]
        assert cells, f"no verified cell covers {f} Hz at {intensity} %MT"
        assert d <= min(c.max_train_s for c in cells) * (1 + 1e-9)
        if last_end is not None:
            assert clock - last_end >= env.min_inter_train_interval_s - EPS
        assert clock + d - t0 <= env.max_session_duration_s + EPS
        pulses += int(n)
        trains += 1
        train_time += d
        assert pulses <= env.max_pulses_per_session
        last_end = clock + d
    assert layer.dose == {"pulses": float(pulses), "trains": float(trains), "stim_time_s": layer.stim_time_s}
    assert math.isclose(layer.stim_time_s, train_time, rel_tol=1e-12, abs_tol=1e-12)
    if layer.stopped:
        assert layer.stop_reason
