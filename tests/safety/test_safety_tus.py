"""The TUS safety layer on the simulated profile: MI, I_SPPA, I_SPTA, PNP/I_SPPA agreement, thermal bound, time."""

from __future__ import annotations

import math

import pytest
from safety_helpers import at

from closedloop.config.profile import load_profile
from closedloop.safety import TUSEnvelope, TUSSafetyLayer, ispta_mW_per_cm2, mechanical_index
from closedloop.safety.tus import plane_wave_isppa_W_per_cm2
from closedloop.session.clocks import ManualClock
from closedloop.types import Command


def limits_of(prof) -> dict[str, dict[str, object]]:
    return {n: {"value": lim.value, "source": lim.source} for n, lim in prof.limits.items()}


@pytest.fixture
def env(repo):
    return TUSEnvelope.from_envelope(limits_of(load_profile(repo / "devices" / "sim_tus.toml")))


def sonication(pnp=0.6, fc=0.5, isppa=None, prf=10.0, burst=0.005, duty=None, on=True):
    """A sonication request; I_SPPA defaults to the plane-wave value of ``pnp`` in 1.5 MRayl."""
    duty = burst * prf if duty is None else duty
    isppa = 50.0 * pnp * pnp / 1.5 if isppa is None else isppa
    return Command(
        0.0,
        0.0,
        on,
        0.0,
        {
            "pnp_MPa": pnp,
            "center_frequency_MHz": fc,
            "isppa_W_per_cm2": isppa,
            "duty_cycle": duty,
            "prf_Hz": prf,
            "burst_s": burst,
        },
    )


def refusals(layer) -> list[str]:
    return [e.reason for e in layer.events if e.kind == "refuse"]


def test_formulas():
    assert mechanical_index(1.34, 0.5) == pytest.approx(1.34 / math.sqrt(0.5))
    assert ispta_mW_per_cm2(2.4, 0.3) == pytest.approx(720.0)
    # I = p² / (2 ρc) in SI units, independently: 0.9 MPa in water (ρ 1000 kg/m³, c 1500 m/s) = 27 W/cm²
    p_pa, rho, c = 0.9e6, 1000.0, 1500.0
    assert plane_wave_isppa_W_per_cm2(0.9, 1.5) == pytest.approx(p_pa**2 / (2 * rho * c) / 1e4)
    assert plane_wave_isppa_W_per_cm2(0.9, 1.5) == pytest.approx(27.0)


def test_the_shipped_impedance_is_that_of_water(repo):
    # Marczak 1997 (J Acoust Soc Am 102:2776): c(T) of pure water; its value at 20 °C is 1482.38 m/s
    def c_water(t):
        return (
            1.402385e3
            + 5.038813 * t
            - 5.799136e-2 * t**2
            + 3.287156e-4 * t**3
            - 1.398845e-6 * t**4
            + 2.787860e-9 * t**5
        )

    assert c_water(20.0) == pytest.approx(1482.38, abs=0.01)
    z = load_profile(repo / "devices" / "sim_tus.toml").limit("plane_wave_impedance_MRayl")
    for t, rho in ((20.0, 998.2), (37.0, 993.3)):  # water density, kg/m³
        assert rho * c_water(t) / 1e6 == pytest.approx(z, rel=0.015)


def test_a_sonication_inside_the_envelope_is_applied(env):
    layer = TUSSafetyLayer(env, ManualClock())
    out = at(layer, 0.0).step(sonication())
    assert out.on and out.frequency_Hz == 10.0
    assert out.extra["mechanical_index"] == pytest.approx(0.6 / math.sqrt(0.5))
    assert out.extra["ispta_mW_per_cm2"] == pytest.approx(600.0)  # 12 W/cm² x 0.05
    at(layer, 0.25).step(sonication())
    assert layer.dose == {"sonications": 1.0, "sonication_s": 0.25}
    assert layer.energy_J_per_cm2 == pytest.approx(0.6 * 0.25)
    assert layer.thermal_rise_bound_C == pytest.approx(0.02 * 0.6 * 0.25)


@pytest.mark.parametrize(
    "cmd, reason",
    [
        (sonication(pnp=1.35), "mechanical index 1.91"),  # 1.35/sqrt(0.5) = 1.909 > 1.9
        (sonication(isppa=200.0), "I_SPPA 200 W/cm² above the limit 190 W/cm²"),
        (sonication(pnp=0.9, isppa=5.0), "I_SPPA 5 W/cm² disagrees with PNP 0.9 MPa"),  # 0.9 MPa carries 27 W/cm²
        (sonication(pnp=0.6, isppa=8.3), "carries 12 W/cm² (allowed ±30 %)"),  # 8.3 < 0.7 x 12
        (sonication(pnp=0.6, isppa=15.7), "disagrees with PNP 0.6 MPa"),  # 15.7 > 1.3 x 12
        (sonication(burst=0.0062), "I_SPTA 744 mW/cm² above"),  # 12 W/cm² x 0.062
        (sonication(prf=40.0, burst=0.01), "duty cycle 0.4 above"),
        (sonication(burst=0.2, prf=0.25), "burst (pulse) length 0.2 s above"),
        (sonication(duty=0.01), "disagrees with burst_s × prf_Hz"),
        (sonication(fc=1.0), "centre frequency 1 MHz outside"),
        (sonication(pnp=math.nan), "pnp_MPa = nan"),
    ],
)
def test_sonications_outside_the_envelope_are_refused(env, cmd, reason):
    layer = TUSSafetyLayer(env, ManualClock())
    assert not at(layer, 0.0).step(cmd).on
    assert any(reason in r for r in refusals(layer)), refusals(layer)


def test_pairs_within_the_plane_wave_tolerance_are_allowed(env):
    for isppa in (8.5, 12.0, 15.5):  # 0.6 MPa: 12 W/cm² ± 30 % = 8.4 ... 15.6
        assert TUSSafetyLayer(env, ManualClock()).step(sonication(pnp=0.6, isppa=isppa, burst=0.004)).on


def test_mi_at_the_limit_is_allowed(env):
    assert TUSSafetyLayer(env, ManualClock()).step(sonication(pnp=1.9 * math.sqrt(0.5), burst=0.001)).on


def test_sonication_ends_in_time_and_a_pause_follows(env):
    layer = TUSSafetyLayer(env, ManualClock())  # 120 s per sonication, 10 s pause, watchdog 0.3 s
    t, on = 0.0, True
    while on:
        on = at(layer, t).step(sonication()).on
        t += 0.25
    assert 119.7 <= t - 0.25 <= 120.0 and layer.stim_time_s <= 120.0
    assert not at(layer, t + 9.0).step(sonication()).on and "pause" in layer.events[-1].reason
    assert at(layer, t + 10.0).step(sonication()).on and layer.dose["sonications"] == 2.0


def test_ramp_down_stops_at_once(env):
    layer = TUSSafetyLayer(env, ManualClock())
    assert at(layer, 0.0).step(sonication()).fire  # the start of a sonication is marked
    assert at(layer, 0.05).step(sonication()).fire is False  # ... and only the start
    out = at(layer, 0.1).ramp_down("no fresh frame", emergency=True)
    assert not out.on and out.abort  # cut, not ended: adapters abort
    assert layer.stim_time_s == pytest.approx(0.1)


def test_without_a_thermal_figure_every_sonication_is_refused(repo):
    limits = limits_of(load_profile(repo / "devices" / "sim_tus.toml"))
    del limits["thermal_rise_C_per_J_per_cm2"]
    layer = TUSSafetyLayer(TUSEnvelope.from_envelope(limits), ManualClock())
    assert not at(layer, 0.0).step(sonication(pnp=0.1, burst=0.001)).on
    assert "no thermal figure for this setup" in refusals(layer)[-1]
    assert layer.energy_J_per_cm2 == 0.0


def test_the_thermal_bound_ends_sonications_before_the_limit(env):
    # 0.02 °C per J/cm² and 2 °C: 100 J/cm² per session; at I_SPTA 0.6 W/cm² that is 166.7 s in all
    layer = TUSSafetyLayer(env, ManualClock())
    t, dt = 0.0, 0.1
    applied = energy = 0.0
    ends = []
    prev = None
    while t < 400.0:
        out = at(layer, t).step(sonication())
        if prev is not None and prev.on:
            energy += prev.extra["ispta_mW_per_cm2"] / 1000.0 * dt  # from what the layer applied
            applied += dt
        if prev is not None and prev.on and not out.on:
            ends.append(t)
        assert 0.02 * energy <= 2.0 + 1e-9
        prev = out
        t = round(t + dt, 9)
    assert layer.energy_J_per_cm2 == pytest.approx(energy)
    assert layer.thermal_rise_bound_C <= 2.0
    # first sonication ends by its 120-s limit, the second by the thermal bound (E + 0.6 x 0.3 <= 100)
    assert ends[0] == pytest.approx(119.8, abs=0.15)
    # never past the budget, and not stopped earlier than one watchdog interval plus one call before it
    assert 100.0 / 0.6 - 0.3 - 0.1 - 1e-6 <= applied <= 100.0 / 0.6
    assert any("thermal bound" in r for r in refusals(layer))
    assert not layer.stopped  # a weaker sonication could still fit the budget
