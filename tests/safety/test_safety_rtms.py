"""The rTMS safety layer on the verified cell of the simulated profile (Chen et al. 1997)."""

from __future__ import annotations

import pytest
from safety_helpers import at

from closedloop.config.profile import load_profile
from closedloop.safety import RTMSEnvelope, RTMSSafetyLayer, StimState
from closedloop.session.clocks import ManualClock
from closedloop.types import Command


@pytest.fixture
def layer(repo):
    prof = load_profile(repo / "devices" / "sim_rtms.toml")
    env = RTMSEnvelope.from_envelope({n: {"value": lim.value, "source": lim.source} for n, lim in prof.limits.items()})
    return RTMSSafetyLayer(env, ManualClock())


def train(rate=20.0, intensity=110.0, fire=True, **size):
    size = size or {"pulses": 32}
    return Command(0.0, rate, True, 0.0, {"intensity_pct": intensity, **size}, fire=fire)


def refusals(layer):
    return [e.reason for e in layer.events if e.kind == "refuse"]


def test_the_verified_train_fires_and_runs(layer):
    out = at(layer, 10.0).step(train())
    assert out.extra == {"intensity_pct": 110.0, "pulses": 32.0, "train_duration_s": 1.6} and out.fire
    assert out.on and out.frequency_Hz == 20.0 and layer.state is StimState.STIMULATING
    mid = at(layer, 11.0).step(train(fire=False))
    assert mid.on and mid.fire is False
    assert not at(layer, 11.6).step(train(fire=False)).on and layer.state is StimState.ARMED
    assert layer.dose == {"pulses": 32.0, "trains": 1.0, "stim_time_s": 1.6}


def test_duration_can_be_given_instead_of_pulses(layer):
    out = at(layer, 0.0).step(train(train_duration_s=1.0))
    assert out.extra["pulses"] == 20.0 and out.extra["train_duration_s"] == 1.0


@pytest.mark.parametrize(
    "request_, reason",
    [
        (train(pulses=33), "exceeds the verified 1.6 s"),
        (train(intensity=111.0), "above the cap 110 %MT"),
        (train(rate=10.0, intensity=100.0), "no verified safe train duration for 10 Hz"),
        (train(rate=25.0, intensity=90.0), "no verified safe train duration for 25 Hz"),
        (train(pulses=32, train_duration_s=2.0), "disagrees with pulses / rate"),
        (train(pulses=2.5), "not a whole number"),
        (train(intensity=float("nan")), "not a positive number"),
        (train(rate=float("inf")), "not a positive number"),
        (Command(0.0, 20.0, True, 0.0, {"intensity_pct": 100.0}, fire=True), "give pulses or train_duration_s"),
    ],
)
def test_trains_outside_the_verified_table_are_refused(layer, request_, reason):
    out = at(layer, 0.0).step(request_)
    assert out.fire is False and not out.on and layer.dose["pulses"] == 0.0
    assert any(reason in r for r in refusals(layer)), refusals(layer)


def test_lower_intensity_at_the_verified_rate_is_covered(layer):
    assert at(layer, 0.0).step(train(intensity=90.0)).fire


def test_inter_train_interval_counts_from_the_end_of_the_train(layer):
    at(layer, 0.0).step(train())  # runs until 1.6 s
    assert at(layer, 1.0).step(train()).fire is False and "running" in refusals(layer)[-1]
    assert at(layer, 6.5).step(train()).fire is False and "inter-train interval is 5 s" in refusals(layer)[-1]
    assert at(layer, 6.6).step(train()).fire


def test_pulse_cap_latches_the_stop(layer):
    t = 0.0
    for _ in range(10):  # 10 x 32 = 320 pulses, the cap
        assert at(layer, t).step(train()).fire
        t += 6.6
    out = at(layer, t).step(train())
    assert out.fire is False and layer.stopped and "pulse cap 320" in layer.stop_reason
    assert layer.dose["pulses"] == 320.0 and layer.state is StimState.STOPPED


def test_watchdog_aborts_a_running_train(layer):
    at(layer, 0.0).step(train())
    out = at(layer, 0.5).ramp_down("no fresh frame", emergency=True)
    assert out.abort and not out.on and layer.state is StimState.ARMED
    assert at(layer, 5.4).step(train()).fire is False  # the interval runs from the abort
    assert at(layer, 5.5).step(train()).fire
    assert layer.dose["pulses"] == 64.0  # an aborted train counts in full


def test_nothing_fires_after_an_emergency_stop(layer):
    at(layer, 0.0).emergency_stop("button")
    assert at(layer, 10.0).step(train()).fire is False and layer.state is StimState.STOPPED


def test_profiles_without_a_verified_cell_or_with_a_misnamed_one_are_refused(repo):
    from closedloop.config.profile import DeviceProfile, parse_train_limit

    raw = load_profile(repo / "devices" / "sim_rtms.toml").model_dump(exclude={"path"})
    cell = raw["limits"].pop("train_max_s_20Hz_110pctMT")
    with pytest.raises(ValueError, match="no verified train-duration cell"):
        DeviceProfile.model_validate(raw)
    raw["limits"]["train_max_s_20Hz_110pct"] = cell
    with pytest.raises(ValueError, match="train_max_s_<rate>Hz_<intensity>pctMT"):
        DeviceProfile.model_validate(raw)
    assert parse_train_limit("train_max_s_0p5Hz_90pctMT") == (0.5, 90.0)
