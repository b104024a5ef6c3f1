"""Planted truth, recovered: calibration (feature → rating) and plant identification (stimulation → feature).

Everything runs on the synthetic generator in closed loop, offline
(:func:`closedloop.synthetic.session.simulate_session`), through the same
pipeline, recording and replay code a live session uses, and is read back
from the ``session.xdf`` files it wrote. Reported, per seed:

- calibration: a rating planted as ``5 + 3 (theta_front - 0.9) - 2 (alpha_post - 1.3) + N(0, 0.75)``
  from the features one second before, every 2 s for 15 min; the R² of the
  planted predictor on those ratings (the truth) against the cross-validated R²
  of ``closedloop calibrate`` (ridge, lag 1 s, blocked folds) with its 95 %
  block-bootstrap interval, the recovered weights per feature unit, and the
  AUC of the logistic model for ``rating >= median`` against the planted
  predictor's AUC;
- plant: two 10-min closed-loop sessions (threshold controller on posterior
  alpha, tACS 1 mA, ramps 0.2 mA/s) on the generator's plant (alpha amplitude
  × (1 + x), x → 0.8/mA with a 2-s time constant); ``closedloop identify
  --response amplitude`` (prediction-error fit with an AR noise model) against
  the planted gain and time constant, with 95 % intervals, and plain least
  squares (no noise model) for comparison — on quiet synthetic EEG (1/f
  background 1 µV, alpha envelope sd 0.1, pain drift sd 0.05) and on the
  generator's defaults;
- replay through the plant: session A (thresholds 1.25/1.45) replayed with
  pipeline B (1.4/1.6) through the plant fitted on A, against B simulated on
  the same synthetic brain (same seed): duty cycle, mean amplitude, mean alpha.

    python benchmarks/pain_truth.py [--quick] [--seeds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.calibrate import auc, calibrate, r2  # noqa: E402
from closedloop.offline.identify import identify  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402
from closedloop.synthetic.eeg import PlantModel, SyntheticEEG  # noqa: E402
from closedloop.synthetic.session import RatingPlan, simulate_session  # noqa: E402

PIPELINE = """
[pipeline]
name = "pain_truth"
[source]
kind = "synthetic"
n_channels = 16
sfreq = 250.0
chunk_size = 25
[preprocess]
highpass_hz = 1.0
[features]
rois = {{ front = ["F3", "Fz", "F4"], post = ["P3", "Pz", "P4"] }}
window_samples = 250
hop_samples = 25
smoothing_s = 1.0
bands = {{ theta = [4.0, 8.0], alpha = [8.0, 12.0] }}
ratios = {{}}
[controller]
kind = "threshold"
feature = "alpha_post"
lower = {lower}
upper = {upper}
amplitude_mA = 1.0
frequency_Hz = 10.0
onset = 4
termination = 4
blanking_s = 2.0
[ratings]
stream = {{ name = "pain-ratings" }}
[device]
profile = "sim_tacs"
"""
CHANNELS = ["F3", "Fz", "F4", "P3", "Pz", "P4"]
GAIN, TAU = 0.8, 2.0
W_THETA, W_ALPHA, NOISE = 3.0, -2.0, 0.75
QUIET = dict(background_uV=1.0, envelope_sd=0.1, pain_sd=0.05)


def pipeline(folder: Path, name: str, lower: float, upper: float):
    path = folder / f"{name}.toml"
    path.write_text(PIPELINE.format(lower=lower, upper=upper))
    return load_pipeline(path)


def generator(seed: int, **kwargs) -> SyntheticEEG:
    return SyntheticEEG(ch_names=CHANNELS, sfreq=250.0, seed=seed, plant=PlantModel(GAIN, TAU), **kwargs)


def planted(t, feature_at, gen, rng):
    x = t - 1.0 + 0.05  # the frame one second before
    return (
        5.0
        + W_THETA * (feature_at("theta_front", x) - 0.9)
        + W_ALPHA * (feature_at("alpha_post", x) - 1.3)
        + rng.normal(0.0, NOISE)
    )


def calibration(folder: Path, seed: int, duration: float) -> dict:
    resolved = pipeline(folder, "cal", -5.0, -4.0)  # never stimulates
    plan = RatingPlan(every_s=2.0, rate=planted, start_s=3.0, seed=seed)
    sim = simulate_session(resolved, duration, folder / f"cal{seed}", generator=generator(seed), ratings=plan)
    tr = sim.trace
    k = np.searchsorted(tr.time, sim.rating_times) - 10
    truth = 5.0 + W_THETA * (tr.feature("theta_front")[k] - 0.9) + W_ALPHA * (tr.feature("alpha_post")[k] - 1.3)
    xdf = folder / f"cal{seed}" / "session.xdf"
    res = calibrate([xdf], resolved, lags_s=[1.0])
    per_unit = {w["feature"]: w["coef"] / s for w, s in zip(res.weights, res.model.scale)}
    thr = float(np.median(sim.ratings))
    logit = calibrate(
        [xdf], resolved, kind="logistic", threshold=thr, features=["theta_front", "alpha_post"], lags_s=[1.0]
    )
    return {
        "seed": seed,
        "ratings": len(sim.ratings),
        "r2_true": r2(sim.ratings, truth),
        "r2_cv": res.cv.score,
        "r2_ci95": list(res.cv.ci95),
        "w_theta_front": per_unit["theta_front"],
        "w_alpha_post": per_unit["alpha_post"],
        "auc_true": auc(sim.ratings >= thr, truth),
        "auc_cv": logit.cv.score,
        "auc_ci95": list(logit.cv.ci95),
    }


def plant(folder: Path, seed: int, duration: float, noise: dict, label: str) -> dict:
    a = pipeline(folder, "a", 1.25, 1.45) if noise else pipeline(folder, "a_default", 1.15, 1.35)
    files = []
    for s in (seed, seed + 100):
        out = folder / f"{label}{s}"
        simulate_session(a, duration, out, generator=generator(s, **noise))
        files.append(out / "session.xdf")
    t0 = time.perf_counter()
    pem = identify(files, response="amplitude")
    wall = time.perf_counter() - t0
    ols = identify(files, response="amplitude", noise_order=0)
    u = pem.uncertainty
    return {
        "seed": seed,
        "eeg": label,
        "gain": pem.gain,
        "gain_ci95": u["gain_ci95"],
        "tau_s": pem.tau_s,
        "tau_s_ci95": u["tau_s_ci95"],
        "delay_s": pem.delay_s,
        "gain_error": pem.gain / GAIN - 1,
        "tau_error": pem.tau_s / TAU - 1,
        "ols_gain": ols.gain,
        "ols_tau_s": ols.tau_s,
        "identify_s": wall,
        "files": [str(f) for f in files],
    }


def prediction(folder: Path, seed: int, duration: float, files: list[str]) -> dict:
    a_file = Path(files[0])
    fitted = identify([a_file], response="amplitude")
    (folder / "plant.json").write_text(fitted.model_dump_json())
    b = pipeline(folder, "b", 1.4, 1.6)
    truth = simulate_session(b, duration, None, generator=generator(seed, **QUIET)).trace
    through = replay(a_file, b, keep="trace", plant=folder / "plant.json").trace
    blind = replay(a_file, b, keep="trace").trace

    def stats(t):
        return {
            "duty": float((t.allowed_amplitude_mA > 0).mean()),
            "mean_mA": float(t.allowed_amplitude_mA.mean()),
            "mean_alpha": float(np.nanmean(t.feature("alpha_post"))),
        }

    return {
        "seed": seed,
        "simulated_B": stats(truth),
        "replay_through_plant": stats(through),
        "blind_replay": stats(blind),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, shorter sessions (the 10 %% bound may not hold)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per experiment")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    seeds = [11 + i for i in range(1 if args.quick else args.seeds)]
    cal_s, plant_s = (300.0, 300.0) if args.quick else (900.0, 600.0)
    out: dict = {"calibration": [], "plant": [], "prediction": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(
            f"calibration: planted rating = 5 + {W_THETA:g} theta_front {W_ALPHA:+g} alpha_post "
            f"(1 s before) + N(0, {NOISE})"
        )
        for seed in seeds:
            c = calibration(folder, seed, cal_s)
            out["calibration"].append(c)
            print(
                f"  seed {seed}: {c['ratings']} ratings; R2 true {c['r2_true']:.3f}, cross-validated {c['r2_cv']:.3f} "
                f"[{c['r2_ci95'][0]:.3f}, {c['r2_ci95'][1]:.3f}] (error {c['r2_cv'] - c['r2_true']:+.3f}); weights "
                f"theta {c['w_theta_front']:.2f} (planted {W_THETA:g}), alpha {c['w_alpha_post']:.2f} (planted "
                f"{W_ALPHA:g}); AUC true {c['auc_true']:.3f}, cross-validated {c['auc_cv']:.3f}"
            )
        print(f"plant: planted gain {GAIN} per mA (alpha amplitude), time constant {TAU} s; 2 x {plant_s:g} s per seed")
        for label, noise in (("quiet", QUIET), ("default", {})):
            for seed in seeds:
                p = plant(folder, seed, plant_s, noise, label)
                out["plant"].append(p)
                print(
                    f"  {label} EEG, seed {seed}: gain {p['gain']:.3f} "
                    f"[{p['gain_ci95'][0]:.3f}, {p['gain_ci95'][1]:.3f}] "
                    f"({p['gain_error']:+.1%}), tau {p['tau_s']:.3f} s [{p['tau_s_ci95'][0]:.3f}, "
                    f"{p['tau_s_ci95'][1]:.3f}] ({p['tau_error']:+.1%}), delay {p['delay_s']:.3f} s; "
                    f"least squares without noise model: gain {p['ols_gain']:.3f}, tau {p['ols_tau_s']:.3f} s "
                    f"({p['identify_s']:.0f} s)"
                )
        for p in [q for q in out["plant"] if q["eeg"] == "quiet"]:
            r = prediction(folder, p["seed"], plant_s, p["files"])
            out["prediction"].append(r)
            s, t, b = r["simulated_B"], r["replay_through_plant"], r["blind_replay"]
            print(
                f"replay of A with pipeline B, seed {r['seed']}: duty {t['duty']:.3f} through the plant, "
                f"{s['duty']:.3f} simulated, {b['duty']:.3f} blind; mean mA {t['mean_mA']:.3f} / {s['mean_mA']:.3f} / "
                f"{b['mean_mA']:.3f}; mean alpha {t['mean_alpha']:.3f} / {s['mean_alpha']:.3f} / {b['mean_alpha']:.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
