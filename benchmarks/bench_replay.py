"""Offline replay speed: a 64-channel, 1000 Hz recording through the full pipeline.

Writes a synthetic recording (XDF, LabRecorder layout) once, then measures
the realtime factor (recording time / wall time) of

- ``replay``: :func:`closedloop.offline.replay.replay` reading the XDF file, no outputs
  (what a sweep does) — the headline number, target >= 1000x on one core;
- ``with recording``: the same, also writing ``session.xdf`` and ``summary.json``;
- ``pipeline only``: :class:`closedloop.pipeline.Pipeline` on data already in memory.

The process is pinned to one core (Linux) unless ``--all-cores``.

Usage::

    python benchmarks/bench_replay.py [--duration 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402
from closedloop.pipeline import Pipeline  # noqa: E402
from closedloop.recording import XDFReader  # noqa: E402
from closedloop.synthetic.recording import write_synthetic_xdf  # noqa: E402
from closedloop.types import Chunk  # noqa: E402

N_CHANNELS, SFREQ = 64, 1000.0
#: alpha_tacs scaled to 64 channels at 1 kHz: 1-s window, a frame every 50 ms
OVERRIDES = {
    "source.n_channels": N_CHANNELS,
    "source.sfreq": SFREQ,
    "features.window_samples": 1000,
    "features.hop_samples": 50,
}


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="recording length (s)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (best is reported)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", OVERRIDES)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = Path(tmp) / "recording.xdf"
        t0 = time.perf_counter()
        write_synthetic_xdf(path, args.duration, N_CHANNELS, SFREQ, seed=1)
        print(
            f"wrote {args.duration:g} s of {N_CHANNELS} ch at {SFREQ:g} Hz ({path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        replay(path, resolved)  # compile / warm caches
        wall_replay = best_of(args.runs, lambda: replay(path, resolved))
        outs = iter(range(10**6))
        wall_rec = best_of(args.runs, lambda: replay(path, resolved, Path(tmp) / f"out{next(outs)}", report=False))
        values, stamps = XDFReader(path).read_stream(1)
        names = XDFReader(path).streams[1].ch_names
        step = 100

        def pipeline_only() -> None:
            pipe = Pipeline(resolved, names)
            for a in range(0, len(stamps), step):
                pipe.process(Chunk(values[a : a + step], stamps[a : a + step]))

        wall_pipe = best_of(args.runs, pipeline_only)
    results = {
        "realtime_factor": args.duration / wall_replay,
        "realtime_factor_with_recording": args.duration / wall_rec,
        "realtime_factor_pipeline_only": args.duration / wall_pipe,
        "n_channels": N_CHANNELS,
        "sfreq": SFREQ,
        "duration_s": args.duration,
        "frames_per_s_of_data": SFREQ / OVERRIDES["features.hop_samples"],
        "one_core": not args.all_cores,
    }
    print(f"replay (XDF in, no outputs):      {results['realtime_factor']:8.0f}x real time  (target >= 1000x)")
    print(f"replay writing session.xdf:       {results['realtime_factor_with_recording']:8.0f}x")
    print(f"pipeline only (data in memory):   {results['realtime_factor_pipeline_only']:8.0f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
