"""The fitted plant: its model, its identification in closed loop, and closed-loop replay through it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pain_helpers import generator, load, write_pipeline
from scipy.signal import lfilter

from closedloop.offline.identify import IdentifyError, PlantData, fit_plant, identify
from closedloop.offline.metrics import Trace
from closedloop.offline.replay import replay
from closedloop.offline.sweep import sweep
from closedloop.pain.plant import (
    ASSUMPTIONS,
    Measurement,
    PlantFile,
    PlantSimulator,
    measurement_for,
    read_plant,
    simulate,
)
from closedloop.recording.reader import XDFReader
from closedloop.synthetic.session import simulate_session

# --- the model ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["additive", "amplitude"])
@pytest.mark.parametrize("delay", [0, 3, 41])
def test_frame_by_frame_and_vectorised_models_agree(tmp_path, response, delay):
    meas = measurement_for(load(write_pipeline(tmp_path)).config.features, 250.0, "alpha_post", 0.025)
    rng = np.random.default_rng(delay)
    u = np.clip(np.cumsum(rng.normal(0, 0.2, 1500)), 0, 2)
    whole = simulate(u, 0.7, 1.5, delay, response, meas)
    sim = PlantSimulator(0.7, 1.5, delay, response, meas)
    one_by_one = []
    for x in u:
        one_by_one.append(sim.frame())
        sim.input(x)
    assert np.allclose(whole, one_by_one, rtol=0, atol=1e-12)


def test_a_step_follows_first_order_plus_dead_time():
    meas = Measurement(0.1, 4, np.ones(1), 1.0, False)  # no window, no smoothing: the response itself
    u = np.ones(200)  # 1 mA from frame 0
    gain, tau, delay_steps = 0.6, 2.0, 10  # 10 grid steps of 25 ms = 0.25 s
    t = np.arange(200) * 0.1
    expected = np.where(t >= 0.25, gain * (1 - np.exp(-(t - 0.25) / tau)), 0.0)
    assert np.allclose(simulate(u, gain, tau, delay_steps, "additive", meas), expected, atol=1e-12)
    amp = simulate(u, gain, tau, delay_steps, "amplitude", Measurement(0.1, 4, np.ones(1), 1.0, True))
    assert np.allclose(amp, 2 * np.log10(1 + expected), atol=1e-12)  # amplitude x (1 + x): power x (1 + x)^2


def test_the_measurement_is_the_pipelines_window_and_smoothing(tmp_path):
    resolved = load(write_pipeline(tmp_path, smoothing=1.0))
    f = resolved.config.features
    meas = measurement_for(f, 250.0, "alpha_post", 0.025)
    assert (meas.m, meas.hop_s, len(meas.weights)) == (4, 0.1, 40)  # 1-s window on a 25-ms grid
    assert meas.weights.sum() == pytest.approx(1.0)
    # Hann² of the periodogram: symmetric, small at the edges, centred on the middle of the window
    w = meas.weights
    assert np.allclose(w, w[::-1], atol=0.01) and w[0] < 0.01 * w.max()
    assert np.dot(w, np.arange(40)) == pytest.approx(19.5, abs=0.2)
    assert meas.ema_alpha == pytest.approx(1 - math.exp(-25 / 250.0))
    iir = measurement_for(f.model_copy(update={"method": "iir"}), 250.0, "alpha_post", 0.025)
    assert np.allclose(iir.weights, 1 / 40)
    assert measurement_for(f, 250.0, "pain_index").weights.tolist() == [1.0]


# --- identification in closed loop -----------------------------------------------------------------------------


def _closed_loop(gain=0.5, tau=3.0, delay=0.4, n=6000, seed=0):
    """A feature with a known FOPDT response, under a threshold controller that reacts to its noise."""
    meas = Measurement(0.1, 4, np.full(40, 1 / 40), 0.1, False)
    rng = np.random.default_rng(seed)
    # slow noise (AR(1), 5-s memory) plus fast noise: what the controller reacts to
    noise = lfilter([1.0], [1.0, -0.98], rng.normal(0, 0.008, n)) + rng.normal(0, 0.01, n)
    sim = PlantSimulator(gain, tau, round(delay / meas.step_s), "additive", meas)
    y, u = np.empty(n), np.empty(n)
    amp, on = 0.0, False
    for k in range(n):
        y[k] = noise[k] + sim.frame()
        if not on and y[k] < -0.03:
            on = True
        elif on and y[k] > 0.12:
            on = False
        amp = min(1.0, amp + 0.02) if on else max(0.0, amp - 0.02)  # ramps of 0.2 mA/s
        u[k] = amp
        sim.input(amp)
    return PlantData("simulated", y, u, meas)


def test_closed_loop_identification_needs_the_noise_model():
    data = _closed_loop()
    assert 0.2 < (data.u > 0).mean() < 0.8  # stimulation really follows the noise
    fit = fit_plant([data], "additive", max_delay_s=1.5)
    assert fit.gain == pytest.approx(0.5, rel=0.1)
    assert fit.tau_s == pytest.approx(3.0, rel=0.1)
    assert fit.delay_s == pytest.approx(0.4, abs=0.2)
    assert fit.gain_ci[0] < 0.5 < fit.gain_ci[1] and fit.tau_ci[0] < 3.0 < fit.tau_ci[1]
    # plain least squares (no noise model) attributes the low noise that triggered stimulation to it:
    # a gain 15-20 % low, "confidently" (its interval excludes the truth)
    ols = fit_plant([data], "additive", max_delay_s=1.5, noise_order=0)
    assert ols.gain < 0.5 * 0.9 and ols.gain_ci[1] < 0.5


def test_identification_refuses_sessions_without_stimulation(tmp_path):
    data = _closed_loop(n=600)
    data.u[:] = 0.0
    with pytest.raises(IdentifyError, match="no stimulation"):
        fit_plant([data], "additive")
    data.u[5] = 1.0
    with pytest.raises(IdentifyError, match="needs a feature in log10 power"):
        fit_plant([data], "amplitude")


# --- a planted plant on synthetic EEG ------------------------------------------------------------------------

GAIN, TAU = 0.8, 2.0
QUIET = dict(background_uV=1.0, envelope_sd=0.1, pain_sd=0.05)  # EEG noise low enough for 10 % in 20 min


@pytest.fixture(scope="module")
def closed_loop_sessions(tmp_path_factory):
    """Two 10-min closed-loop sessions on the synthetic plant (alpha x (1 + x), x -> 0.8/mA, tau 2 s)."""
    folder = tmp_path_factory.mktemp("plant")
    a = load(write_pipeline(folder, "a.toml", gain=GAIN, tau=TAU, lower=1.25, upper=1.45))
    files = []
    for seed in (21, 22):
        sim = simulate_session(a, 600.0, folder / f"s{seed}", generator=generator(seed, GAIN, TAU, **QUIET))
        assert 0.2 < (sim.trace.allowed_amplitude_mA > 0).mean() < 0.9
        files.append(folder / f"s{seed}" / "session.xdf")
    return folder, a, files


@pytest.mark.slow
def test_a_planted_plant_is_recovered_from_closed_loop_sessions(closed_loop_sessions, tmp_path):
    folder, a, files = closed_loop_sessions
    plant = identify(files, response="amplitude")
    assert plant.feature == "alpha_post"
    assert plant.gain == pytest.approx(GAIN, rel=0.1), plant
    assert plant.tau_s == pytest.approx(TAU, rel=0.1), plant
    lo, hi = plant.uncertainty["tau_s_ci95"]
    assert lo < TAU < hi
    assert plant.delay_s < 0.5  # the generator responds at once; the loop adds at most a chunk
    assert [s["sha256"] for s in plant.fit["sessions"]] and plant.assumptions == list(ASSUMPTIONS)
    path = tmp_path / "plant.json"
    path.write_text(plant.model_dump_json())
    assert read_plant(path) == plant


@pytest.mark.slow
def test_replay_through_the_plant_predicts_another_controllers_closed_loop(closed_loop_sessions, tmp_path):
    folder, a, files = closed_loop_sessions
    plant = identify(files[:1], response="amplitude")
    (tmp_path / "plant.json").write_text(plant.model_dump_json())
    # the same pipeline through any plant reproduces the session: the overlay cancels while commands agree
    same = replay(files[0], a, keep="trace", plant=tmp_path / "plant.json")
    rec = Trace.from_xdf(files[0])
    assert np.array_equal(same.trace.allowed_amplitude_mA, rec.allowed_amplitude_mA)
    assert np.array_equal(same.trace.feature("alpha_post"), rec.feature("alpha_post"), equal_nan=True)
    # another controller: what it would have done on the same brain (same seed) ...
    b = load(write_pipeline(folder, "b.toml", gain=GAIN, tau=TAU, lower=1.4, upper=1.6))
    truth = simulate_session(b, 600.0, None, generator=generator(21, GAIN, TAU, **QUIET)).trace
    # ... is what the replay through the plant says it would do; without the plant it is far off
    through = replay(files[0], b, tmp_path / "r", keep="trace", plant=tmp_path / "plant.json").trace
    blind = replay(files[0], b, keep="trace").trace
    duty = {k: float((t.allowed_amplitude_mA > 0).mean()) for k, t in (("truth", truth), ("plant", through))}
    duty["blind"] = float((blind.allowed_amplitude_mA > 0).mean())
    assert abs(duty["plant"] - duty["truth"]) < 0.03, duty
    assert abs(duty["blind"] - duty["truth"]) > 0.08, duty
    assert through.allowed_amplitude_mA.mean() == pytest.approx(truth.allowed_amplitude_mA.mean(), rel=0.05)
    alpha = {k: float(np.nanmean(t.feature("alpha_post"))) for k, t in (("truth", truth), ("plant", through))}
    alpha["blind"] = float(np.nanmean(blind.feature("alpha_post")))
    assert abs(alpha["plant"] - alpha["truth"]) < 0.02 and abs(alpha["blind"] - alpha["truth"]) > 0.05, alpha
    # frame by frame until the first switching decision differs (then the two loops part ways, as two
    # sessions would), the replay follows the true alpha ten times more closely than a blind replay
    differ = np.flatnonzero(through.desired_on != truth.desired_on)
    first = slice(0, int(differ[0]) if differ.size else len(truth))
    assert first.stop > 100  # several switches agree first
    err = np.nanmean(np.abs(through.feature("alpha_post")[first] - truth.feature("alpha_post")[first]))
    assert err < 0.1 * np.nanmean(np.abs(blind.feature("alpha_post")[first] - truth.feature("alpha_post")[first]))
    # the replay says what it assumed: file header, summary, report
    reader = XDFReader(tmp_path / "r" / "session.xdf")
    assert json.loads(reader.file_header.findtext("plant_json"))["gain"] == plant.gain
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["plant"]["assumptions"] == list(ASSUMPTIONS) and summary["plant"]["recorded_stimulation_removed"]
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Modelled plant" in page and "superposition" in page


@pytest.mark.slow
def test_sweep_through_the_plant(closed_loop_sessions, tmp_path):
    folder, a, files = closed_loop_sessions
    plant = PlantFile(feature="alpha_post", response="amplitude", gain=GAIN, tau_s=TAU, delay_s=0.0)
    (tmp_path / "plant.json").write_text(plant.model_dump_json())
    grid = {"controller.lower": [1.25, 1.4], "controller.upper": [1.6]}
    rows = sweep(files[:1], folder / "a.toml", grid, workers=1, plant=tmp_path / "plant.json")
    blind = sweep(files[:1], folder / "a.toml", grid, workers=1)
    assert all(not r["error"] for r in rows + blind)
    # more stimulation with the higher threshold, and less than a blind replay (the plant raises alpha)
    assert rows[1]["duty_cycle"] > rows[0]["duty_cycle"]
    assert all(r["duty_cycle"] < b["duty_cycle"] for r, b in zip(rows, blind))


def test_a_plant_must_fit_the_replay(closed_loop_sessions, tmp_path):
    folder, a, files = closed_loop_sessions
    wrong = PlantFile(feature="beta", response="additive", gain=1.0, tau_s=1.0, delay_s=0.0)
    (tmp_path / "p.json").write_text(wrong.model_dump_json())
    with pytest.raises(ValueError, match="the plant models 'beta', which this pipeline does not compute"):
        replay(files[0], a, keep="none", plant=tmp_path / "p.json")
    (tmp_path / "q.json").write_text('{"format": "closedloop.plant/1", "feature": "alpha_post"}')
    with pytest.raises(ValueError, match=r"plant file .*q.json: response: required key is missing"):
        read_plant(tmp_path / "q.json")
    (tmp_path / "model.json").write_text('{"format": "closedloop.pain_model/1"}')
    with pytest.raises(ValueError, match="model.json is not a plant file"):
        read_plant(tmp_path / "model.json")
    with pytest.raises(ValueError, match="session.xdf cannot be read"):
        read_plant(files[0])
