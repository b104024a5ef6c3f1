"""Thresholds and targets from a calibration block (percentiles, z-scores)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from closedloop.config import BaselineControllerConfig, PipelineError, load_pipeline
from closedloop.config.controllers import parse_spec
from closedloop.control import BaselineController
from closedloop.types import Frame, Quality

DT = 0.1
INNER = dict(
    kind="dual_threshold",
    feature="x",
    amplitude_max_mA=1.0,
    ramp_up_mA_per_s=0.1,
    ramp_down_mA_per_s=0.1,
    frequency_Hz=0.0,
)


def cfg(**kw):
    base = dict(duration_s=30.0, derive={"lower": "p25", "upper": "p75"}, inner=INNER)
    base.update(kw)
    return BaselineControllerConfig(**base)


def feed(ctl, values, flags=None, t0=0.0):
    flags = flags if flags is not None else [Quality.OK] * len(values)
    return [ctl.update(Frame(t0 + i * DT, np.array([v]), ("x",), f)) for i, (v, f) in enumerate(zip(values, flags))]


def test_percentile_thresholds_from_the_usable_baseline_frames():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 0.5, 400)
    flags = [Quality.ARTIFACT if i % 7 == 0 else Quality.OK for i in range(400)]
    values[::7] = 50.0  # artefact frames carry wild values: they must not count
    ctl = BaselineController(cfg())
    cmds = feed(ctl, values, flags)
    used = np.delete(values[:301], np.arange(0, 301, 7))  # frames up to t = 30 s, artefacts removed
    assert ctl.derived["lower"] == pytest.approx(np.percentile(used, 25))
    assert ctl.derived["upper"] == pytest.approx(np.percentile(used, 75))
    assert all(not c.on and c.amplitude_mA == 0.0 for c in cmds[:301])  # no stimulation while calibrating
    assert ctl.inner.config.lower == ctl.derived["lower"] and ctl.state()["calibrating"] == 0.0


def test_z_score_target_for_a_pi_controller():
    inner = dict(kind="pi", feature="x", kp=1.0, amplitude_max_mA=1.0, slew_mA_per_s=0.1, frequency_Hz=10.0)
    ctl = BaselineController(cfg(derive={"target": "z+1.5"}, inner=inner, duration_s=10.0))
    values = np.linspace(0.0, 1.0, 101)
    feed(ctl, values)
    assert ctl.derived["target"] == pytest.approx(values.mean() + 1.5 * values.std())
    assert ctl.inner.config.target == ctl.derived["target"]


def test_after_calibration_the_inner_controller_acts_on_the_derived_thresholds():
    ctl = BaselineController(cfg(duration_s=10.0))
    values = np.tile([1.0, 2.0, 3.0, 4.0], 26)
    feed(ctl, values)  # the block ends with the frame at t = 10 s (101 frames)
    assert ctl.derived["lower"] == pytest.approx(np.percentile(values[:101], 25))
    assert ctl.derived["upper"] == pytest.approx(np.percentile(values[:101], 75))
    cmds = feed(ctl, [0.5] * 30, t0=20.0)  # below the derived lower threshold: ramp up
    assert cmds[-1].amplitude_mA == pytest.approx(0.1 * 2.9) and cmds[-1].frequency_Hz == 0.0


def test_block_extends_until_enough_usable_frames():
    ctl = BaselineController(cfg(duration_s=1.0, min_frames=15))
    feed(ctl, [1.0] * 12 + [np.nan] * 10 + [2.0] * 2)
    assert ctl.state()["calibrating"] == 1.0 and ctl.state()["baseline_n"] == 14.0
    feed(ctl, [2.0], t0=3.0)
    assert ctl.state()["calibrating"] == 0.0


def test_invalid_derived_values_keep_stimulation_off():
    # valid on the stand-in baseline, invalid on skewed data: p10 = 0 is above mean - 1 SD = -20
    ctl = BaselineController(cfg(derive={"lower": "p10", "upper": "z-1"}, duration_s=3.9))
    cmds = feed(ctl, [0.0] * 36 + [100.0] * 4)
    assert ctl.state()["baseline_failed"] == 1.0 and "invalid" in ctl.failure
    assert all(not c.on for c in cmds) and not feed(ctl, [0.0] * 5, t0=10.0)[-1].on


def test_state_keys_are_stable():
    ctl = BaselineController(cfg(duration_s=1.0))
    keys = list(ctl.state())
    feed(ctl, np.linspace(0, 1, 30))
    assert list(ctl.state()) == keys and "inner_amplitude_mA" in keys and "baseline_lower" in keys


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("p25", ("percentile", 25.0)),
        ("p2.5", ("percentile", 2.5)),
        ("median", ("percentile", 50.0)),
        ("mean", ("z", 0.0)),
        ("z+1.5", ("z", 1.5)),
        ("z-0.5", ("z", -0.5)),
    ],
)
def test_specs(spec, parsed):
    assert parse_spec(spec) == parsed


def test_config_errors_name_the_key():
    with pytest.raises(ValidationError, match="derive.lower"):
        cfg(derive={"lower": "q25", "upper": "p75"})
    with pytest.raises(ValidationError, match="derive.lower.*p75|lower.*must be <= "):
        cfg(derive={"lower": "p75", "upper": "p25"})
    with pytest.raises(ValidationError, match="inner.ramp_up_mA_per_s"):
        cfg(inner={**INNER, "ramp_up_mA_per_s": "fast"})
    with pytest.raises(ValidationError, match="derive.amplitude_max_mA"):
        cfg(derive={"amplitude_max_mA": "p50"})
    with pytest.raises(ValidationError, match="inner.kind"):
        cfg(inner={**INNER, "kind": "baseline"})


def test_pipeline_checks_the_inner_feature(tmp_path, repo):
    import shutil

    shutil.copytree(repo / "devices", tmp_path / "devices")
    (tmp_path / "pipelines").mkdir()
    p = tmp_path / "pipelines" / "dual.toml"
    text = (repo / "pipelines" / "theta_alpha_tdcs_dual.toml").read_text()
    p.write_text(
        text.replace(
            '[controller.inner]\nkind = "dual_threshold"\nfeature = "theta_alpha"',
            '[controller.inner]\nkind = "dual_threshold"\nfeature = "gamma"',
        )
    )
    with pytest.raises(PipelineError, match="controller.inner.feature: 'gamma'"):
        load_pipeline(p)
