"""Dual-threshold controller on synthetic feature traces with known expected ramps."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from closedloop.config import DualThresholdConfig
from closedloop.control import DualThresholdController, build_controller
from closedloop.types import Frame, Quality

DT = 0.1


def cfg(**kw):
    base = dict(
        feature="x",
        lower=1.0,
        upper=2.0,
        amplitude_min_mA=0.2,
        amplitude_max_mA=1.2,
        ramp_up_mA_per_s=0.1,
        ramp_down_mA_per_s=0.4,
        frequency_Hz=0.0,
    )
    base.update(kw)
    return DualThresholdConfig(**base)


def run(config, trace, flags=None):
    ctl = build_controller(config)
    flags = flags or [Quality.OK] * len(trace)
    amps = np.array(
        [
            ctl.update(Frame(i * DT, np.array([x]), ("x",), fl)).amplitude_mA
            for i, (x, fl) in enumerate(zip(trace, flags))
        ]
    )
    return amps, ctl


def test_ramps_up_below_holds_between_and_ramps_down_above():
    trace = [0.5] * 101 + [1.5] * 50 + [2.5] * 50
    amps, ctl = run(cfg(), trace)
    t = np.arange(len(trace)) * DT
    # below `lower` from t=0: up at 0.1 mA/s from 0.2 mA (the direction set at frame 0 acts from frame 1)
    np.testing.assert_allclose(amps[:101], np.minimum(1.2, 0.2 + 0.1 * t[:101]), atol=1e-12)
    assert amps[100] == pytest.approx(1.2)
    # between: hold
    np.testing.assert_allclose(amps[101:151], amps[100], atol=1e-12)
    # above `upper`: down at 0.4 mA/s to 0.2 mA
    np.testing.assert_allclose(amps[151:], np.maximum(0.2, 1.2 - 0.4 * (t[151:] - t[151])), atol=1e-12)
    assert ctl.changes == 3 and ctl.state()["direction"] == -1.0


def test_direction_above_mirrors():
    amps, _ = run(cfg(direction="above"), [2.5] * 30 + [0.5] * 30)
    assert amps[29] == pytest.approx(0.2 + 0.1 * 2.9) and amps[-1] == pytest.approx(0.2)


def test_onset_ignores_short_excursions():
    trace = [1.5] * 5 + [0.5, 0.5] + [1.5] * 5 + [0.5] * 10
    amps, ctl = run(cfg(onset=3), trace)
    assert np.all(amps[:15] == 0.2)  # two frames below do not start a ramp; the third in a row does
    assert ctl.changes == 1 and amps[-1] == pytest.approx(0.2 + 0.1 * DT * (len(trace) - 15))


def test_blanking_holds_the_direction_after_a_change():
    trace = [0.5] * 3 + [2.5] * 40
    amps, ctl = run(cfg(blanking_s=2.0), trace)
    # up from frame 0; frames before t=2.0 are blanked, so the ramp continues up until then
    assert np.all(np.diff(amps[:21]) > 0) and np.argmax(amps) == 20 and amps[20] == pytest.approx(0.4)
    assert ctl.changes == 2


def test_bad_frames_hold_or_ramp_down():
    trace = [0.5] * 20
    flags = [Quality.OK] * 5 + [Quality.ARTIFACT] * 10 + [Quality.OK] * 5
    held, _ = run(cfg(), trace, flags)
    assert np.all(held[6:16] == held[5])  # frozen while frames are flagged
    dropped, _ = run(cfg(on_bad_frame="ramp_down", start_mA=1.0), trace, flags)
    assert np.all(np.diff(dropped[5:16]) < 0) and dropped[15] == pytest.approx(max(0.0, 1.0 + 0.5 * 0.1 - 1.0 * 0.4))
    assert dropped[19] > dropped[16]  # good frames: back up


def test_nan_feature_is_a_bad_frame():
    amps, ctl = run(cfg(), [0.5, np.nan, np.nan, 0.5])
    assert amps[2] == amps[1] and ctl.state()["bad"] == 0.0


def test_config_checks():
    with pytest.raises(ValidationError, match="lower"):
        cfg(lower=3.0)
    with pytest.raises(ValidationError, match="amplitude_min_mA"):
        cfg(amplitude_min_mA=2.0)
    assert cfg().ramp_rates_mA_per_s() == {"ramp_up_mA_per_s": 0.1, "ramp_down_mA_per_s": 0.4}
    assert cfg().peak_amplitude_mA() == 1.2


def test_state_keys_are_stable():
    ctl = DualThresholdController(cfg())
    keys = list(ctl.state())
    ctl.update(Frame(0.0, np.array([0.5]), ("x",)))
    assert list(ctl.state()) == keys
