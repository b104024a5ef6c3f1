"""The tES safety layer, the state machine and the pipeline-level envelope."""

from __future__ import annotations

import math
import shutil
import threading

import pytest
from safety_helpers import at, make

from closedloop.config import PipelineError, load_pipeline
from closedloop.safety import (
    RTMSSafetyLayer,
    SafetyClockError,
    StimState,
    TESEnvelope,
    TESSafetyLayer,
    TUSSafetyLayer,
    build_safety_layer,
)
from closedloop.safety.state import IllegalTransition, StateMachine
from closedloop.session.clocks import ManualClock
from closedloop.types import Command

ENV = TESEnvelope(
    max_amplitude_mA=2.0,
    max_ramp_rate_mA_per_s=0.5,
    emergency_ramp_rate_mA_per_s=4.0,
    max_session_duration_s=100.0,
    max_charge_C=0.05,
    min_frequency_Hz=0.0,
    max_frequency_Hz=100.0,
    watchdog_timeout_s=0.3,
)


def want(a, f=10.0, on=True):
    return Command(a, f, on)


def drive(layer, amplitude, t0, t1, dt=0.1, f=10.0):
    """Step from t0 to t1 (inclusive) every dt asking for ``amplitude``; return the last command."""
    n = int(round((t1 - t0) / dt))
    out = None
    for i in range(n + 1):
        out = at(layer, t0 + i * dt).step(want(amplitude, f))
    return out


def test_layer_type_follows_the_envelope():
    assert type(make(ENV)) is TESSafetyLayer
    with pytest.raises(TypeError, match="no safety layer"):
        make(object())


def test_clamps_to_limit_and_counts():
    s = make(ENV)
    at(s, 0.0).step(want(0))
    for i in range(1, 200):
        out = at(s, i * 0.1).step(want(50.0))
    assert out.amplitude_mA == 2.0
    clamps = [e for e in s.events if e.kind == "clamp"]
    assert s.clamps == 199 and len(clamps) == 1 and "limit 2 mA" in clamps[0].reason


def test_slew_limited():
    s = make(ENV)
    at(s, 0.0).step(want(0))
    assert drive(s, 2.0, 0.1, 1.0).amplitude_mA == pytest.approx(0.5)
    assert drive(s, 0.0, 1.1, 1.5).amplitude_mA == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -3.0])
def test_bad_values_go_to_zero(bad):
    s = make(ENV)
    drive(s, 1.0, 0.0, 2.0)
    out = drive(s, bad, 2.1, 2.5)
    assert out.amplitude_mA == pytest.approx(0.75)  # ramping toward 0, never toward the bad value
    assert s.clamps >= 1


def test_charge_is_the_trapezoid_of_the_applied_current():
    s = make(ENV)
    drive(s, 1.0, 0.0, 2.0)  # ramp 0 → 1 mA over 2 s: 1 mA·s
    drive(s, 1.0, 2.1, 12.0)  # 10 s at 1 mA: 10 mA·s
    assert s.charge_C == pytest.approx(0.011)
    assert s.stim_time_s == pytest.approx(12.0)


def test_charge_limit_is_never_exceeded():
    s = make(ENV)
    out = drive(s, 2.0, 0.0, 80.0)
    assert s.stopped and "charge limit" in s.stop_reason
    assert out.amplitude_mA == 0.0 and s.state is StimState.STOPPED
    # the final ramp started early enough: the limit itself is never crossed
    assert 0.049 < s.charge_C <= ENV.max_charge_C
    assert [e.kind for e in s.events if e.kind == "dose"] == ["dose"]
    assert drive(s, 2.0, 80.1, 81.0).amplitude_mA == 0.0  # and nothing after the stop


def test_duration_limit_ramps_down_in_time():
    env = TESEnvelope(2.0, 0.5, 4.0, 10.0, 10.0, 0.0, 100.0, 0.3)
    s = make(env)
    amps = [drive(s, 1.0, 0.0, 0.0)]
    amps += [at(s, 0.1 * i).step(want(1.0)).amplitude_mA for i in range(1, 120)]
    on = [i * 0.1 for i, a in enumerate(amps[1:], 1) if a > 0]
    assert max(on) <= 10.0 and s.stopped and "duration" in s.stop_reason


def test_frequency_change_ramps_to_zero_first():
    s = make(ENV)
    drive(s, 1.0, 0.0, 2.0, f=10.0)
    out = drive(s, 1.0, 2.1, 3.0, f=20.0)
    assert out.frequency_Hz == 10.0 and out.amplitude_mA == pytest.approx(0.5)
    out = drive(s, 1.0, 3.1, 4.0, f=20.0)
    assert out.frequency_Hz == 10.0 and out.amplitude_mA == 0.0
    out = drive(s, 1.0, 4.1, 4.1, f=20.0)
    assert out.frequency_Hz == 20.0 and out.amplitude_mA == pytest.approx(0.05)
    assert any(e.kind == "frequency" and "10.0 → 20" in e.reason for e in s.events)


def test_frequency_outside_the_device_range_is_clamped_and_needed_before_current():
    env = TESEnvelope(2.0, 0.5, 4.0, 100.0, 1.0, 1.0, 40.0, 0.3)
    s = make(env)
    assert drive(s, 1.0, 0.0, 1.0, f=math.nan).amplitude_mA == 0.0  # no valid frequency named yet
    out = drive(s, 1.0, 1.1, 2.1, f=150.0)
    assert out.frequency_Hz == 40.0 and out.amplitude_mA == pytest.approx(0.55)


def test_phase_changes_only_at_zero_amplitude():
    s = make(ENV)
    at(s, 0.0).step(Command(0.0, 10.0, True, 0.0, {"phase_deg": 90.0}))
    out = at(s, 1.0).step(Command(1.0, 10.0, True, 0.0, {"phase_deg": 90.0}))
    assert out.extra["phase_deg"] == 90.0 and out.amplitude_mA == pytest.approx(0.5)
    out = at(s, 1.5).step(Command(1.0, 10.0, True, 0.0, {"phase_deg": -90.0}))
    assert out.extra["phase_deg"] == 90.0 and out.amplitude_mA == pytest.approx(0.25)
    at(s, 2.0).step(Command(1.0, 10.0, True, 0.0, {"phase_deg": -90.0}))
    out = at(s, 2.5).step(Command(1.0, 10.0, True, 0.0, {"phase_deg": -90.0}))
    assert out.extra["phase_deg"] == 270.0


def test_watchdog_ramp_uses_the_emergency_rate_until_fresh_frames():
    s = make(ENV)
    drive(s, 2.0, 0.0, 4.0)
    assert at(s, 4.25).ramp_down("no data", emergency=True).amplitude_mA == pytest.approx(1.0)
    # a later normal ramp-down (session end after the source was lost) keeps the emergency rate
    assert at(s, 4.375).ramp_down("session end").amplitude_mA == pytest.approx(0.5)
    assert s.counts["watchdog"] == 1 and s.counts["stop"] == 1
    assert not s.stopped  # the watchdog does not latch: fresh frames resume stimulation
    assert at(s, 4.5).step(want(2.0)).amplitude_mA == pytest.approx(0.5625)
    assert at(s, 5.0).ramp_down("session end").amplitude_mA == pytest.approx(0.3125)  # normal rate again


def test_a_ramp_down_is_logged_once_until_a_frame_arrives():
    s = make(ENV)
    drive(s, 2.0, 0.0, 4.0)
    outs = [at(s, 4.0 + 0.05 * i).ramp_down("no data", emergency=True).amplitude_mA for i in range(1, 11)]
    assert outs == sorted(outs, reverse=True) and outs[-1] < outs[0]  # every call moved the output down
    assert s.counts["watchdog"] == 1  # one trip, however many loop turns it lasted
    at(s, 4.6).step(want(2.0))  # a fresh frame ends it ...
    at(s, 5.0).ramp_down("no data", emergency=True)  # ... so this is a second trip
    for i in range(1, 6):
        at(s, 5.0 + 0.1 * i).ramp_down("session end")
    assert s.counts["watchdog"] == 2 and s.counts["stop"] == 1
    kinds = [(e.kind, e.reason) for e in s.log.events if e.kind in ("watchdog", "stop")]
    assert kinds == [("watchdog", "no data"), ("watchdog", "no data"), ("stop", "session end")]  # both trips


def test_a_final_ramp_at_the_emergency_rate_is_logged_as_a_stop_not_a_watchdog_trip():
    # a session that ends on a lost source: its last ramp goes at the emergency rate, and is the session's stop
    s = make(ENV)
    drive(s, 2.0, 0.0, 4.0)
    outs = [
        at(s, 4.0 + 0.05 * i).ramp_down("session end: source lost", emergency=True, kind="stop").amplitude_mA
        for i in range(1, 6)
    ]
    assert outs == pytest.approx([1.8, 1.6, 1.4, 1.2, 1.0])  # 4 mA/s: the emergency rate, as a watchdog ramp
    assert s.counts["stop"] == 1 and s.counts.get("watchdog", 0) == 0
    kinds = [(e.kind, e.reason) for e in s.log.events if e.kind in ("watchdog", "stop")]
    assert kinds == [("stop", "session end: source lost")]


def test_emergency_stop_latches_at_the_fastest_ramp():
    s = make(ENV)
    drive(s, 2.0, 0.0, 4.0)
    out = at(s, 4.1).emergency_stop("emergency button")
    assert out.amplitude_mA == pytest.approx(1.6) and s.state is StimState.RAMPING_DOWN and s.stopped
    assert at(s, 4.3).step(want(2.0)).amplitude_mA == pytest.approx(0.8)  # steps keep the emergency rate
    assert at(s, 4.6).step(want(2.0)).amplitude_mA == 0.0 and s.state is StimState.STOPPED
    assert s.stop_reason == "emergency button"


def test_stop_latches_at_the_normal_rate_and_can_be_upgraded():
    s = make(ENV)
    drive(s, 2.0, 0.0, 4.0)
    assert at(s, 5.0).stop("operator stop").amplitude_mA == pytest.approx(1.5)
    assert at(s, 5.1).emergency_stop("second Ctrl-C").amplitude_mA == pytest.approx(1.1)
    assert s.stop_reason == "operator stop"


def test_state_machine_arming_and_transitions():
    s = TESSafetyLayer(ENV, ManualClock(), auto_arm=False)
    assert drive(s, 1.0, 0.0, 1.0).amplitude_mA == 0.0 and s.state is StimState.IDLE
    at(s, 1.05).arm()
    assert s.state is StimState.ARMED
    assert drive(s, 1.0, 1.1, 1.5).amplitude_mA > 0 and s.state is StimState.STIMULATING
    drive(s, 0.0, 1.6, 3.0)
    assert s.state is StimState.ARMED
    at(s, 3.1).stop("done")
    assert s.state is StimState.STOPPED
    at(s, 3.2).arm()
    assert s.state is StimState.STOPPED  # arming does not undo a stop
    states = [e.reason.split(":")[0] for e in s.events if e.kind == "state"]
    assert states == ["idle → armed", "armed → stimulating", "stimulating → armed", "armed → stopped"]
    m = StateMachine()
    with pytest.raises(IllegalTransition):
        m.go(StimState.STIMULATING)


@pytest.mark.parametrize("method", ["step", "ramp_down", "stop", "emergency_stop"])
@pytest.mark.parametrize("bad", [5.0, math.nan, math.inf, -math.inf])
def test_a_clock_going_backwards_or_non_finite_is_an_error_never_ignored(method, bad):
    s = make(ENV)
    drive(s, 1.0, 0.0, 10.0)
    before = (s.t, s.amplitude_mA, s.charge_C)
    args = (want(2.0),) if method == "step" else ("test",)
    with pytest.raises(SafetyClockError, match="backwards|finite"):
        getattr(at(s, bad), method)(*args)
    assert (s.t, s.amplitude_mA, s.charge_C) == before  # the call changed nothing it could not account for


def test_the_layer_reads_its_own_clock_not_the_frame_time():
    """A controller's command carries a (source) time; the layer ignores it and integrates on its clock."""
    s = make(ENV)
    for i in range(11):  # 1 s on the layer's clock, with commands stamped an hour apart
        out = at(s, 0.1 * i).step(Command(2.0, 10.0, True, 3600.0 * i))
    assert out.amplitude_mA == pytest.approx(0.5)  # 1 s at 0.5 mA/s, not an hour
    assert s.t == pytest.approx(1.0) and s.charge_C == pytest.approx(0.25e-3)


def test_a_gap_longer_than_the_watchdog_is_reported():
    s = make(ENV)
    drive(s, 1.0, 0.0, 1.0)
    at(s, 2.0).step(want(1.0))
    assert s.gaps == 1 and any(e.kind == "gap" for e in s.events)


def test_concurrent_emergency_stop_from_another_thread():
    s = make(ENV)
    drive(s, 2.0, 0.0, 4.0)
    stopper = threading.Thread(target=s.emergency_stop, args=("watchdog thread",))
    stopper.start()
    stopper.join()
    out = drive(s, 2.0, 4.1, 5.0)
    assert out.amplitude_mA == 0.0 and s.state is StimState.STOPPED


@pytest.mark.parametrize(
    "profile,layer_type",
    [
        ("sim_tacs", TESSafetyLayer),
        ("sim_tdcs", TESSafetyLayer),
        ("sim_rtms", RTMSSafetyLayer),
        ("sim_tus", TUSSafetyLayer),
    ],
)
def test_build_safety_layer_picks_the_modality(tmp_path, repo, profile, layer_type):
    from closedloop.config import ResolvedPipeline
    from closedloop.config.profile import load_profile

    pipe = write_pipeline(tmp_path, repo, profile)
    if layer_type is TESSafetyLayer:
        resolved = load_pipeline(pipe)
        assert resolved.profile.device.name == profile
    else:  # the tES controller of the demo cannot drive this modality ...
        with pytest.raises(PipelineError, match="controller.kind"):
            load_pipeline(pipe)
        # ... but the layer is still chosen by the profile's modality
        tes = load_pipeline(repo / "pipelines" / "alpha_tacs.toml")
        resolved = ResolvedPipeline(
            config=tes.config.model_copy(update={"safety": type(tes.config.safety)()}),
            profile=load_profile(repo / "devices" / f"{profile}.toml"),
            path=str(pipe),
        )
    layer = build_safety_layer(resolved, ManualClock())
    assert type(layer) is layer_type and layer.env.watchdog_timeout_s == 0.3
    assert all(len(src) >= 10 for src in layer.env.sources.values())


def write_pipeline(tmp_path, repo, profile, extra=""):
    shutil.copytree(repo / "devices", tmp_path / "devices", dirs_exist_ok=True)
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    text = (
        (repo / "pipelines" / "alpha_tacs.toml").read_text().replace('profile = "sim_tacs"', f'profile = "{profile}"')
    )
    if profile != "sim_tacs":
        text = text.replace("max_amplitude_mA = 1.5\n", "")
    if profile == "sim_tdcs":
        text = text.replace("frequency_Hz = 10.0", "frequency_Hz = 0.0")
    p = tmp_path / "pipelines" / f"pipe_{profile}.toml"
    p.write_text(text + extra)
    return p


def test_rtms_envelope_comes_from_the_profile(repo):
    from closedloop.config.profile import load_profile
    from closedloop.safety import RTMSEnvelope

    prof = load_profile(repo / "devices" / "sim_rtms.toml")
    env = RTMSEnvelope.from_envelope({n: {"value": lim.value, "source": lim.source} for n, lim in prof.limits.items()})
    assert [(c.frequency_Hz, c.intensity_pct, c.max_train_s) for c in env.trains] == [(20.0, 110.0, 1.6)]
    assert "Chen et al. 1997" in env.trains[0].source
    assert env.min_inter_train_interval_s == 5.0 and prof.limits["max_intensity_pct"].unit == "%MT"


def test_overrides_only_tighten_max_down_and_min_up(repo):
    import tomllib

    from closedloop.config import PipelineConfig
    from closedloop.config.profile import load_profile
    from closedloop.config.validate import check_pipeline_limits

    raw = tomllib.loads((repo / "pipelines" / "alpha_tacs.toml").read_text())
    tacs, rtms = (load_profile(repo / "devices" / f"{n}.toml") for n in ("sim_tacs", "sim_rtms"))
    raw["safety"] = {"watchdog_timeout_s": 0.5}
    assert any(
        "safety.watchdog_timeout_s" in p and "only tighten" in p
        for p in check_pipeline_limits(PipelineConfig.model_validate(raw), tacs)
    )
    for iti, looser in ((3.0, True), (8.0, False)):
        raw["safety"] = {"min_inter_train_interval_s": iti}
        problems = check_pipeline_limits(PipelineConfig.model_validate(raw), rtms)
        assert any("safety.min_inter_train_interval_s" in p for p in problems) == looser
        assert any("controller.kind" in p and "needs a controller for rtms" in p for p in problems)


def test_controller_ramp_faster_than_the_device_is_named(tmp_path, repo):
    text = (repo / "pipelines" / "alpha_tacs_open.toml").read_text().replace("ramp_s = 10.0", "ramp_s = 2.0")
    shutil.copytree(repo / "devices", tmp_path / "devices")
    (tmp_path / "pipelines").mkdir()
    p = tmp_path / "pipelines" / "fast.toml"
    p.write_text(text)
    with pytest.raises(PipelineError, match=r"controller.ramp_s: 0.5 mA/s is faster than the allowed ramp rate 0.2"):
        load_pipeline(p)
