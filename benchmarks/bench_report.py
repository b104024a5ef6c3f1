"""Time to write ``report.html`` at the end of a session (target: <= 1 s for a 30-s session).

Records a session the way a replay does (a synthetic 32-channel, 500 Hz
recording replayed through ``alpha_tacs`` into ``session.xdf``), then times
:func:`closedloop.offline.report.write_report` on it in fresh processes
that first import what ``closedloop run`` has imported by then:

- ``cold``: the report is the first to draw (matplotlib is imported then);
- ``prepared``: :func:`closedloop.offline.report.prepare` ran at the start
  of the session;
- ``warm``: the best of ``--runs`` further reports in the same process.

Wall and CPU time are printed: on a shared machine the CPU time of the
process is the steadier figure.

Usage::

    python benchmarks/bench_report.py [--quick] [--duration 30] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = """
import json, sys, time
from pathlib import Path
import closedloop.live.runtime  # what a live session has imported when it ends
from closedloop.config import load_pipeline
resolved = load_pipeline(Path(sys.argv[1]))
xdf, out, summary = Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
prepared, runs = sys.argv[5] == "1", int(sys.argv[6])
from closedloop.offline import report
t0, c0 = time.perf_counter(), time.process_time()
has_prepare = hasattr(report, "prepare")
if prepared and has_prepare:
    report.prepare()
t_prepare = time.perf_counter() - t0
t0, c0 = time.perf_counter(), time.process_time()
report.write_report(xdf, out, summary, resolved)
first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
warm, warm_cpu = [], []
for _ in range(runs):
    t0, c0 = time.perf_counter(), time.process_time()
    report.write_report(xdf, out, summary, resolved)
    warm.append(time.perf_counter() - t0)
    warm_cpu.append(time.process_time() - c0)
print(
    json.dumps(
        {
            "prepare": t_prepare,
            "first": first,
            "first_cpu": first_cpu,
            "warm": min(warm) if warm else None,
            "warm_cpu": min(warm_cpu) if warm else None,
            "has": has_prepare,
        }
    )
)
"""


def child(args, xdf: Path, out: Path, summary: dict, prepared: bool, runs: int) -> dict:
    pipeline = REPO / "pipelines" / "alpha_tacs.toml"
    cmd = [sys.executable, "-c", textwrap.dedent(CHILD), str(pipeline), str(xdf), str(out), json.dumps(summary)]
    cmd += ["1" if prepared else "0", str(runs)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="session length (s)")
    parser.add_argument("--runs", type=int, default=3, help="warm repetitions (best is reported)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per case (best is reported)")
    parser.add_argument("--quick", action="store_true", help="a 10-s session, one process per case (a smoke test)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.runs, args.repeat = min(args.duration, 10.0), 1, 1
    results: dict = {"duration_s": args.duration, "target_s": 1.0}

    from closedloop.config import load_pipeline
    from closedloop.offline.replay import replay
    from closedloop.synthetic.recording import write_synthetic_xdf

    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        src = Path(tmp) / "recording.xdf"
        write_synthetic_xdf(src, args.duration, 32, 500.0, seed=1)
        session = Path(tmp) / "session"
        result = replay(src, resolved, out_dir=session, report=False)
        xdf = session / "session.xdf"
        summary = json.loads(json.dumps(result.summary, default=str))
        print(f"{args.duration:g}-s session: {xdf.stat().st_size / 1e6:.1f} MB, {result.summary['frames']} frames")
        out = Path(tmp) / "report.html"
        cold = [child(args, xdf, out, summary, False, args.runs) for _ in range(args.repeat)]
        print(
            f"cold (first report, matplotlib imported then): {min(c['first'] for c in cold):.2f} s "
            f"(CPU {min(c['first_cpu'] for c in cold):.2f} s)"
        )
        results["cold_s"] = min(c["first"] for c in cold)
        results["cold_cpu_s"] = min(c["first_cpu"] for c in cold)
        results["warm_s"] = min(c["warm"] for c in cold)
        if cold[0]["has"]:
            prepared = [child(args, xdf, out, summary, True, 0) for _ in range(args.repeat)]
            results["prepared_s"] = min(p["first"] for p in prepared)
            results["prepare_s"] = min(p["prepare"] for p in prepared)
            print(
                f"prepared (prepare() at session start took {min(p['prepare'] for p in prepared):.2f} s): "
                f"{min(p['first'] for p in prepared):.2f} s"
            )
        print(
            f"warm (best of {args.runs} in one process):         {min(c['warm'] for c in cold):.2f} s "
            f"(CPU {min(c['warm_cpu'] for c in cold):.2f} s)"
        )
        print(f"report.html: {out.stat().st_size / 1e3:.0f} kB  (target: <= 1 s for a {args.duration:g}-s session)")
        results["size_kb"] = out.stat().st_size / 1e3
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
