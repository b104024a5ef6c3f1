"""The safety layer: clamps, slew, dose, frequency changes, ramp-down."""

from __future__ import annotations

import math

import pytest

from closedloop.safety import SafetyLayer, TESEnvelope
from closedloop.types import Command

ENV = TESEnvelope(max_amplitude_mA=2.0, max_ramp_rate_mA_per_s=0.5, emergency_ramp_rate_mA_per_s=4.0,
                  max_session_duration_s=100.0, max_charge_C=0.05, min_frequency_Hz=0.0,
                  max_frequency_Hz=100.0, watchdog_timeout_s=0.3)


def want(a, f=10.0, on=True):
    return Command(a, f, on)


def test_clamps_to_limit_and_counts():
    s = SafetyLayer(ENV)
    s.step(want(0), 0.0)
    for i in range(1, 200):
        out = s.step(want(50.0), i * 0.1)
    assert out.amplitude_mA == 2.0
    assert s.clamps == 199 and s.events[0].kind == "clamp" and "limit 2.0 mA" in s.events[0].reason


def test_slew_limited():
    s = SafetyLayer(ENV)
    s.step(want(0), 0.0)
    out = s.step(want(2.0), 1.0)
    assert out.amplitude_mA == pytest.approx(0.5)
    out = s.step(want(0.0, on=False), 1.5)
    assert out.amplitude_mA == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -3.0])
def test_bad_values_go_to_zero(bad):
    s = SafetyLayer(ENV)
    s.step(want(1.0), 0.0)
    s.step(want(1.0), 10.0)
    out = s.step(want(bad), 10.5)
    assert out.amplitude_mA == pytest.approx(0.75)  # ramping toward 0, never toward the bad value
    assert s.clamps >= 1


def test_charge_is_integral_and_limit_stops():
    s = SafetyLayer(ENV)
    s.step(want(0), 0.0)
    s.step(want(1.0), 2.0)  # ramp 0 → 1 mA over 2 s: 1 mA·s
    s.step(want(1.0), 12.0)  # 10 s at 1 mA: 10 mA·s
    assert s.charge_C == pytest.approx(0.011)
    for t in range(13, 80):
        s.step(want(1.0), float(t))
    assert s.stopped and "charge limit" in s.stop_reason
    assert s.amplitude_mA == 0.0
    assert s.charge_C <= ENV.max_charge_C + 1.0 * 2.0 / 1000  # at most the ramp-down tail beyond the limit


def test_frequency_change_ramps_to_zero_first():
    s = SafetyLayer(ENV)
    s.step(want(0.0, 10.0), 0.0)
    s.step(want(1.0, 10.0), 2.0)
    out = s.step(want(1.0, 20.0), 3.0)
    assert out.frequency_Hz == 10.0 and out.amplitude_mA == pytest.approx(0.5)
    out = s.step(want(1.0, 20.0), 4.0)
    assert out.amplitude_mA == 0.0
    out = s.step(want(1.0, 20.0), 5.0)
    assert out.frequency_Hz == 20.0 and out.amplitude_mA == pytest.approx(0.5)


def test_watchdog_ramp_down_uses_emergency_rate():
    s = SafetyLayer(ENV)
    s.step(want(0.0), 0.0)
    s.step(want(2.0), 4.0)
    out = s.ramp_down(4.25, "no data", emergency=True)
    assert out.amplitude_mA == pytest.approx(1.0)
    assert s.ramp_down(4.5, "no data", emergency=True).amplitude_mA == 0.0
    assert s.counts["watchdog"] == 2 and sum(e.kind == "watchdog" for e in s.events) == 1


def test_duration_limit():
    s = SafetyLayer(ENV)
    s.step(want(1.0), 0.0)
    s.step(want(1.0), 100.0)
    assert s.stopped and "duration" in s.stop_reason


def test_time_going_backwards_does_not_move_anything():
    s = SafetyLayer(ENV)
    s.step(want(0.0), 10.0)
    out = s.step(want(2.0), 5.0)
    assert out.amplitude_mA == 0.0 and s.charge_C == 0.0
