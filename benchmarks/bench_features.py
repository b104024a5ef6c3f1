"""Per-update cost of closedloop's band-power methods and whole extractor step against scipy, MNE and numpy.

Setup (issues 3 and 13): 1-s window, a new frame every 10 ms, bands theta 4–8
and alpha 8–13 Hz, features per channel (theta, alpha, theta/alpha, log10); 64
channels at 1000 Hz (hop 10 samples) and 256 channels at 2000 Hz (hop 20).
Every method sees the same samples. Ours are timed per update (one hop of new
samples): the band-power method alone (``<method>.step``), the whole
``FeatureExtractor.step`` with the amplitude/flat/EMG/saturation checks off
(band power, ratios, log10, the always-on NaN and gap checks, frame objects),
and with every quality check on at its default, also with one channel NaN
in every sample (a dead electrode, which some LSL apps send for a
disconnected channel: its band powers are NaN, the other channels' are
unchanged). The extractor runs ``welch``
with one segment (this setup) as the sliding DFT — the same periodogram to
rounding — so its step row differs from the sliding-DFT row only by noise.
The references compute the same band powers, ratio and log10 from the same
window held as a contiguous array (no ring handling charged to them). All methods are timed in interleaved
rounds, so a busy machine slows them alike and the ratios stay meaningful.

Two things move the ratios between runs without any change to the code timed.
The shared 2-core VM has quiet and busy phases: the 64-channel step takes
~11 µs in one and ~17-20 µs in the other, scipy welch less so (measured in
one process, interleaved). And scipy welch at 256 channels takes ~7 ms when
its 4-MB temporaries come from the heap but 20-38 ms when each is a fresh
mmap (page faults); which one a run gets depends on glibc's dynamic mmap
threshold, i.e. on what the process allocated and freed before
(``MALLOC_MMAP_THRESHOLD_=67108864`` pins the fast case), so the 256-channel
ratio swings ~120-680x run to run. A plain loop of scipy welch at 256
channels in a fresh process, default glibc, took 20-25 ms per call here; with
``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456`` 6.2-6.5 ms,
and the all-checks step's ratio then reads ~140x (quick run: 45 µs against
6.45 ms). This script times scipy as a lab's loop runs it, with the default
allocator. At 64 channels scipy welch moves much less (1.0-2.0 ms).

    python benchmarks/bench_features.py [--quick] [--json PATH]

Prints median and p99 per update (µs), the speed-up over scipy.signal.welch
and the share of the hop period; ``--json`` writes
``{"config": {...}, "methods": {NAME: {"median_us", "p99_us",
"ratio_vs_scipy_welch"}}, "runs": [...], "summary": {...}}`` (``config``/``methods``
are the 64-channel run; ``runs`` holds every configuration; ``summary`` the
extractor step with all quality checks per configuration and the issue-13 targets).
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
DEAD_CHANNEL = "closedloop sliding_dft + all quality checks, one dead channel"
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


class _Ours:
    """A stage fed one hop per timed step, continuing the same stream across rounds."""

    def __init__(self, make, x: np.ndarray, ts: np.ndarray, window: int, hop: int) -> None:
        self.stage = make()
        self.stage.warmup()
        lead = window + 20 * hop
        self.stage.step(Chunk(x[:lead], ts[:lead]))
        self.chunks = [Chunk(x[i : i + hop], ts[i : i + hop]) for i in range(lead, x.shape[0] - hop + 1, hop)]
        self.next = 0

    def run(self, count: int, out: list[int]) -> None:
        clock = time.perf_counter_ns
        step = self.stage.step
        for _ in range(count):
            c = self.chunks[self.next]
            self.next = (self.next + 1) % len(self.chunks)  # wraps: timestamps jump back, a GAP flag; same cost
            t0 = clock()
            step(c)
            out.append(clock() - t0)


class _Reference:
    """``fn(window_view)`` on successive windows of ``xt`` (channels, samples)."""

    def __init__(self, fn, xt: np.ndarray, window: int, hop: int) -> None:
        self.fn, self.xt, self.window, self.hop = fn, xt, window, hop
        self.end = window
        for i in range(3):
            fn(xt[:, i * hop : i * hop + window])

    def run(self, count: int, out: list[int]) -> None:
        clock = time.perf_counter_ns
        for _ in range(count):
            seg = self.xt[:, self.end - self.window : self.end]
            t0 = clock()
            self.fn(seg)
            out.append(clock() - t0)
            self.end += self.hop
            if self.end > self.xt.shape[1]:
                self.end = self.window


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


def run_config(n_ch: int, sfreq: float, hop: int, updates: int, rounds: int) -> dict:
    window = int(sfreq)
    names = [f"E{i}" for i in range(n_ch)]
    total = window + 20 * hop + 2000 * hop
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
        "closedloop iir + all quality checks": ext("iir"),
        "preprocess (CAR, high-pass, notch)": lambda: Preprocessor(
            names, names, sfreq, combine="each", reference="average", highpass_hz=1.0, notch_hz=50.0
        ),
    }
    stages = {name: _Ours(make, x, t, window, hop) for name, make in ours.items()}
    dead = x.copy()
    dead[:, n_ch // 2] = np.nan
    stages[DEAD_CHANNEL] = _Ours(ext("sliding_dft"), dead, t, window, hop)
    refs = {name: _Reference(fn, xt, window, hop) for name, fn in references(sfreq, window).items()}
    results: dict[str, list[int]] = {name: [] for name in (*stages, *refs)}
    # interleaved rounds: every method is timed in every round, so all of them see the same machine load
    per_round = max(updates // rounds, 1)
    ref_round = max(per_round // 20, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            for name, st in stages.items():
                st.run(per_round, results[name])
            for name, ref in refs.items():
                ref.run(ref_round, results[name])
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
    print(f"{'method':62s} {'median µs':>10s} {'p99 µs':>10s} {'× scipy':>9s} {'% of hop':>9s}")
    for name, m in run["methods"].items():
        print(
            f"{name:62s} {m['median_us']:10.1f} {m['p99_us']:10.1f} {m['ratio_vs_scipy_welch']:9.1f} "
            f"{100 * m['median_us'] / hop_us:9.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates (a smoke run)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    updates, rounds = (300, 5) if args.quick else (6000, 30)
    runs = [run_config(64, 1000.0, 10, updates, rounds), run_config(256, 2000.0, 20, updates // 3, rounds)]
    for run in runs:
        print_run(run)
    summary = {}
    for run, target in zip(runs, (100.0, 200.0)):
        c, m = run["config"], run["methods"]["closedloop sliding_dft + all quality checks"]
        key = f"{c['n_channels']}ch@{c['sfreq']:g}Hz"
        summary[key] = {
            "median_us": m["median_us"],
            "ratio_vs_scipy_welch": m["ratio_vs_scipy_welch"],
            "target": target,
        }
        print(
            f"{key}: extractor step with all quality checks {m['median_us']} µs = "
            f"{m['ratio_vs_scipy_welch']}× scipy welch (target >= {target:g}×)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"config": runs[0]["config"], "methods": runs[0]["methods"], "runs": runs, "summary": summary},
                indent=2,
            )
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
