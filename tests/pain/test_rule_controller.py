"""Conditions over features (parsed, never evaluated as code) and the rule controller built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from closedloop.config import load_pipeline
from closedloop.config.conditions import parse_condition
from closedloop.config.controllers import RuleConfig
from closedloop.config.expressions import DIV, LOG10, POW, SQRT, _py_apply
from closedloop.config.load import PipelineError
from closedloop.control import RuleController, build_controller
from closedloop.types import Frame, Quality

NAMES = ("theta_frontal", "pain_index", "rating")


# --- conditions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("theta_frontal > 1.2 and pain_index > 5", [1.3, 6.0], True),
        ("theta_frontal > 1.2 and pain_index > 5", [1.3, 4.0], False),
        ("theta_frontal > 1.2 or pain_index > 5", [1.0, 6.0], True),
        ("not (theta_frontal > 1.2)", [1.0, 0.0], True),
        ("1 < theta_frontal <= 2", [2.0, 0.0], True),
        ("1 < theta_frontal <= 2", [2.5, 0.0], False),
        ("(theta_frontal - pain_index) / 2 >= -1", [1.0, 3.0], True),
        ("abs(theta_frontal - pain_index) < 0.5 and max(theta_frontal, pain_index) == 3", [2.75, 3.0], True),
        ("theta_frontal ** 2 < 4 and log10(pain_index) > 0.9", [1.5, 10.0], True),
    ],
)
def test_conditions_compute_as_python_would(text, values, expected):
    cond = parse_condition(text)
    assert cond.names == tuple(sorted((n for n in NAMES[:2] if n in text), key=text.index))  # first appearance
    assert cond.evaluate(values) is expected


def test_arithmetic_is_that_of_feature_expressions():
    # the same operations, with the same NaN where undefined (division by zero, log of a negative)
    for text, code, args in [
        ("a / b", DIV, (1.0, 0.0)),
        ("a ** b", POW, (-8.0, 0.5)),
        ("log10(a)", LOG10, (-1.0,)),
        ("sqrt(a)", SQRT, (2.0,)),
    ]:
        cond = parse_condition(f"{text} > 0 or {text} <= 0")
        expect = _py_apply(code, *args)
        assert cond.evaluate(list(args)) is (None if math.isnan(expect) else True)


def test_nan_makes_a_comparison_unknown_with_three_valued_logic():
    c = parse_condition("theta_frontal > 1 and pain_index > 5")
    assert c.evaluate([math.nan, 6.0]) is None
    assert c.evaluate([math.nan, 4.0]) is False  # false whatever the unknown part says
    c = parse_condition("theta_frontal > 1 or pain_index > 5")
    assert c.evaluate([math.nan, 6.0]) is True
    assert c.evaluate([math.nan, 4.0]) is None
    assert parse_condition("not (theta_frontal > 1)").evaluate([math.nan]) is None


@pytest.mark.parametrize(
    "text, words",
    [
        ("__import__('os').system('true') > 0", "not allowed at column 1"),
        ("theta_frontal.real > 1", "'theta_frontal.real' is not allowed"),
        ("open('x') > 1", "the call \"open('x')\" is not allowed"),
        ("theta_frontal", "is a number, not a condition"),
        ("theta_frontal > ", "does not parse at column"),
        ("theta_frontal > 'high'", "\"'high'\" is not a number"),
        ("theta_frontal > (pain_index > 1)", "is a condition where a number is needed at column 18"),
        ("theta_frontal if pain_index else rating", "is not allowed"),
        ("[x for x in y] > 1", "is not allowed"),
        ("lambda: 1", "is not allowed"),
        ("max(theta_frontal) > 1", "max() takes at least 2 argument(s)"),
        ("", "an empty condition"),
        ("x > 1 " + "and x > 1 " * 200, "at most 1000"),
    ],
)
def test_anything_but_the_grammar_is_refused_without_running_it(text, words):
    with pytest.raises(ValueError, match=None) as info:
        parse_condition(text)
    assert words in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


# --- the controller --------------------------------------------------------------------------------------------


def rule(**kw) -> RuleConfig:
    base = dict(
        kind="rule",
        on_when="theta_frontal > 1.2 and pain_index > 5",
        off_when="pain_index < 3",
        amplitude_mA=1.0,
        frequency_Hz=10.0,
    )
    base.update(kw)
    return RuleConfig(**base)


def run(cfg: RuleConfig, rows, flags=None, dt=0.1):
    ctl = build_controller(cfg)
    assert isinstance(ctl, RuleController)
    flags = flags or [Quality.OK] * len(rows)
    out = []
    for i, (row, fl) in enumerate(zip(rows, flags)):
        cmd = ctl.update(Frame(i * dt, np.array(row, dtype=float), NAMES, fl))
        out.append(cmd.on)
        assert cmd.amplitude_mA == (cfg.amplitude_mA if cmd.on else 0.0)
    return out, ctl


def test_hysteresis_between_the_on_and_the_off_condition():
    rows = [
        [1.3, 6, 0],  # on: both hold
        [1.0, 4, 0],  # on_when fails, but off needs pain_index < 3: stays on
        [1.0, 2, 0],  # off
        [1.3, 4, 0],  # on_when needs pain_index > 5: stays off
        [1.3, 5.5, 0],  # on again
    ]
    on, ctl = run(rule(), rows)
    assert on == [True, True, False, False, True]
    assert ctl.switches == 3


def test_onset_and_termination_count_consecutive_usable_frames():
    yes, no, off = [1.3, 6, 0], [1.0, 4, 0], [1.0, 2, 0]
    rows = [yes, yes, no, yes, yes, yes, off, off, yes, off, off, off]
    on, _ = run(rule(onset=3, termination=3), rows)
    # the first run of two is broken by `no`; three in a row switch on; the off runs need three in a row
    assert on == [False, False, False, False, False, True, True, True, True, True, True, False]


def test_without_off_when_stimulation_stops_when_on_when_fails():
    rows = [[1.3, 6, 0], [1.3, 6, 0], [1.3, 4, 0], [1.3, 4, 0]]
    on, _ = run(rule(off_when=None, termination=2), rows)
    assert on == [True, True, True, False]


def test_blanking_ignores_frames_after_each_switch():
    rows = [[1.3, 6, 0], [1.0, 2, 0], [1.0, 2, 0], [1.0, 2, 0]]
    on, _ = run(rule(blanking_s=0.15), rows, dt=0.1)
    # switched on at t=0: t=0.1 is blanked, t=0.2 switches off
    assert on == [True, True, False, False]


def test_flagged_frames_and_unknown_conditions_hold_or_ramp_down_and_reset_the_count():
    yes = [1.3, 6, 0]
    rows = [yes, yes, [1.3, math.nan, 0], yes, yes, yes]
    on, ctl = run(rule(onset=2), rows)
    # the NaN frame breaks the run of two: on only after two more
    assert on == [False, True, True, True, True, True]
    rows = [yes, [1.0, 4, 0], yes, [1.0, 4, 0]]
    flags = [Quality.OK, Quality.ARTIFACT, Quality.OK, Quality.GAP]
    on, ctl = run(rule(on_bad_frame="ramp_down"), rows, flags)
    assert on == [True, False, True, False]
    assert ctl.state()["bad_frames"] == 2
    on, _ = run(rule(on_bad_frame="hold"), rows, flags)
    assert on == [True, True, True, True]


def test_state_keys_never_change():
    ctl = RuleController(rule())
    keys = list(ctl.state())
    ctl.update(Frame(0.0, np.array([1.3, 6.0, 0.0]), NAMES))
    assert list(ctl.state()) == keys


# --- in a pipeline ---------------------------------------------------------------------------------------------

RULE_PIPELINE = """
[pipeline]
name = "rule"
[source]
kind = "synthetic"
n_channels = 16
sfreq = 250.0
[features]
rois = {{ frontal = ["F3", "Fz", "F4"], posterior = ["P3", "Pz", "P4"] }}
window_samples = 250
hop_samples = 25
bands = {{ theta = [4.0, 8.0], alpha = [8.0, 12.0] }}
ratios = {{}}
expressions = {{ ta = "theta_frontal / alpha_posterior" }}
[controller]
kind = "rule"
on_when = "{on}"
off_when = "{off}"
amplitude_mA = 1.0
frequency_Hz = 10.0
{ratings}
[device]
profile = "sim_tacs"
"""


def write(tmp_path, on, off, ratings=True):
    p = tmp_path / "rule.toml"
    p.write_text(
        RULE_PIPELINE.format(on=on, off=off, ratings='[ratings]\nstream = { name = "pain" }' if ratings else "")
    )
    return p


def test_a_rule_reads_features_expressions_and_ratings(tmp_path):
    resolved = load_pipeline(write(tmp_path, "theta_frontal > 1.2 and ta > 0.1 and rating >= 5", "rating < 3"))
    assert resolved.config.controller.features() == ["theta_frontal", "ta", "rating"]


def test_check_names_the_condition_and_the_unknown_feature(tmp_path):
    with pytest.raises(PipelineError) as info:
        load_pipeline(write(tmp_path, "theta_frontal > 1.2 and rating > 5", "gamma < 1", ratings=False))
    text = str(info.value)
    assert "controller.on_when: 'rating' is not a feature of this pipeline" in text
    assert "controller.off_when: 'gamma' is not a feature of this pipeline" in text
    with pytest.raises(PipelineError, match=r"controller.on_when: does not parse at column"):
        load_pipeline(write(tmp_path, "theta_frontal >", "ta < 1"))
