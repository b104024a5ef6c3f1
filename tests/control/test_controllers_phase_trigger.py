"""Phase trigger: fires where the phase predicted at the pulse hits the target; gating, spacing, delays, replay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from closedloop.config.controllers import RTMSPhaseTriggerConfig, TUSPhaseTriggerConfig
from closedloop.control import build_controller
from closedloop.control.phase_trigger import LiveDelay, PhaseTriggerController
from closedloop.session.clocks import ManualClock
from closedloop.types import Frame, Quality

NAMES = ("mu_phase", "mu_amp", "mu_freq", "mu_snr")
FS, HOP = 500.0, 1


def config(**kw) -> RTMSPhaseTriggerConfig:
    base = dict(
        kind="phase_trigger",
        modality="rtms",
        rhythm="mu",
        target="trough",
        min_amplitude_uV=5.0,
        min_interval_s=2.0,
        train={"frequency_Hz": 20.0, "intensity_pct": 100.0, "pulses": 1},
    )
    base.update(kw)
    return RTMSPhaseTriggerConfig(**base)


def frames(seconds: float, freq: float = 10.0, amp: float = 10.0, snr: float = 12.0, hop: int = HOP):
    """Frames of a perfect estimator of a cosine at ``freq``: the phase at each frame's newest sample."""
    for j in range(int(seconds * FS / hop)):
        t = j * hop / FS
        phase = math.atan2(math.sin(2 * math.pi * freq * t), math.cos(2 * math.pi * freq * t))
        yield Frame(t, np.array([phase, amp, freq, snr]), NAMES, index=j)


def fires(ctl: PhaseTriggerController, stream) -> list:
    out = []
    for f in stream:
        cmd = ctl.update(f)
        if cmd.fire:
            out.append((f, cmd))
    return out


def true_phase_deg(t: float, freq: float = 10.0) -> float:
    return math.degrees(2 * math.pi * freq * t) % 360.0


def angle_diff(a: float, b: float) -> float:
    return (a - b + 180.0) % 360.0 - 180.0


@pytest.mark.parametrize("delay_s", [0.0, 0.013, 0.047])
@pytest.mark.parametrize("target, deg", [("trough", 180.0), ("peak", 0.0), ("rising", 270.0), (45.0, 45.0)])
def test_the_pulse_lands_on_the_target_phase_whatever_the_delay(target, deg, delay_s):
    ctl = build_controller(config(target=target, delay_s=delay_s, min_interval_s=0.35))
    got = fires(ctl, frames(5.0))
    assert len(got) >= 10
    half_step = 360.0 * 10.0 * HOP / FS / 2  # the frame grid: 7.2° per frame at 10 Hz and 500 Hz
    for frame, cmd in got:
        pulse = frame.time + delay_s
        assert cmd.extra["note_pulse_time"] == pytest.approx(pulse)
        assert abs(angle_diff(true_phase_deg(pulse), deg)) <= half_step + 1e-6
        assert abs(angle_diff(cmd.extra["note_predicted_phase_deg"], deg)) <= half_step + 1e-6
        assert cmd.extra["note_target_phase_deg"] == deg % 360.0
        assert cmd.extra["pulses"] == 1.0 and cmd.frequency_Hz == 20.0 and cmd.on
    gaps = np.diff([f.time for f, _ in got])
    assert np.all(gaps >= 0.35 - 1e-9)


def test_no_pulse_without_a_present_rhythm():
    assert fires(build_controller(config()), frames(3.0, amp=4.9)) == []
    assert len(fires(build_controller(config()), frames(3.0, amp=5.0))) == 2  # at 0 and after min_interval_s
    assert fires(build_controller(config(min_snr_db=13.0)), frames(3.0, snr=12.0)) == []
    assert fires(build_controller(config(min_snr_db=11.0)), frames(3.0, snr=12.0)) != []


def test_spacing_min_interval_refractory_and_cap():
    # a 0.5-s train (10 pulses at 20 Hz); min_interval 1 s onset to onset, refractory 1.2 s after its end
    ctl = build_controller(
        config(min_interval_s=1.0, refractory_s=1.2, train={"frequency_Hz": 20.0, "intensity_pct": 100.0, "pulses": 10})
    )
    onsets = [f.time for f, _ in fires(ctl, frames(10.0))]
    assert np.all(np.diff(onsets) >= 0.5 + 1.2 - 1e-9)  # refractory counted from the end of each train
    ctl = build_controller(config(min_interval_s=1.0, max_count=3))
    assert len(fires(ctl, frames(10.0))) == 3 and ctl.fires == 3


def test_bad_or_late_frames_never_fire():
    flagged = (Frame(f.time, f.values, NAMES, Quality.ARTIFACT, f.index) for f in frames(3.0))
    ctl = build_controller(config())
    assert fires(ctl, flagged) == [] and ctl.bad_frames == int(3.0 * FS)
    nan_phase = (Frame(f.time, np.array([np.nan, *f.values[1:]]), NAMES, index=f.index) for f in frames(3.0))
    assert fires(build_controller(config()), nan_phase) == []
    # a pulse further ahead than max_horizon_s is not trusted
    assert fires(build_controller(config(delay_s=0.12)), frames(3.0)) == []
    assert fires(build_controller(config(delay_s=0.12, max_horizon_s=0.2)), frames(3.0)) != []


def test_a_phase_jump_past_the_target_fires_only_within_tolerance():
    def jump(to_deg: float):
        ctl = build_controller(config(tolerance_deg=30.0))
        seq = [150.0, 160.0, 170.0, to_deg]  # 2 ms apart: approaching the trough, then a jump past it
        return [
            ctl.update(Frame(0.002 * i, np.array([math.radians(d), 10.0, 10.0, 12.0]), NAMES, index=i)).fire
            for i, d in enumerate(seq)
        ]

    assert jump(205.0) == [False, False, False, True]  # 25° past: within tolerance
    assert jump(215.0) == [False, False, False, False]  # 35° past: a new approach must come


def test_tus_phase_trigger_keeps_its_sonication_on_for_its_duration():
    cfg = TUSPhaseTriggerConfig(
        kind="phase_trigger",
        modality="tus",
        rhythm="mu",
        target="peak",
        min_amplitude_uV=1.0,
        min_interval_s=2.0,
        sonication={
            "pnp_MPa": 0.5,
            "center_frequency_MHz": 0.5,
            "isppa_W_per_cm2": 5.0,
            "duty_cycle": 0.1,
            "prf_Hz": 100.0,
            "burst_s": 0.001,
            "duration_s": 0.3,
        },
    )
    ctl = build_controller(cfg)
    cmds = [ctl.update(f) for f in frames(1.0)]
    first = next(i for i, c in enumerate(cmds) if c.fire)
    on = [c.on for c in cmds[first : first + int(0.3 * FS) + 2]]
    assert all(on[: int(0.3 * FS)]) and not on[-1]
    assert cmds[first].extra["pnp_MPa"] == 0.5 and cmds[first].frequency_Hz == 100.0


def test_live_delay_is_the_data_age_now_plus_the_adapter_latency_plus_the_fixed_delay():
    clock = ManualClock(100.0)

    class Adapter:
        output_latency_s = 0.004

    ctl = build_controller(config(delay_s=0.002))
    ctl.use_live_timing(clock, lambda t: t + 0.5, Adapter())  # the source's clock runs 0.5 s behind ours
    frame = Frame(99.49, np.array([0.0, 10.0, 10.0, 12.0]), NAMES)
    clock.t = 100.0  # the frame's newest sample is 10 ms old now
    ctl.update(frame)
    assert ctl.state()["delay_s"] == pytest.approx(0.010 + 0.004 + 0.002)
    assert LiveDelay(clock, lambda t: t, None)(Frame(99.99, frame.values, NAMES)) == pytest.approx(0.01)


def test_recorded_delays_reproduce_the_live_decisions():
    rng = np.random.default_rng(0)
    clock = ManualClock(0.0)
    live = build_controller(config(min_interval_s=0.35))
    live.use_live_timing(clock, lambda t: t)
    states, live_fires = [], []
    for f in frames(5.0):
        clock.t = f.time + rng.uniform(0.001, 0.03)  # a jittery loop
        if live.update(f).fire:
            live_fires.append(f.index)
        states.append(live.state())
    replayed = build_controller(config(min_interval_s=0.35))
    replayed.use_recorded_inputs({"delay_s": np.array([s["delay_s"] for s in states])})
    again = [f.index for f in frames(5.0) if replayed.update(f).fire]
    assert again == live_fires and len(live_fires) >= 10
    # without the recorded delays (the configured 0 s) the decisions differ: the delay matters
    assert [f.index for f in frames(5.0) if build_controller(config(min_interval_s=0.35)).update(f).fire] != live_fires


def test_config_names_the_features_and_checks_its_keys():
    cfg = config(channel="C3", min_snr_db=3.0)
    assert cfg.features() == ["mu_phase_C3", "mu_amp_C3", "mu_freq_C3", "mu_snr_C3"]
    assert cfg.feature_keys() == {"rhythm": "mu_phase_C3"}
    assert config(target=-90.0).target_deg == 270.0
    with pytest.raises(ValueError, match="min_interval_s: 0.2 must exceed `sonication.duration_s`"):
        TUSPhaseTriggerConfig(
            kind="phase_trigger",
            modality="tus",
            rhythm="mu",
            target="peak",
            min_amplitude_uV=1.0,
            min_interval_s=0.2,
            sonication={
                "pnp_MPa": 0.5,
                "center_frequency_MHz": 0.5,
                "isppa_W_per_cm2": 5.0,
                "duty_cycle": 0.1,
                "prf_Hz": 100.0,
                "burst_s": 0.001,
                "duration_s": 0.3,
            },
        )


# -- through the pipeline, the safety layer and the simulated stimulator --------------------------


def run_phase_session(seconds: float, overrides: dict, interval_s: float | None = None):
    """Synthetic EEG through the phase pipeline into the simulated rTMS stimulator, on the sample clock.

    ``interval_s`` replaces the controller's min_interval_s after validation (a trigger asking too often).
    """
    from conftest import REPO

    from closedloop.adapters.simulated import SimulatedRTMS
    from closedloop.config import load_pipeline
    from closedloop.pipeline import Pipeline
    from closedloop.session.clocks import SampleClock
    from closedloop.session.driver import SessionDriver
    from closedloop.synthetic.eeg import SyntheticEEG
    from closedloop.types import Chunk

    resolved = load_pipeline(REPO / "pipelines" / "phase_alpha_rtms_sim.toml", overrides)
    cfg = resolved.config
    gen = SyntheticEEG(n_channels=32, sfreq=cfg.sfreq, seed=11, alpha_uV=12.0)
    clock = SampleClock(cfg.sfreq, cfg.features.window_samples, cfg.features.hop_samples)
    pipe = Pipeline(resolved, gen.ch_names, clock=clock)
    if interval_s is not None:
        pipe.controller = PhaseTriggerController(cfg.controller.model_copy(update={"min_interval_s": interval_s}))
    device = SimulatedRTMS(resolved.profile, clock=clock)
    driver = SessionDriver(pipe, device, clock, lambda t: t)
    device.connect()
    device.arm()
    n = int(0.1 * cfg.sfreq)
    for j in range(int(seconds * cfg.sfreq) // n):
        data = gen.generate(n).astype(float)
        stamps = (j * n + np.arange(n)) / cfg.sfreq
        driver.feed(Chunk(data, stamps), data, stamps)
        if driver.stop_reason() is not None:
            break
    return driver, device, pipe


def test_the_stimulator_never_delivers_more_than_the_safety_layer_allows():
    # the session's pulse cap tightened to 4: the 5th fire is refused and the session stops
    driver, device, pipe = run_phase_session(60.0, {"safety.max_pulses_per_session": 4})
    assert len(device.trains) == 4 and device.pulses_delivered(1e9) == 4
    assert "pulse cap" in (driver.stop_reason() or "")
    assert driver.stats.adapter_refusals == 0  # the layer refused; nothing out of profile reached the device
    times = np.array([t for t, *_ in device.trains])
    assert np.all(np.diff(times) >= 5.0)  # the profile's minimum inter-train interval
    assert all(i <= 110.0 and n == 1 for _t, i, _f, n in device.trains)


def test_a_trigger_asking_too_often_is_held_to_the_inter_train_interval_by_the_layer():
    driver, device, pipe = run_phase_session(40.0, {}, interval_s=0.3)
    ctl = pipe.controller
    assert ctl.fires > len(device.trains) >= 5  # it asked far more often than the layer allowed
    times = np.array([t for t, *_ in device.trains])
    assert np.all(np.diff(times) >= 5.0)
    refusals = [e for e in pipe.safety.events if e.kind == "refuse"]
    assert len(refusals) == ctl.fires - len(device.trains)
    assert all("inter-train interval" in e.reason for e in refusals)
    assert driver.stats.adapter_refusals == 0


def test_frames_arriving_in_chunks_fire_on_the_chunk_whose_moment_is_nearest_the_target():
    """Live, a chunk's frames are computed together and all predict for the moment it is processed."""
    clock = ManualClock(0.0)
    chunk = 10  # samples: 20 ms at 500 Hz, a chance to fire every 20 ms (72° at 10 Hz)
    ctl = build_controller(config(min_interval_s=0.35))
    ctl.use_live_timing(clock, lambda t: t)
    errors = []
    all_frames = list(frames(20.0, freq=10.3))  # not a multiple of the chunk rate: the grid drifts
    for a in range(0, len(all_frames), chunk):
        batch = all_frames[a : a + chunk]
        clock.t = batch[-1].time + 0.0005  # processed 0.5 ms after the chunk's newest sample
        for f in batch:
            if ctl.update(f).fire:
                errors.append(angle_diff(true_phase_deg(clock.t, freq=10.3), 180.0))
    errors = np.array(errors)
    assert len(errors) >= 40
    assert np.all(np.abs(errors) <= 37.1 + 1e-6)  # within half the 74° between two chances
    assert abs(np.mean(errors)) < 8.0  # and centred on the target, not late
    assert ctl._gap == pytest.approx(0.02, rel=0.01)
