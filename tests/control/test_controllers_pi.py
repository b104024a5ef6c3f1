"""PI controller: settling on a first-order plant, anti-windup, frozen integrator, slew, quality flags."""

from __future__ import annotations

import numpy as np
import pytest

from closedloop.config import PIConfig
from closedloop.control import PIController
from closedloop.types import Frame, Quality

DT = 0.1


def cfg(**kw):
    base = dict(
        feature="alpha",
        target=1.6,
        kp=0.5,
        ki=0.2,
        amplitude_max_mA=2.0,
        slew_mA_per_s=0.5,
        frequency_Hz=10.0,
        update_interval_s=0.5,
    )
    base.update(kw)
    return PIConfig(**base)


class Plant:
    """First-order plant: y relaxes toward y0 + gain·a with time constant tau."""

    def __init__(self, y0=1.0, gain=0.5, tau=2.0):
        self.y0, self.gain, self.tau, self.y = y0, gain, tau, y0

    def step(self, a: float) -> float:
        self.y += DT / self.tau * (self.y0 + self.gain * a - self.y)
        return self.y


def simulate(ctl, plant, seconds, target=None, flags=lambda t: Quality.OK, t0=0.0):
    ys, amps = [], []
    y = plant.y
    for i in range(int(seconds / DT)):
        t = t0 + i * DT
        cmd = ctl.update(Frame(t, np.array([y]), ("alpha",), flags(t)))
        y = plant.step(cmd.amplitude_mA)
        ys.append(y)
        amps.append(cmd.amplitude_mA)
    return np.array(ys), np.array(amps)


def test_settles_on_the_target():
    ctl = PIController(cfg())
    ys, amps = simulate(ctl, Plant(), 120.0)
    assert abs(ys[-100:] - 1.6).max() < 0.01  # within 0.01 of the target over the last 10 s
    assert amps[-1] == pytest.approx((1.6 - 1.0) / 0.5, abs=0.03)  # the steady-state amplitude
    assert np.all(np.abs(np.diff(amps)) <= 0.5 * DT + 1e-12)  # slew limit
    assert ctl.state()["frozen"] == 0.0


def test_direction_lower_for_a_plant_that_falls():
    ctl = PIController(cfg(target=0.6, direction="lower"))
    ys, _ = simulate(ctl, Plant(gain=-0.5), 120.0)
    assert abs(ys[-50:] - 0.6).max() < 0.01


def test_anti_windup_bounds_the_integrator_and_recovers_fast():
    ctl = PIController(cfg(target=5.0))  # unreachable: output saturates at 2 mA
    plant = Plant()
    simulate(ctl, plant, 60.0)
    assert ctl.amplitude_mA == 2.0 and ctl.integral <= 2.0 and ctl.state()["frozen"] == 4.0
    ctl.config = cfg(target=1.6)  # reachable again
    ys, amps = simulate(ctl, plant, 40.0, t0=60.0)
    # without windup the output leaves saturation at once and settles
    assert amps[20] < 2.0 and abs(ys[-50:] - 1.6).max() < 0.02


def test_integrator_frozen_on_flagged_frames():
    ctl = PIController(cfg())
    plant = Plant()
    simulate(ctl, plant, 10.0)
    before = ctl.integral
    frame = Frame(10.0, np.array([50.0]), ("alpha",), Quality.ARTIFACT)  # a wild artefact value
    amp = ctl.amplitude_mA
    for k in range(20):
        frame.time = 10.0 + k * DT
        out = ctl.update(frame)
    assert ctl.integral == before and out.amplitude_mA == amp and ctl.state()["frozen"] == 1.0


def test_bad_frames_can_ramp_down():
    ctl = PIController(cfg(on_bad_frame="ramp_down"))
    simulate(ctl, Plant(), 30.0)
    a0 = ctl.amplitude_mA
    _, amps = simulate(ctl, Plant(), 1.0, flags=lambda t: Quality.SATURATION, t0=30.0)
    np.testing.assert_allclose(amps, np.maximum(0.0, a0 - 0.5 * DT * np.arange(1, 11)), atol=1e-12)


def test_integrator_frozen_while_ramping_and_during_blanking():
    ctl = PIController(cfg(slew_mA_per_s=0.05, blanking_s=3.0, ki=0.5))
    plant = Plant()
    frozen, integral = [], []
    y = plant.y
    for i in range(400):
        cmd = ctl.update(Frame(i * DT, np.array([y]), ("alpha",)))
        y = plant.step(cmd.amplitude_mA)
        frozen.append(ctl.state()["frozen"])
        integral.append(ctl.integral)
    frozen, integral = np.array(frozen), np.array(integral)
    assert np.any(frozen == 2.0) and np.any(frozen == 3.0)
    moved = np.flatnonzero(np.diff(integral) != 0) + 1
    assert not np.any(np.isin(frozen[moved], (2.0, 3.0)))  # never integrates while ramping or blanked


def test_updates_only_every_interval():
    ctl = PIController(cfg(update_interval_s=1.0, slew_mA_per_s=100.0))
    outs = [ctl.update(Frame(i * DT, np.array([1.0 + 0.01 * i]), ("alpha",))).amplitude_mA for i in range(35)]
    changes = np.flatnonzero(np.diff(outs)) + 1
    # the first output is reached one frame in (no time passes at the first frame), then one change a second
    np.testing.assert_allclose(np.array(changes) * DT, [0.1, 1.0, 2.0, 3.0])


def test_config_ranges():
    with pytest.raises(ValueError, match="bias_mA"):
        cfg(bias_mA=3.0)
    assert cfg().ramp_rates_mA_per_s() == {"slew_mA_per_s": 0.5}
