"""The TUS safety layer on the simulated profile: MI, I_SPTA, duty cycle, sonication time."""

from __future__ import annotations

import math

import pytest
from safety_helpers import at

from closedloop.config.profile import load_profile
from closedloop.safety import TUSEnvelope, TUSSafetyLayer, ispta_mW_per_cm2, mechanical_index
from closedloop.session.clocks import ManualClock
from closedloop.types import Command


@pytest.fixture
def env(repo):
    prof = load_profile(repo / "devices" / "sim_tus.toml")
    return TUSEnvelope.from_envelope({n: {"value": l.value, "source": l.source} for n, l in prof.limits.items()})


def sonication(pnp=1.0, fc=0.5, isppa=2.0, prf=10.0, burst=0.02, duty=None, on=True):
    duty = burst * prf if duty is None else duty
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


def test_formulas():
    assert mechanical_index(1.34, 0.5) == pytest.approx(1.34 / math.sqrt(0.5))
    assert ispta_mW_per_cm2(2.4, 0.3) == pytest.approx(720.0)


def test_a_sonication_inside_the_envelope_is_applied(env):
    layer = TUSSafetyLayer(env, ManualClock())
    out = at(layer, 0.0).step(sonication())
    assert out.on and out.frequency_Hz == 10.0
    assert out.extra["mechanical_index"] == pytest.approx(1.0 / math.sqrt(0.5))
    assert out.extra["ispta_mW_per_cm2"] == pytest.approx(400.0)
    at(layer, 0.25).step(sonication())
    assert layer.dose == {"sonications": 1.0, "sonication_s": 0.25}


@pytest.mark.parametrize(
    "cmd, reason",
    [
        (sonication(pnp=1.35), "mechanical index 1.91"),  # 1.35/sqrt(0.5) = 1.909 > 1.9
        (sonication(isppa=3.7, prf=10.0, burst=0.02), "I_SPTA 740"),  # 3.7 W/cm² x 0.2 = 740 mW/cm²
        (sonication(prf=20.0, burst=0.02), "duty cycle 0.4 above"),
        (sonication(burst=0.2, prf=1.0), "burst (pulse) length 0.2 s above"),
        (sonication(duty=0.1), "disagrees with burst_s × prf_Hz"),
        (sonication(fc=1.0), "centre frequency 1 MHz outside"),
        (sonication(pnp=math.nan), "pnp_MPa = nan"),
    ],
)
def test_sonications_outside_the_envelope_are_refused(env, cmd, reason):
    layer = TUSSafetyLayer(env, ManualClock())
    assert not at(layer, 0.0).step(cmd).on
    assert any(reason in e.reason for e in layer.events if e.kind == "refuse"), list(layer.events)


def test_mi_at_the_limit_is_allowed(env):
    assert TUSSafetyLayer(env, ManualClock()).step(sonication(pnp=1.9 * math.sqrt(0.5))).on


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
