"""Property tests of the TUS safety layer: no sonication outside the envelope, ever.

For arbitrary sequences of sonication requests (any pressure, frequency,
intensity, duty cycle, PRF and burst, NaN and huge values included), times
and watchdog/stop calls: whenever the layer sonicates, the mechanical index
MI = PNP/sqrt(f_MHz), I_SPPA, I_SPTA = I_SPPA × duty, the agreement of
I_SPPA with the plane-wave PNP² / (2 ρc), the duty cycle (= burst × PRF),
the burst length and the centre frequency are within the envelope (computed
here independently); each sonication, the pause before it, the total
sonication time, the thermal bound (figure × Σ I_SPTA·t) and the session
duration respect their limits while the layer is called at least once per
watchdog timeout; and the sonication time the layer reports equals what it
applied.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safety_programs import ProgramClock, call_at, fraction

from closedloop.safety import TUSEnvelope, TUSSafetyLayer
from closedloop.session.clocks import ManualClock
from closedloop.types import Command

pytestmark = pytest.mark.slow  # 10,000 hypothesis examples per property

H = 0.3
ENV = TUSEnvelope(
    max_mechanical_index=1.9,
    max_isppa_W_per_cm2=60.0,  # below the plane-wave I_SPPA of the strongest PNP drawn, so it binds
    max_ispta_mW_per_cm2=720.0,
    plane_wave_impedance_MRayl=1.5,
    max_isppa_pnp_mismatch=0.3,
    max_temperature_rise_C=2.0,
    thermal_rise_C_per_J_per_cm2=20.0,  # 0.1 J/cm² per session: binds before the total time above 0.125 W/cm²
    max_duty_cycle=0.3,
    max_burst_s=0.1,
    min_center_frequency_MHz=0.25,
    max_center_frequency_MHz=0.65,
    max_sonication_s=0.6,
    min_pause_s=0.3,
    max_total_sonication_s=0.8,
    max_session_duration_s=6.0,
    watchdog_timeout_s=H,
)
FC = (0.5, 0.5, 0.5, 0.25, 0.65, 0.2, 0.7, 1.0)
NASTY = (math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 5e-324, -1.0)
KEYS = ("pnp_MPa", "center_frequency_MHz", "isppa_W_per_cm2", "duty_cycle", "prf_Hz", "burst_s")
OP_BYTES = 16
EPS = 1e-9
programs = st.binary(min_size=OP_BYTES, max_size=40 * OP_BYTES)


def decode_dt(mode: int, u: float, gaps: bool) -> float:
    if not gaps:
        mode %= 225
    if mode < 200:
        return H * u
    if mode < 215:
        return 0.0
    if mode < 225:
        return -2.0 * H * u
    if mode < 240:
        return H * (1.0 + 3.0 * u)
    if mode < 250:
        return 10.0 ** (9.0 * u)
    return (math.nan, math.inf, -math.inf)[int(u * 2.999)]


def decode_params(b: bytes, prev: dict[str, float]) -> dict[str, float]:
    """Sonication parameters: often unchanged, mostly plausible, sometimes inconsistent or nasty."""
    if b[3] < 150 and prev:
        return dict(prev)
    prf = 5.0 + 995.0 * fraction(b, 4)
    duty = 0.35 * b[6] / 255.0
    p = {
        "pnp_MPa": 1.6 * b[7] / 255.0,
        "center_frequency_MHz": FC[b[8] % len(FC)],
        "isppa_W_per_cm2": 50.0 * (1.6 * b[7] / 255.0) ** 2 / 1.5 * (0.5 + b[9] / 255.0),  # 0.5-1.5 x plane wave
        "prf_Hz": prf,
        "duty_cycle": duty,
        "burst_s": duty / prf if b[10] < 220 else 0.2 * b[11] / 255.0,
    }
    if b[12] >= 235:
        p[KEYS[b[13] % len(KEYS)]] = NASTY[b[14] % len(NASTY)]
    if b[12] == 255:
        del p[KEYS[b[15] % len(KEYS)]]
    return p


def run(program: bytes):
    layer = TUSSafetyLayer(ENV, ManualClock())
    program_clock = ProgramClock(50.0, H)
    gaps = program[-1] >= 128
    params: dict[str, float] = {}
    out = []
    for k in range(len(program) // OP_BYTES):
        b = program[k * OP_BYTES : (k + 1) * OP_BYTES]
        t = program_clock.advance(decode_dt(b[1], fraction(b, 2), gaps))
        clock, gap = program_clock.clock, program_clock.gap
        was_latched = layer.stopped
        op = b[0]
        if op < 240:
            params = decode_params(b, params)
            cmd = call_at(layer, t, "step", Command(0.0, 0.0, b[5] < 225, t, dict(params)))
        elif op < 250:
            cmd = call_at(layer, t, "ramp_down", "no fresh frame", emergency=True)
        elif op < 253:
            cmd = call_at(layer, t, "stop", "operator stop")
        else:
            cmd = call_at(layer, t, "emergency_stop", "emergency button")
        if cmd is not None:
            out.append((clock, cmd, gap, was_latched))
    return layer, out


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_every_sonication_is_inside_the_envelope_and_time_is_accounted(program):
    layer, out = run(program)
    if not out:  # every call was refused (a non-finite or earlier clock): nothing was applied
        return
    t0 = next((c for c, *_ in out if c is not None), None)
    prev_on, prev_t = False, None
    on_time = total = energy = 0.0
    ispta = 0.0
    sonications = 0
    off_since = None
    for clock, cmd, gap, was_latched in out:
        x = cmd.extra
        dt = 0.0 if prev_t is None else clock - prev_t
        if prev_on:
            on_time += dt
            total += dt
            energy += ispta * dt
            if not gap:
                assert ENV.thermal_rise_C_per_J_per_cm2 * energy <= ENV.max_temperature_rise_C + EPS
                assert on_time <= ENV.max_sonication_s + EPS
                assert total <= ENV.max_total_sonication_s + EPS
                assert clock - t0 <= ENV.max_session_duration_s + EPS
        if cmd.on:
            assert not was_latched
            assert all(math.isfinite(x[k]) and x[k] > 0 for k in KEYS)
            f = x["center_frequency_MHz"]
            assert ENV.min_center_frequency_MHz <= f <= ENV.max_center_frequency_MHz
            assert x["pnp_MPa"] / math.sqrt(f) <= ENV.max_mechanical_index + EPS
            assert x["isppa_W_per_cm2"] <= ENV.max_isppa_W_per_cm2
            plane = x["pnp_MPa"] ** 2 / (2 * ENV.plane_wave_impedance_MRayl * 1e6) * 1e12 / 1e4  # SI, then W/cm²
            assert abs(x["isppa_W_per_cm2"] - plane) <= ENV.max_isppa_pnp_mismatch * plane + EPS
            assert x["isppa_W_per_cm2"] * x["duty_cycle"] * 1000.0 <= ENV.max_ispta_mW_per_cm2 + EPS
            assert x["duty_cycle"] <= ENV.max_duty_cycle
            assert abs(x["burst_s"] * x["prf_Hz"] - x["duty_cycle"]) <= 0.01 * x["duty_cycle"] + EPS
            assert x["burst_s"] <= ENV.max_burst_s
            assert cmd.frequency_Hz == x["prf_Hz"]
            assert cmd.fire == (not prev_on)  # the convention: fire marks a sonication's start
        else:
            assert not cmd.fire
            assert not cmd.abort or prev_on  # abort only cuts a running sonication
        if cmd.on:
            if not prev_on:
                sonications += 1
                on_time = 0.0
                if off_since is not None and not gap:
                    assert clock - off_since >= ENV.min_pause_s - EPS
        elif prev_on:
            off_since = clock
        prev_on = cmd.on
        ispta = x["isppa_W_per_cm2"] * x["duty_cycle"] if cmd.on else 0.0
        prev_t = clock if clock is not None else prev_t
    assert math.isclose(layer.stim_time_s, total, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(layer.energy_J_per_cm2, energy, rel_tol=1e-9, abs_tol=1e-12)
    assert layer.dose == {"sonications": float(sonications), "sonication_s": layer.stim_time_s}
