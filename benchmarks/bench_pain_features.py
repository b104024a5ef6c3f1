"""Cost and agreement of the pain-marker features: aperiodic fit against specparam, per update and per step.

On the shared real resting EEG (``../shared/data/eegmat_subject00_rest.edf``;
synthetic 1/f noise with an alpha peak when it is absent) the spectrum stage
(2-s Hann segments, 8 averaged, refreshed every second, fit over 2–40 Hz) runs
over five channels (O1, O2, Fz, C3, P4); every 10 s each channel's averaged
spectrum is also fitted by ``specparam`` (same settings: peak width 1–12 Hz,
at most 6 peaks). Reported, in one run:

- agreement: exponent difference (median, max, share of windows within 0.05),
  relative difference of the corrected alpha power (8–12 Hz), fixed and knee models;
- cost of one fit: our :func:`~closedloop.features.aperiodic.fit_aperiodic` and
  ``specparam.SpectralModel.fit`` on the same spectra, timed interleaved
  (median and p99 µs; ratio);
- cost of one spectrum update (periodogram of the new segment, Welch average,
  fit and corrected powers) for 4 channels, and of the whole extractor step
  (50 ms hop at 500 Hz, 4 ROIs) with and without the aperiodic and IAF features:
  median, p99 and mean µs per step (an update falls on one step in 20);
- PAF: the streaming centre of gravity and peak against the offline (scipy) estimate.

    python benchmarks/bench_pain_features.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closedloop.config.features import AperiodicConfig, FeaturesConfig, SpectrumConfig  # noqa: E402
from closedloop.features import FeatureExtractor  # noqa: E402
from closedloop.features.aperiodic import AperiodicWork, fit_aperiodic  # noqa: E402
from closedloop.features.spectrum import SpectrumStage  # noqa: E402
from closedloop.types import Chunk  # noqa: E402

EDF = Path(__file__).resolve().parents[2] / "shared" / "data" / "eegmat_subject00_rest.edf"
CHANNELS = ["EEG O1", "EEG O2", "EEG Fz", "EEG C3", "EEG P4"]
FS = 500.0
SETTINGS = dict(peak_width_limits=(1.0, 12.0), max_n_peaks=6)


def load() -> tuple[np.ndarray, str]:
    """Return (samples (n, 5) in µV, source name)."""
    if EDF.exists():
        import mne

        raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
        return np.ascontiguousarray(raw.get_data(picks=CHANNELS).T * 1e6), EDF.name
    rng = np.random.default_rng(0)
    n = int(180 * FS)
    t = np.arange(n) / FS
    out = np.empty((n, len(CHANNELS)))
    for c in range(len(CHANNELS)):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / FS)
        spec[1:] /= f[1:] ** 0.8
        spec[0] = 0
        y = np.fft.irfft(spec, n)
        out[:, c] = 10 * y / y.std() + 6 * np.sin(2 * np.pi * (9.5 + 0.3 * c) * t)
    return out, "synthetic 1/f + alpha (the shared recording is absent)"


def windows(x: np.ndarray, knee: bool, step_s: float) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Run the stage; every ``step_s`` return (freqs, spectrum, our row) per channel."""
    seg = int(2 * FS)
    stage = SpectrumStage(
        FS, x.shape[1], seg, 50, {"alpha": (8.0, 12.0)}, SpectrumConfig(segment_samples=seg, segments=8),
        AperiodicConfig(knee=knee, max_peaks=6, corrected=["alpha"]), None,
    )  # fmt: skip
    out = np.zeros((x.shape[0] // 50 + 1, x.shape[1], len(stage.names)))
    span = seg + 7 * stage.step
    res, pos = [], 0
    for end in range(span, x.shape[0] + 1, int(step_s * FS)):
        stage.process(np.ascontiguousarray(x[pos:end]), out)
        pos = end
        for c in range(x.shape[1]):
            res.append((stage.freqs.copy(), stage.spectrum[c].copy(), dict(zip(stage.names, stage._current[c]))))
    return res


def agreement(x: np.ndarray, knee: bool, step_s: float) -> dict:
    import specparam

    exp_err, alpha_err, ours_ns, ref_ns = [], [], [], []
    work = None
    for f, p, row in windows(x, knee, step_s):
        fit = (f >= 2 - 1e-9) & (f <= 40 + 1e-9)
        fm = specparam.SpectralModel(**SETTINGS, aperiodic_mode="knee" if knee else "fixed", verbose=False)
        t0 = time.perf_counter_ns()
        fm.fit(f[fit], p[fit], [2.0, 40.0])
        ref_ns.append(time.perf_counter_ns() - t0)
        ap = fm.results.get_params("aperiodic")
        off, k, exp = (ap[0], 0.0, ap[1]) if not knee else tuple(ap)
        band = (f >= 8 - 1e-9) & (f < 12 - 1e-9)
        ref_alpha = np.sum(p[band] - 10 ** (off - np.log10(k + f[band] ** exp))) * (f[1] - f[0])
        exp_err.append(abs(row["ap_exponent"] - exp))
        alpha_err.append(abs(row["alpha_ap"] / ref_alpha - 1))
        # our fit alone, on the same spectrum, right after specparam's (interleaved timing)
        ff, y = np.ascontiguousarray(f[fit]), np.log10(p[fit])
        if work is None:
            work = AperiodicWork(ff.size, knee, SETTINGS["peak_width_limits"], SETTINGS["max_n_peaks"])
            lx = np.log10(ff)
        args = (ff, lx, y, knee, work.settings, work.params, work.work, work.mask, work.guess, work.jac, work.mat)
        fit_aperiodic(*args, work.vec, work.step)  # compiled already; keeps the caches warm alike
        t0 = time.perf_counter_ns()
        fit_aperiodic(*args, work.vec, work.step)
        ours_ns.append(time.perf_counter_ns() - t0)
    e, a = np.array(exp_err), np.array(alpha_err)
    ours, ref = np.array(ours_ns) / 1e3, np.array(ref_ns) / 1e3
    return {
        "windows": int(e.size),
        "exponent_abs_diff": {
            "median": float(np.median(e)), "max": float(e.max()), "within_0.05": float(np.mean(e < 0.05))
        },
        "corrected_alpha_rel_diff": {
            "median": float(np.median(a)), "max": float(a.max()), "within_5pct": float(np.mean(a < 0.05))
        },
        "fit_us": {"closedloop": {"median": float(np.median(ours)), "p99": float(np.percentile(ours, 99))},
                   "specparam": {"median": float(np.median(ref)), "p99": float(np.percentile(ref, 99))},
                   "speedup_median": float(np.median(ref) / np.median(ours))},
    }  # fmt: skip


def update_cost(x: np.ndarray, reps: int) -> dict:
    """µs per spectrum update (4 channels): the stage fed exactly one segment step per call."""
    seg = int(2 * FS)
    stage = SpectrumStage(
        FS, 4, seg, 500, {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}, SpectrumConfig(segment_samples=seg, segments=8),
        AperiodicConfig(max_peaks=6), None,
    )  # fmt: skip
    out = np.zeros((4, 4, len(stage.names)))
    step = stage.step
    data = np.ascontiguousarray(x[:, :4])
    stage.process(np.ascontiguousarray(data[: seg + 7 * step]), np.zeros((40, 4, len(stage.names))))
    pos = seg + 7 * step
    ns = []
    for _ in range(reps):
        if pos + step > data.shape[0]:
            pos = seg + 7 * step
        chunk = data[pos : pos + step]
        t0 = time.perf_counter_ns()
        stage.process(chunk, out)
        ns.append(time.perf_counter_ns() - t0)
        pos += step
    us = np.array(ns) / 1e3
    return {"channels": 4, "segment_samples": seg, "bins": int(stage.freqs.size), "median_us": float(np.median(us)),
            "p99_us": float(np.percentile(us, 99))}  # fmt: skip


def step_cost(x: np.ndarray, seconds: float) -> dict:
    """µs per extractor step (hop 25 samples = 50 ms), 4 ROIs, with and without the pain-marker features."""
    rois = {"frontal": ["Fz"], "posterior": ["O1", "O2"], "left": ["C3"], "right": ["P4"]}
    plain = dict(rois=rois, window_samples=1000, hop_samples=25, method="sliding_dft", smoothing_s=2.0,
                 bands={"theta": (4.0, 8.0), "alpha": (8.0, 13.0)})  # fmt: skip
    pain = dict(
        plain, spectrum={"segment_samples": 1000, "segments": 8}, aperiodic={"corrected": ["theta", "alpha"]},
        iaf={"channel": "posterior"}, baseline={"duration_s": 30.0, "features": ["theta_ap"]},
        ratios={"theta_alpha": ("theta", "alpha"), "cross": ("theta_frontal", "alpha_posterior")},
        expressions={"asymmetry": "(alpha_right - alpha_left) / (alpha_right + alpha_left)"},
    )  # fmt: skip
    n = min(int(seconds * FS), x.shape[0])
    data = np.ascontiguousarray(x[:n, :5])
    t = np.arange(n) / FS
    res = {}
    for name, kw in (("band power only", plain), ("+ aperiodic, IAF, expressions", pain)):
        fc = FeaturesConfig(**kw)
        ext = FeatureExtractor.from_config(fc, FS, list(fc.signal_names()), ())
        ext.warmup()
        # the ROIs here are single channels or means the preprocessor would form: feed 4 columns directly
        four = np.ascontiguousarray(np.stack([data[:, 2], data[:, :2].mean(1), data[:, 3], data[:, 4]], axis=1))
        ns = []
        for i in range(0, n - 25, 25):
            c = Chunk(four[i : i + 25], t[i : i + 25])
            t0 = time.perf_counter_ns()
            ext.step(c)
            ns.append(time.perf_counter_ns() - t0)
        us = np.array(ns[len(ns) // 4 :]) / 1e3
        res[name] = {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
                     "mean_us": float(us.mean()), "max_us": float(us.max())}  # fmt: skip
    return res


def paf(x: np.ndarray) -> dict:
    from scipy import signal

    fc = FeaturesConfig(
        channels=["post"], window_samples=1000, hop_samples=250,
        paf={"segment_samples": 1000, "segments": 15, "cog_band": [6.0, 13.0], "peak_band": [6.0, 13.0]},
    )  # fmt: skip
    post = np.ascontiguousarray(x[:, [0, 1]].mean(axis=1)[:, None])
    frames = FeatureExtractor.from_config(fc, FS, ["post"]).step(Chunk(post, np.arange(post.shape[0]) / FS))
    span = 1000 + 14 * 500
    ends = 1000 + 250 * np.arange(len(frames))
    diffs = []
    for fr, end in zip(frames, ends):
        if end < span or (end - 1000) % 500 or (end // 500) % 10:
            continue
        f, p = signal.welch(post[end - span : end, 0], FS, nperseg=1000, noverlap=500)  # plain bins, no padding
        sel = (f >= 6) & (f <= 13)
        diffs.append(abs(fr["paf_cog"] - np.sum(f[sel] * p[sel]) / np.sum(p[sel])))
    f, p = signal.welch(post[:, 0], FS, nperseg=1000, noverlap=500, nfft=4000)
    sel = (f >= 6) & (f <= 13)
    whole = float(np.sum(f[sel] * p[sel]) / np.sum(p[sel]))
    late = [fr["paf_cog"] for fr, e in zip(frames, ends) if e >= span]
    return {"cog_vs_plain_welch_same_windows_max_hz": float(max(diffs)),
            "median_streaming_cog_vs_whole_recording_hz": float(abs(np.median(late) - whole))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer windows and repetitions (seconds, for the test suite)")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    x, source = load()
    if args.quick:
        x = x[: int(40 * FS)]
    step_s = 20.0 if args.quick else 10.0
    res = {
        "config": {"source": source, "sfreq": FS, "channels": CHANNELS, "segment_s": 2.0, "segments": 8,
                   "fit_range_hz": [2.0, 40.0], "specparam": SETTINGS | {"peak_width_limits": [1.0, 12.0]},
                   "machine": platform.platform(), "quick": args.quick},
        "fixed": agreement(x, False, step_s),
        "knee": agreement(x, True, step_s),
        "update": update_cost(x, 20 if args.quick else 200),
        "step": step_cost(x, 20.0 if args.quick else 120.0),
        "paf": paf(x),
    }  # fmt: skip
    print(f"source: {source}")
    for mode in ("fixed", "knee"):
        r = res[mode]
        e, a, t = r["exponent_abs_diff"], r["corrected_alpha_rel_diff"], r["fit_us"]
        print(
            f"{mode:5s}: {r['windows']} windows; exponent vs specparam median {e['median']:.4f}, max {e['max']:.3f}, "
            f"{100 * e['within_0.05']:.0f} % within 0.05; corrected alpha median {100 * a['median']:.3f} %, "
            f"max {100 * a['max']:.2f} %; fit {t['closedloop']['median']:.0f} µs (p99 {t['closedloop']['p99']:.0f}) "
            f"vs specparam {t['specparam']['median']:.0f} µs: {t['speedup_median']:.0f}x"
        )
    u = res["update"]
    print(f"spectrum update, {u['channels']} ch, {u['bins']} bins: median {u['median_us']:.0f} µs, ", end="")
    print(f"p99 {u['p99_us']:.0f} µs")
    for name, s in res["step"].items():
        print(f"extractor step, {name}: median {s['median_us']:.1f} µs, p99 {s['p99_us']:.1f}, mean {s['mean_us']:.1f}")
    print(f"PAF: {res['paf']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
