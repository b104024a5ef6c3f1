"""What the simulated TUS device actually emits, driven through the safety layer: never a refused sonication.

Random programs of sonication requests (plausible, inconsistent and nasty
parameters; watchdog ramps) go through :class:`TUSSafetyLayer` into
:class:`~closedloop.adapters.simulated.SimulatedTUS`, the way the runtime
wires them. Every sonication the device records is then checked here,
independently, against the profile: MI, I_SPPA, I_SPTA, the plane-wave
agreement of PNP and I_SPPA, duty cycle, burst, and the session's thermal
bound computed from the device's own start and end times. The adapter (which
re-checks every command) must never have to refuse what the layer allowed.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safety_helpers import at

from closedloop.adapters import build_adapter
from closedloop.config.profile import DeviceProfile, load_profile
from closedloop.safety import TUSEnvelope, TUSSafetyLayer
from closedloop.session.clocks import ManualClock
from closedloop.types import Command

H = 0.3  # the profile's watchdog timeout: the longest step between calls
OP = 8


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def short_profile(repo) -> DeviceProfile:
    """sim_tus with short times and a large thermal figure, so that every limit binds within seconds."""
    raw = load_profile(repo / "devices" / "sim_tus.toml").model_dump(exclude={"path"})
    test = "test profile: shortened so that the limit binds within a short program"
    for name, value in {
        "max_sonication_s": 2.0,
        "min_pause_s": 0.5,
        "max_total_sonication_s": 6.0,
        "thermal_rise_C_per_J_per_cm2": 1.0,  # 2 J/cm² per session: 2.8 s at 720 mW/cm²
    }.items():
        raw["limits"][name] = {"value": value, "source": test}
    return DeviceProfile.model_validate(raw)


def decode(b: bytes, prev: dict[str, float]) -> tuple[float, bool, dict[str, float]]:
    """Time step, on, parameters: mostly those of the previous request, else fresh (sometimes nasty)."""
    dt = H * b[0] / 255.0
    if b[7] < 200 and prev:
        return dt, b[6] % 7 != 0, prev
    pnp = 1.5 * b[1] / 255.0
    ratio = 0.4 + 1.2 * b[2] / 255.0  # I_SPPA from 0.4 to 1.6 x the plane-wave value
    prf = (5.0, 10.0, 100.0, 1000.0)[b[3] % 4]
    duty = 0.12 * b[4] / 255.0
    params = {
        "pnp_MPa": pnp,
        "center_frequency_MHz": (0.5, 0.25, 0.65, 0.8)[b[5] % 4],
        "isppa_W_per_cm2": 50.0 * pnp * pnp / 1.5 * ratio,
        "duty_cycle": duty,
        "prf_Hz": prf,
        "burst_s": duty / prf if b[6] < 230 else 0.2,
    }
    if b[7] >= 250:
        params["isppa_W_per_cm2"] = (math.nan, math.inf, 1e6, -1.0, 0.0)[b[7] % 5]
    return dt, b[6] % 7 != 0, params


def drive(repo, program: bytes):
    prof = short_profile(repo)
    env = TUSEnvelope.from_envelope({n: {"value": v.value, "source": v.source} for n, v in prof.limits.items()})
    layer = TUSSafetyLayer(env, ManualClock())
    clock = Clock()
    device = build_adapter(prof, clock=clock)
    device.connect()
    params: dict[str, float] = {}
    for k in range(len(program) // OP):
        dt, on, params = decode(program[k * OP : (k + 1) * OP], params)
        clock.t += dt
        if program[k * OP] == 255:  # a watchdog trip: ramp, then re-arm as the runtime does
            out = at(layer, clock.t).ramp_down("no fresh frame", emergency=True)
            device.apply(out, clock.t)
            device.rearm()
        else:
            device.apply(at(layer, clock.t).step(Command(0.0, 0.0, on, clock.t, params)), clock.t)
    device.apply(at(layer, clock.t + 0.01).stop("end"), clock.t + 0.01)
    return prof, layer, device


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.binary(min_size=OP, max_size=300 * OP))
def test_the_device_never_emits_a_sonication_the_limits_refuse(repo, program):
    prof, layer, device = drive(repo, program)  # a LimitViolation here = the adapter refused what the layer allowed
    lim = prof.limit
    energy = 0.0
    for start, end, x in device.sonications:
        pnp, f, isppa = x["pnp_MPa"], x["center_frequency_MHz"], x["isppa_W_per_cm2"]
        duty, prf, burst = x["duty_cycle"], x["prf_Hz"], x["burst_s"]
        assert end >= start and math.isfinite(end)
        assert pnp / math.sqrt(f) <= lim("max_mechanical_index")
        assert lim("min_center_frequency_MHz") <= f <= lim("max_center_frequency_MHz")
        assert 0 < isppa <= lim("max_isppa_W_per_cm2")
        plane = (pnp * 1e6) ** 2 / (2 * lim("plane_wave_impedance_MRayl") * 1e6) / 1e4  # W/cm²
        assert abs(isppa - plane) <= lim("max_isppa_pnp_mismatch") * plane * (1 + 1e-9)
        assert isppa * duty * 1000.0 <= lim("max_ispta_mW_per_cm2") * (1 + 1e-9)
        assert duty <= lim("max_duty_cycle") and burst <= lim("max_burst_s")
        assert abs(burst * prf - duty) <= 0.01 * duty + 1e-12
        assert end - start <= lim("max_sonication_s") + 1e-9
        energy += isppa * duty * (end - start)  # J/cm² the device delivered
        assert lim("thermal_rise_C_per_J_per_cm2") * energy <= lim("max_temperature_rise_C") + 1e-9
    assert sum(end - start for start, end, _ in device.sonications) <= lim("max_total_sonication_s") + 1e-9
    assert device.refused == 0
    assert math.isclose(layer.energy_J_per_cm2, energy, rel_tol=1e-9, abs_tol=1e-12)


def test_the_programs_reach_the_thermal_bound(repo):
    # an allowed request (0.6 MPa, 12 W/cm², duty 0.05: 0.6 W/cm²) held for 10 s of calls every 0.25 s
    program = bytes([212, 102, 128, 1, 106, 0, 10, 200]) * 40
    prof, layer, device = drive(repo, program)
    (s1, e1, _), (s2, e2, _) = device.sonications  # one ended by its 2-s limit, the next by the thermal bound
    assert e1 - s1 == pytest.approx(2.0, abs=0.3) and s2 - e1 >= 0.5
    assert any("thermal bound" in e.reason for e in layer.events if e.kind == "refuse")
    assert 2.0 - 2 * 0.3 * 0.6 <= layer.thermal_rise_bound_C <= 2.0  # stopped within two calls' worth of the limit
