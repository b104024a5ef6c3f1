"""Threshold controller on synthetic feature traces with known expected switching."""

from __future__ import annotations

import numpy as np

from closedloop.config import ThresholdConfig
from closedloop.control import ThresholdController
from closedloop.types import Frame, Quality


def run(cfg: ThresholdConfig, trace, flags=None, dt=0.1):
    ctl = ThresholdController(cfg)
    flags = flags or [Quality.OK] * len(trace)
    return [
        ctl.update(Frame(i * dt, np.array([x]), ("alpha",), fl)).on for i, (x, fl) in enumerate(zip(trace, flags))
    ], ctl


def cfg(**kw):
    base = dict(feature="alpha", lower=1.0, upper=2.0, amplitude_mA=1.0, frequency_Hz=10.0)
    base.update(kw)
    return ThresholdConfig(**base)


def test_hysteresis():
    trace = [1.5, 0.9, 1.5, 1.9, 2.1, 1.5, 0.5]
    on, _ = run(cfg(), trace)
    #          between  below→on  hold  hold  above→off  hold  below→on
    assert on == [False, True, True, True, False, False, True]


def test_onset_and_termination_counts():
    trace = [0.5, 1.5, 0.5, 0.5, 0.5, 2.5, 2.5, 1.5, 2.5, 2.5]
    on, _ = run(cfg(onset=3, termination=2), trace)
    # a run of 3 below switches on; the interrupted runs above do not switch off until two in a row
    assert on == [False, False, False, False, True, True, False, False, False, False]


def test_blanking_ignores_frames_after_a_switch():
    trace = [0.5, 2.5, 2.5, 2.5, 2.5, 2.5]
    on, ctl = run(cfg(blanking_s=0.25), trace, dt=0.1)
    # on at t=0; frames at 0.1 and 0.2 are blanked; off at t=0.3
    assert on == [True, True, True, False, False, False]
    assert ctl.switches == 2


def test_direction_above_and_amplitude():
    ctl = ThresholdController(cfg(direction="above", amplitude_mA=1.5))
    cmd = ctl.update(Frame(0.0, np.array([2.5]), ("alpha",)))
    assert cmd.on and cmd.amplitude_mA == 1.5 and cmd.frequency_Hz == 10.0
    assert not ctl.update(Frame(0.1, np.array([0.5]), ("alpha",))).on


def test_flagged_and_nan_frames_hold_state():
    trace = [0.5, 2.5, np.nan, 2.5]
    flags = [Quality.OK, Quality.ARTIFACT, Quality.OK, Quality.OK]
    on, _ = run(cfg(), trace, flags)
    assert on == [True, True, True, False]


def test_bad_frames_can_switch_stimulation_off():
    trace = [0.5, 1.5, 1.5, 1.5, 0.5]
    flags = [Quality.OK, Quality.ARTIFACT, Quality.OK, Quality.OK, Quality.OK]
    on, ctl = run(cfg(on_bad_frame="ramp_down"), trace, flags)
    # the artefact switches off (not counted as a switch); between the thresholds it stays off; below → on
    assert on == [True, False, False, False, True]
    assert ctl.switches == 2 and ctl.bad_frames == 1


def test_state_keys_are_stable_and_display_shows_the_state():
    ctl = ThresholdController(cfg())
    keys = list(ctl.state())
    ctl.update(Frame(0.0, np.array([0.5]), ("alpha",)))
    assert list(ctl.state()) == keys and ctl.display_state() == ctl.state()
