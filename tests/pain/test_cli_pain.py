"""The pain-modelling commands end to end: calibrate, identify, replay --plant (the rate prompt: integration)."""

from __future__ import annotations

import json

import pytest
from pain_helpers import HOP_S, generator, load, write_pipeline

from closedloop.cli import main
from closedloop.config.painmodel import read_pain_model
from closedloop.pain.plant import read_plant
from closedloop.pain.rate import parse_line
from closedloop.synthetic.session import RatingPlan, simulate_session


def rate(t, feature_at, gen, rng):
    return 5.0 - 3.0 * (feature_at("alpha_post", t - 1.0 + HOP_S / 2) - 1.3) + rng.normal(0.0, 0.5)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A 5-min closed-loop session with ratings every 2 s."""
    folder = tmp_path_factory.mktemp("cli")
    path = write_pipeline(folder, lower=1.25, upper=1.45)
    plan = RatingPlan(every_s=2.0, rate=rate, start_s=3.0)
    sim = simulate_session(
        load(path), 300.0, folder / "s", generator=generator(31, background_uV=1.0, envelope_sd=0.1), ratings=plan
    )
    assert (sim.trace.allowed_amplitude_mA > 0).any()
    return folder, path


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_calibrate_prints_the_score_with_its_interval_and_writes_the_model(capsys, session):
    folder, path = session
    model = folder / "model.json"
    code, out, err = run(
        capsys, "calibrate", folder / "s" / "session.xdf", "-p", path, "--lag", "1.0", "--bootstrap", "200",
        "--features", "alpha_post,theta_front", "--out", model,
    )  # fmt: skip
    assert code == 0, err
    assert "cross-validated R2 = " in out and "95 % CI" in out and "blocked folds" in out
    assert "alpha_post" in out and "theta_front" in out
    assert f'[features.pain_index] model = "{model}"' in err
    m = read_pain_model(model)
    assert [t.feature for t in m.terms] == ["alpha_post", "theta_front"] and m.training["cv"]["value"] > 0.3


def test_identify_then_replay_through_the_plant(capsys, session, tmp_path):
    folder, path = session
    plant = tmp_path / "plant.json"
    code, out, err = run(capsys, "identify", folder / "s" / "session.xdf", "--response", "amplitude", "--out", plant)
    assert code == 0, err
    assert "plant of alpha_post (amplitude)" in out and "95 % CI" in out
    fitted = read_plant(plant)
    assert 0.4 < fitted.gain < 1.2 and 0.5 < fitted.tau_s < 6.0  # a 5-min session: rough, but the right plant
    other = write_pipeline(tmp_path, "other.toml", lower=1.4, upper=1.6)
    code, out, err = run(
        capsys, "replay", folder / "s" / "session.xdf", "-p", other, "--plant", plant, "--out", tmp_path / "r", "-q"
    )
    assert code == 0, err
    assert "closed loop through the plant" in err and "assumptions in report.html" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["plant"]["gain"] == fitted.gain


def test_the_rate_prompt_reads_numbers_on_the_scale():
    assert parse_line("7\n", (0.0, 10.0)) == 7.0
    assert parse_line(" 6.5 ", (0.0, 10.0)) == 6.5
    assert parse_line("\n", (0.0, 10.0)) is None
    assert parse_line("q", (0.0, 10.0)) == "quit"
    with pytest.raises(ValueError, match="'11' is off the scale: type a number from 0 to 10"):
        parse_line("11", (0.0, 10.0))
    with pytest.raises(ValueError, match="'ouch' is not a rating"):
        parse_line("ouch", (0.0, 10.0))
    assert parse_line("55", (0.0, 100.0)) == 55.0
    with pytest.raises(ValueError, match="'nan' is off the scale"):
        parse_line("nan", (0.0, 10.0))
