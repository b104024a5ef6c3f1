"""Per-update cost of closedloop's band-power methods against scipy, MNE and numpy, in one run.

Setup (issue 3): 1-s window, a new frame every 10 ms, bands theta 4–8 and
alpha 8–13 Hz, features per channel (theta, alpha, theta/alpha, log10); 64
channels at 1000 Hz (hop 10 samples) and 256 channels at 2000 Hz (hop 20).
Every method sees the same samples. Ours are timed twice per update (one hop
of new samples): the band-power method alone (``<method>.step``: what the
method costs), and the whole ``FeatureExtractor.step`` (band power, ratios,
log10, the always-on NaN and gap checks, frame objects; amplitude/flat/EMG
checks off, plus one line with them on). The references compute the same band
powers, ratio and log10 from the same window held as a contiguous array (no
ring handling charged to them).

    python benchmarks/bench_features.py [--quick] [--json PATH]

Prints median and p99 per update (µs), the speed-up over scipy.signal.welch
and the share of the hop period; ``--json`` writes
``{"config": {...}, "methods": {NAME: {"median_us", "p99_us",
"ratio_vs_scipy_welch"}}, "runs": [...]}`` (``config``/``methods`` are the
64-channel run; ``runs`` holds every configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closedloop.config.features import QualityConfig  # noqa: E402
from closedloop.features import FeatureExtractor, make_bandpower  # noqa: E402
from closedloop.preprocess import Preprocessor  # noqa: E402
from closedloop.types import Chunk  # noqa: E402

BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}
RATIOS = {"theta_alpha": ("theta", "alpha")}
QUALITY_OFF = QualityConfig(amplitude_uV=None, flat_uV=None, emg_rms_uV=None, saturation_uV=None)


def _stats(ns: list[int]) -> tuple[float, float]:
    a = np.asarray(ns, dtype=float) / 1e3
    return float(np.median(a)), float(np.percentile(a, 99))


class _MethodStage:
    """A band-power method behind the ``step(chunk)`` / ``warmup()`` of a stage."""

    def __init__(self, method) -> None:
        self.method = method

    def step(self, chunk: Chunk):
        return self.method.step(chunk.data, chunk.timestamps)

    def warmup(self) -> None:
        self.method.warmup()


def time_ours(make, x: np.ndarray, ts: np.ndarray, window: int, hop: int, updates: int, pre=None) -> list[int]:
    """Ns per ``step`` of one hop, after warm-up and a full window of history."""
    stage = make()
    stage.warmup()
    lead = window + 20 * hop
    stage.step(Chunk(x[:lead], ts[:lead]))
    chunks = [Chunk(x[i : i + hop], ts[i : i + hop]) for i in range(lead, lead + updates * hop, hop)]
    out = []
    clock = time.perf_counter_ns
    for c in chunks:
        t0 = clock()
        stage.step(c)
        out.append(clock() - t0)
    return out


def time_reference(fn, xt: np.ndarray, window: int, hop: int, budget_s: float, max_updates: int) -> list[int]:
    """Ns per call of ``fn(window_view)`` on successive windows of ``xt`` (channels, samples)."""
    for i in range(3):
        fn(xt[:, i * hop : i * hop + window])
    out = []
    start = time.perf_counter()
    clock = time.perf_counter_ns
    end = window
    while len(out) < max_updates and (time.perf_counter() - start < budget_s or len(out) < 30):
        seg = xt[:, end - window : end]
        t0 = clock()
        fn(seg)
        out.append(clock() - t0)
        end += hop
        if end > xt.shape[1]:
            end = window
    return out


def references(sfreq: float, window: int):
    from mne.time_frequency import psd_array_welch
    from scipy import signal

    freqs = np.fft.rfftfreq(window, 1.0 / sfreq)
    masks = [(freqs >= lo) & (freqs <= hi) for lo, hi in BANDS.values()]
    df = sfreq / window
    hann = signal.get_window("hann", window)
    scale = 2.0 / (sfreq * np.sum(hann**2))

    def finish(psd, fr):
        powers = [psd[:, (fr >= lo) & (fr <= hi)].sum(axis=1) * df for lo, hi in BANDS.values()]
        return np.log10(np.stack(powers + [powers[0] / powers[1]], axis=1))

    def scipy_welch(seg):
        f, p = signal.welch(seg, sfreq, window="hann", nperseg=window, axis=-1)
        return finish(p, f)

    def mne_welch(seg):
        p, f = psd_array_welch(
            seg, sfreq, fmin=4.0, fmax=13.0, n_fft=window, n_per_seg=window, window="hann", verbose="error"
        )
        return finish(p, f)

    def numpy_rfft(seg):
        d = seg - seg.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(d * hann, axis=1)
        p = (spec.real**2 + spec.imag**2) * scale
        powers = [p[:, m].sum(axis=1) * df for m in masks]
        return np.log10(np.stack(powers + [powers[0] / powers[1]], axis=1))

    return {"scipy welch": scipy_welch, "mne psd_array_welch": mne_welch, "numpy rfft periodogram": numpy_rfft}


def run_config(n_ch: int, sfreq: float, hop: int, updates: int, budget_s: float) -> dict:
    window = int(sfreq)
    names = [f"E{i}" for i in range(n_ch)]
    total = window + 20 * hop + updates * hop
    rng = np.random.default_rng(0)
    t = np.arange(total) / sfreq
    x = rng.standard_normal((total, n_ch)) * 10 + 20 * np.sin(2 * np.pi * 10 * t)[:, None]
    xt = np.ascontiguousarray(x.T)

    def ext(method, **kw):
        return lambda: FeatureExtractor(sfreq, names, BANDS, RATIOS, window, hop, per_channel=True, method=method, **kw)

    def kernel(method):
        return lambda: _MethodStage(make_bandpower(method, sfreq, n_ch, BANDS, window, hop))

    ours = {
        "closedloop welch (method)": kernel("welch"),
        "closedloop sliding_dft (method)": kernel("sliding_dft"),
        "closedloop iir (method)": kernel("iir"),
        "closedloop welch (extractor step)": ext("welch", quality=QUALITY_OFF),
        "closedloop sliding_dft (extractor step)": ext("sliding_dft", quality=QUALITY_OFF),
        "closedloop iir (extractor step)": ext("iir", quality=QUALITY_OFF),
        "closedloop sliding_dft + all quality checks": ext("sliding_dft"),
        "preprocess (CAR, high-pass, notch)": lambda: Preprocessor(
            names, names, sfreq, combine="each", reference="average", highpass_hz=1.0, notch_hz=50.0
        ),
    }
    results: dict[str, list[int]] = {}
    for name, make in ours.items():
        results[name] = time_ours(make, x, t, window, hop, updates)
    for name, fn in references(sfreq, window).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results[name] = time_reference(fn, xt, window, hop, budget_s, updates)
    scipy_med = _stats(results["scipy welch"])[0]
    methods = {}
    for name, ns in results.items():
        med, p99 = _stats(ns)
        methods[name] = {
            "median_us": round(med, 2),
            "p99_us": round(p99, 2),
            "ratio_vs_scipy_welch": round(scipy_med / med, 1),
            "updates": len(ns),
        }
    config = {
        "n_channels": n_ch,
        "sfreq": sfreq,
        "window_samples": window,
        "hop_samples": hop,
        "bands": {k: list(v) for k, v in BANDS.items()},
        "ratios": list(RATIOS),
        "log10": True,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}",
    }
    return {"config": config, "methods": methods}


def print_run(run: dict) -> None:
    c = run["config"]
    hop_us = c["hop_samples"] / c["sfreq"] * 1e6
    print(
        f"\n{c['n_channels']} channels @ {c['sfreq']:g} Hz, window {c['window_samples']}, hop {c['hop_samples']} "
        f"({hop_us / 1e3:g} ms)"
    )
    print(f"{'method':44s} {'median µs':>10s} {'p99 µs':>10s} {'× scipy':>9s} {'% of hop':>9s}")
    for name, m in run["methods"].items():
        print(
            f"{name:44s} {m['median_us']:10.1f} {m['p99_us']:10.1f} {m['ratio_vs_scipy_welch']:9.1f} "
            f"{100 * m['median_us'] / hop_us:9.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates (a smoke run)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    updates = 300 if args.quick else 3000
    budget = 0.5 if args.quick else 4.0
    runs = [run_config(64, 1000.0, 10, updates, budget), run_config(256, 2000.0, 20, updates // 3, budget)]
    for run in runs:
        print_run(run)
    if args.json:
        args.json.write_text(
            json.dumps({"config": runs[0]["config"], "methods": runs[0]["methods"], "runs": runs}, indent=2)
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
