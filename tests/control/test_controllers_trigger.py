"""Trigger controller on synthetic feature traces: one fire per crossing, onset, refractory period, cap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError
from safety_helpers import at
from safety_helpers import make as make_layer

from closedloop.config import PipelineError, TriggerConfig, load_pipeline
from closedloop.config.profile import load_profile
from closedloop.control import build_controller
from closedloop.safety import RTMSEnvelope, TUSEnvelope
from closedloop.types import Command, Frame, Quality

HOP = 0.05  # a frame every 50 ms
TRAIN = dict(modality="rtms", train=dict(frequency_Hz=20.0, intensity_pct=110.0, pulses=32, duration_s=1.6))
SONICATION = dict(
    modality="tus",
    sonication=dict(
        pnp_MPa=0.6,
        center_frequency_MHz=0.5,
        isppa_W_per_cm2=12.0,  # the plane-wave I_SPPA of 0.6 MPa in 1.5 MRayl (the profile checks the pair)
        duty_cycle=0.05,
        prf_Hz=10.0,
        burst_s=0.005,
        duration_s=1.0,
    ),
)
trigger_config = TypeAdapter(TriggerConfig).validate_python


def make(**kw):
    cfg = {"feature": "alpha", "threshold": 1.0, "refractory_s": 10.0, **TRAIN, **kw}
    return build_controller(trigger_config(cfg))


def run(ctl, trace, t0: float = 100.0, flags=None) -> list[Command]:
    out = []
    for i, x in enumerate(trace):
        fl = Quality.OK if flags is None else flags[i]
        out.append(ctl.update(Frame(t0 + i * HOP, np.array([x]), ("alpha",), fl, i)))
    return out


def fire_times(cmds) -> list[float]:
    return [c.time for c in cmds if c.fire]


def test_one_fire_after_onset_frames_with_the_configured_train():
    trace = [0.0] * 20 + [2.0] * 40  # crosses 1.0 at frame 20, stays above for 2 s
    cmds = run(make(onset=3), trace)
    fired = [c for c in cmds if c.fire]
    assert len(fired) == 1  # one fire, not one per frame above the threshold
    c = fired[0]
    assert c.time == pytest.approx(100.0 + 22 * HOP)  # the third consecutive frame above
    assert c.on and c.frequency_Hz == 20.0
    assert c.extra == {"intensity_pct": 110.0, "pulses": 32.0, "train_duration_s": 1.6} and c.fire
    assert not any(x.on for x in cmds if x is not c)  # rTMS: nothing is asked between fires


def test_an_interrupted_onset_does_not_fire_and_direction_below_mirrors():
    trace = [2.0, 2.0, 0.0, 2.0, 2.0, 0.0] * 10  # never 3 in a row above
    assert fire_times(run(make(onset=3), trace)) == []
    below = run(make(onset=3, direction="below", threshold=1.0), [2.0] * 5 + [0.5] * 5)
    assert fire_times(below) == [pytest.approx(100.0 + 7 * HOP)]


def test_refractory_period_on_frame_time_and_max_count():
    trace = [2.0] * 600  # 30 s always above the threshold
    times = fire_times(run(make(onset=2, refractory_s=10.0), trace))
    # first fire on frame 1; then each time both the refractory period is over and 2 new frames are above
    assert times == [pytest.approx(100.05), pytest.approx(110.05), pytest.approx(120.05)]
    assert np.all(np.diff(times) >= 10.0 - 1e-9)
    assert fire_times(run(make(onset=2, refractory_s=10.0, max_count=2), trace)) == times[:2]


def test_deterministic_on_frame_time_not_on_call_count():
    trace = [0.0, 2.0, 2.0, 2.0] * 100
    a = fire_times(run(make(onset=2, refractory_s=3.0), trace))
    b = fire_times(run(make(onset=2, refractory_s=3.0), trace))
    assert a == b and len(a) > 3
    # the same trace at twice the frame rate keeps the same refractory period in seconds
    ctl = make(onset=1, refractory_s=3.0)
    fast = [ctl.update(Frame(100.0 + i * HOP / 2, np.array([2.0]), ("alpha",), Quality.OK, i)) for i in range(400)]
    assert np.diff(fire_times(fast)) == pytest.approx([3.0] * (len(fire_times(fast)) - 1))


def test_bad_frames_reset_the_onset_count():
    trace = [2.0] * 12
    flags = [Quality.OK, Quality.OK, Quality.ARTIFACT] * 4
    assert fire_times(run(make(onset=3), trace, flags=flags)) == []
    assert fire_times(run(make(onset=3), [2.0, 2.0, math.nan, 2.0, 2.0, 2.0])) == [pytest.approx(100.25)]


def test_tus_fire_starts_a_sonication_held_for_its_length():
    cfg = {"feature": "alpha", "threshold": 1.0, "refractory_s": 20.0, **SONICATION}
    cmds = run(build_controller(trigger_config(cfg)), [2.0] * 200)  # 10 s above the threshold
    on = np.array([c.on for c in cmds])
    fires = [c for c in cmds if c.fire]
    assert len(fires) == 1 and fires[0].time == 100.0
    assert on.sum() == 20  # 1 s of frames at 50 ms: one sonication of sonication_s
    assert on[:20].all() and not on[20:].any()
    assert fires[0].frequency_Hz == 10.0 and fires[0].extra["duty_cycle"] == 0.05


def test_bad_frame_ends_a_sonication_with_ramp_down():
    cfg = {"feature": "alpha", "threshold": 1.0, "refractory_s": 20.0, "on_bad_frame": "ramp_down", **SONICATION}
    flags = [Quality.OK] * 5 + [Quality.GAP] + [Quality.OK] * 30
    cmds = run(build_controller(trigger_config(cfg)), [2.0] * 36, flags=flags)
    assert [c.on for c in cmds[:7]] == [True] * 5 + [False, False]


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"train": {"frequency_Hz": 20.0, "intensity_pct": 110.0}}, "give `pulses` or `duration_s`"),
        ({"pnp_MPa": 1.0}, r"pnp_MPa\n  Extra inputs are not permitted"),
        ({"modality": "tus"}, r"tus.sonication\n  Field required"),
        ({"refractory_s": 0.0}, "greater than 0"),
    ],
)
def test_config_errors_name_the_key(kw, msg):
    with pytest.raises(ValidationError, match=msg):
        trigger_config({"feature": "alpha", "threshold": 1.0, "refractory_s": 10.0, **TRAIN, **kw})


@pytest.mark.parametrize(
    "overrides, msg",
    [
        ({"controller.refractory_s": 5.0}, "controller.refractory_s: 5 s is shorter than the train (1.6 s) plus"),
        ({"controller.train.intensity_pct": 120.0}, "intensity 120 %MT above the cap 110 %MT"),
        ({"controller.train.pulses": 40, "controller.train.duration_s": 2.0}, "exceeds the verified 1.6 s"),
        ({"device.motor_threshold_pct_mso": None}, "device.motor_threshold_pct_mso: the magstim adapter"),
    ],
)
def test_pipeline_check_refuses_trains_the_layer_would_refuse(repo, overrides, msg):
    with pytest.raises(PipelineError) as e:
        load_pipeline(repo / "pipelines" / "alpha_rtms_magstim.toml", overrides)
    assert any(msg in p for p in e.value.problems), e.value.problems


def test_pipeline_check_of_tus_sonication_length_and_pause(repo):
    with pytest.raises(PipelineError) as e:
        load_pipeline(repo / "pipelines" / "alpha_tus_sim.toml", {"controller.refractory_s": 25.0})
    assert any("controller.refractory_s: 25 s is shorter than the sonication (20 s)" in p for p in e.value.problems)
    with pytest.raises(PipelineError) as e:
        load_pipeline(repo / "pipelines" / "alpha_tus_sim.toml", {"controller.sonication.pnp_MPa": 1.5})
    assert any("mechanical index 2.12 above the limit 1.9" in p for p in e.value.problems)


def _layer(repo, name, env_type):
    prof = load_profile(repo / "devices" / f"{name}.toml")
    return make_layer(
        env_type.from_envelope({n: {"value": lim.value, "source": lim.source} for n, lim in prof.limits.items()})
    )


def test_every_fire_is_allowed_by_the_rtms_layer_over_a_long_noisy_trace(repo):
    rng = np.random.default_rng(3)
    t = np.arange(6000) * HOP  # 5 min
    trace = 1.0 + 0.3 * np.sin(2 * np.pi * t / 17.0) + rng.normal(0, 0.2, t.size)
    ctl = make(onset=4, refractory_s=6.6, max_count=10)  # 6.6 s: the shortest period the profile allows
    layer = _layer(repo, "sim_rtms", RTMSEnvelope)
    desired = run(ctl, trace)
    allowed = [at(layer, d.time).step(d) for d in desired]
    wanted, given = fire_times(desired), fire_times(allowed)
    assert len(wanted) == 10  # the cap (crossings are frequent in this trace)
    assert given == wanted and layer.counts.get("refuse", 0) == 0
    assert layer.account.pulses == 320  # exactly the profile's session cap, never more


def test_a_tus_fire_becomes_one_sonication_of_the_configured_length(repo):
    cfg = {"feature": "alpha", "threshold": 1.0, "refractory_s": 11.0, **SONICATION}
    layer = _layer(repo, "sim_tus", TUSEnvelope)
    allowed = [at(layer, d.time).step(d) for d in run(build_controller(trigger_config(cfg)), [2.0] * 500)]
    assert layer.counts.get("refuse", 0) == 0
    assert fire_times(allowed) == [pytest.approx(100.0), pytest.approx(111.0), pytest.approx(122.0)]
    assert layer.dose["sonications"] == 3 and layer.stim_time_s == pytest.approx(3.0)
