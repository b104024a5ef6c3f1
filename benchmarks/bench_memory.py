"""Memory over an accelerated 8-hour session with recording: resident set size must stay flat (± 5 MB).

Replays ``--hours`` of synthetic EEG through the README's pipeline
(``pipelines/alpha_tacs.toml``: 32 channels at 500 Hz by default) with
:func:`closedloop.offline.replay.replay` — the session driver a live
session runs, into the simulated device — writing ``session.xdf`` and
``summary.json`` as a live session does, as fast as the CPU allows. The
samples come from one synthetic minute repeated with running timestamps,
so the input itself holds no growing memory. The process's RSS is sampled
every ``--every-s`` seconds of data; after a warm-up of ``--warmup-min``
minutes of data (buffers, caches and the recorder's queues reach their
size) the spread (max - min) and the slope of a straight-line fit are
reported.

No device profile allows an 8-hour stimulation session (the safety layer
ends the session at ``max_session_duration_s``, 40 min for ``sim_tacs``), so
the benchmark runs on a copy of ``sim_tacs`` whose session limit is raised
for this measurement only, with thresholds the synthetic alpha never
crosses: every frame still yields a command (zero amplitude) that is applied
and recorded.

Usage::

    python benchmarks/bench_memory.py [--quick] [--hours 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.files import RecordingFile  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402
from closedloop.synthetic.eeg import SyntheticEEG  # noqa: E402

TARGET_MB = 5.0


def rss_mb() -> float:
    """Return this process's resident set size (MB), from /proc (psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 1e6


class RepeatedRecording(RecordingFile):
    """``n_samples`` of EEG made of one block repeated, timestamps running on; RSS sampled as it is read."""

    def __init__(self, block: np.ndarray, sfreq: float, ch_names: list[str], n_samples: int, every: int) -> None:
        super().__init__(
            path=Path("synthetic-8h"),
            kind="memory",
            name="synthetic",
            type="EEG",
            source_id="synthetic",
            sfreq=sfreq,
            ch_names=ch_names,
            units=["microvolts"] * len(ch_names),
            channel_format="float32",
            n_samples=n_samples,
        )
        self._block, self._every = block, every
        self.samples: list[tuple[float, float, float]] = []  # (data time s, RSS MB, wall s)

    def blocks(self, picks=None, block_samples: int = 10_000):
        """Yield the repeated block with running timestamps; sample the RSS every ``every`` samples."""
        block = self._block if picks is None else np.ascontiguousarray(self._block[:, list(picks)])
        n = block.shape[0]
        stamps = np.arange(n) / self.sfreq
        t0 = time.perf_counter()
        next_sample = 0
        for start in range(0, self.n_samples, n):
            m = min(n, self.n_samples - start)
            if start >= next_sample:
                self.samples.append((start / self.sfreq, rss_mb(), time.perf_counter() - t0))
                next_sample += self._every
            yield block[:m], stamps[:m] + start / self.sfreq
        self.samples.append((self.n_samples / self.sfreq, rss_mb(), time.perf_counter() - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0, help="session length (hours of data)")
    ap.add_argument("--every-s", type=float, default=60.0, help="RSS sampled every this many seconds of data")
    ap.add_argument("--warmup-min", type=float, default=10.0, help="minutes of data before the spread counts")
    ap.add_argument("--quick", action="store_true", help="20 minutes of data (a smoke test)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    if args.quick:
        args.hours, args.warmup_min = min(args.hours, 1 / 3), min(args.warmup_min, 5.0)
    bench_dir = Path(tempfile.mkdtemp(prefix="bench-memory-profile-"))
    profile = bench_dir / "sim_tacs_long.toml"
    text = (REPO / "devices" / "sim_tacs.toml").read_text()
    long = re.sub(
        r"(\[limits\.max_session_duration_s\]\nvalue = )\d+\nsource = .*\n",
        r'\g<1>36000\nsource = "benchmarks/bench_memory.py only: an 8-hour run to measure memory, not a protocol"\n',
        text,
    )
    if long == text:
        raise SystemExit("bench_memory: sim_tacs.toml has no max_session_duration_s block to raise")
    profile.write_text(long)
    overrides = {"device.profile": str(profile), "controller.lower": -10.0, "controller.upper": -9.0}
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", overrides)
    cfg = resolved.config
    sfreq, n_ch = cfg.sfreq, cfg.source.n_channels
    gen = SyntheticEEG(n_channels=n_ch, sfreq=sfreq, seed=3)
    block = gen.generate(int(60 * sfreq)).astype(np.float32)  # one minute, repeated
    n = int(args.hours * 3600 * sfreq)
    rec = RepeatedRecording(block, sfreq, gen.ch_names, n, int(args.every_s * sfreq))
    rss_start = rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        t0 = time.perf_counter()
        result = replay("synthetic-8h", resolved, Path(tmp) / "out", recording=rec, report=False)
        wall = time.perf_counter() - t0
        size = (Path(tmp) / "out" / "session.xdf").stat().st_size
    profile.unlink()
    bench_dir.rmdir()
    if result.summary["stop_reason"] != "end of recording":
        raise SystemExit(f"bench_memory: the session ended early: {result.summary['stop_reason']}")
    samples = np.array(rec.samples)
    after = samples[samples[:, 0] >= args.warmup_min * 60.0]
    spread = float(after[:, 1].max() - after[:, 1].min()) if len(after) else float("nan")
    slope = float(np.polyfit(after[:, 0] / 3600.0, after[:, 1], 1)[0]) if len(after) > 2 else float("nan")
    results = {
        "hours": args.hours,
        "channels": n_ch,
        "sfreq": sfreq,
        "frames": result.summary["frames"],
        "session_xdf_mb": size / 1e6,
        "wall_s": wall,
        "realtime_factor": result.realtime_factor,
        "rss_start_mb": rss_start,
        "rss_after_warmup_mb": float(after[0, 1]) if len(after) else float("nan"),
        "rss_end_mb": float(samples[-1, 1]),
        "rss_spread_after_warmup_mb": spread,
        "rss_slope_mb_per_hour": slope,
        "target_spread_mb": TARGET_MB,
        "warmup_min": args.warmup_min,
        "rss_samples": [[float(t), float(r)] for t, r, _ in samples],
    }
    print(
        f"{args.hours:g} h of {n_ch} ch at {sfreq:g} Hz replayed with recording in {wall:.0f} s "
        f"({result.realtime_factor:.0f}x real time, {result.summary['frames']} frames, session.xdf {size / 1e6:.0f} MB)"
    )
    print(
        f"RSS: {rss_start:.1f} MB before, {results['rss_after_warmup_mb']:.1f} MB after "
        f"{args.warmup_min:g} min of data, "
        f"{results['rss_end_mb']:.1f} MB at the end; spread after warm-up {spread:.2f} MB (target <= {TARGET_MB:g}), "
        f"slope {slope:+.2f} MB/h"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
