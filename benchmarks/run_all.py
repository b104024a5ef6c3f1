"""Run every benchmark, record the machine, versions and commit, and (optionally) render the README's figures.

Each benchmark runs in its own process with ``--json`` (and ``--quick`` when
given); its results, wall time and the load average before and after it go
into one JSON file together with

- ``machine``: CPU model, cores, platform, load average before and after the whole run;
- ``versions``: python, numpy, scipy, numba, mne, pylsl, mne-lsl, closedloop;
- ``commit``: the git commit (and whether the tree had uncommitted changes);
- ``speed_before`` / ``speed_after`` (and ``speed_before`` per benchmark): how fast the
  machine ran two fixed workloads at that moment (:func:`machine_speed`). A shared VM
  has slow and quick phases that the load average does not show; these tell a slow
  machine from slow code when two runs' figures differ.

The README's performance figures are rendered from that file by
``benchmarks/render_readme.py`` (``--readme`` does it at the end of a full
run); they are never edited by hand.

Usage::

    python benchmarks/run_all.py --json results.json [--quick] [--only replay,latency [--update]] [--readme]

``--update`` keeps the other benchmarks' results already in the file (each
entry records its own commit and load average). ``benchmarks/spread.py``
compares the headline figures of two or more such files (run-to-run spread).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

#: name -> (script, extra arguments of a full run)
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "startup": ("bench_startup.py", ["--wheel"]),
    "features": ("bench_features.py", []),
    "replay": ("bench_replay.py", []),
    "latency": ("bench_latency.py", []),
    "memory": ("bench_memory.py", []),
    "report": ("bench_report.py", []),
}

PACKAGES = ("numpy", "scipy", "numba", "mne", "pylsl", "mne-lsl", "pydantic", "closedloop")


def cpu_model() -> str:
    """Return the CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """Return the 1-, 5- and 15-minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def machine() -> dict:
    """Describe the machine the figures come from."""
    from closedloop import vector_width  # what the benchmarks' processes decide too (same CPU, same environment)

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "vectors": vector_width.STATE,
    }


def machine_speed(repeats: int = 5) -> dict[str, float]:
    """Time two fixed workloads now; the best of ``repeats`` each, in ms (lower is faster).

    ``python_loop_ms``: a pure-Python loop of 1,000,000 additions (the interpreter,
    as in the loop's per-stage glue). ``numpy_fft_ms``: ``numpy.fft.rfft`` of
    256 channels x 2000 samples (the kind of work scipy's welch does). Neither
    touches closedloop, so a change in them between runs is the machine's.
    """
    import numpy as np

    x = np.random.default_rng(0).standard_normal((256, 2000))

    def python_loop() -> None:
        total = 0
        for i in range(1_000_000):
            total += i

    def numpy_fft() -> None:
        np.fft.rfft(x, axis=1)

    out = {}
    for name, work in (("python_loop_ms", python_loop), ("numpy_fft_ms", numpy_fft)):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - t0)
        out[name] = round(best * 1e3, 2)
    return out


def versions() -> dict[str, str | None]:
    """Return the version of Python and of every package the figures depend on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def commit(results_file: Path | None = None) -> dict:
    """Return the git commit of the tree and whether it has uncommitted changes.

    ``results_file`` (this run's own output, rewritten after every benchmark)
    does not count as a change.
    """

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    exclude: list[str] = []
    if results_file is not None:
        path = Path(results_file).resolve()
        if path.is_relative_to(REPO):
            exclude = ["--", ".", f":(exclude){path.relative_to(REPO).as_posix()}"]
    return {
        "sha": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", *exclude)),
    }


def run_benchmark(name: str, quick: bool, tmp: Path, results_file: Path | None = None) -> dict:
    """Run one benchmark in a fresh process; return its JSON results with wall time and load average."""
    script, extra = BENCHMARKS[name]
    out = tmp / f"{name}.json"
    cmd = [sys.executable, str(BENCH / script), "--json", str(out)] + (["--quick"] if quick else extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    speed_before = machine_speed()
    load_before = load_average()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    entry = {
        "command": " ".join(["python", f"benchmarks/{script}", *cmd[2:]]).replace(str(out), "OUT.json"),
        "wall_s": round(wall, 2),
        **dict(zip(("commit", "dirty"), commit(results_file).values(), strict=True)),
        "load_before": load_before,
        "load_after": load_average(),
        "speed_before": speed_before,
        "returncode": done.returncode,
        "stdout": done.stdout[-6000:],
    }
    if done.returncode != 0 or not out.exists():
        entry["error"] = done.stderr.strip()[-2000:]
        return entry
    entry["results"] = json.loads(out.read_text())
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="write every result here")
    ap.add_argument("--quick", action="store_true", help="every benchmark in its quick mode (a few seconds each)")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    ap.add_argument("--readme", action="store_true", help="render README.md's figures from the results at the end")
    ap.add_argument("--update", action="store_true", help="keep the other benchmarks already in the --json file")
    args = ap.parse_args(argv)
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"--only: unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "commit": commit(args.json),
        "load_before": load_average(),
        "speed_before": machine_speed(),
        "benchmarks": {},
    }
    if args.update and args.json.exists():
        previous = json.loads(args.json.read_text())
        if previous.get("quick") != args.quick:
            ap.error("--update: the file holds results of the other mode (--quick or not)")
        kept = {k: v for k, v in previous.get("benchmarks", {}).items() if k not in names}
        for entry in kept.values():  # what each kept result was measured at
            entry.setdefault("commit", (previous.get("commit") or {}).get("sha"))
            entry.setdefault("dirty", (previous.get("commit") or {}).get("dirty"))
        results["benchmarks"] = kept
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        for name in names:
            print(f"== {name} (load {load_average()}) ...", flush=True)
            entry = run_benchmark(name, args.quick, Path(tmp), args.json)
            results["benchmarks"][name] = entry
            print(entry["stdout"].rstrip()[-3000:], flush=True)
            if "error" in entry:
                failed.append(name)
                print(f"!! {name} failed ({entry['returncode']}): {entry['error'][-800:]}", flush=True)
            print(f"   {entry['wall_s']:.0f} s, load {entry['load_before']} -> {entry['load_after']}", flush=True)
            args.json.write_text(json.dumps(results, indent=2))  # what is done so far survives an interruption
    results["load_after"] = load_average()
    results["speed_after"] = machine_speed()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.json.write_text(json.dumps(results, indent=2))
    from render_readme import speed_label

    print(f"wrote {args.json} (load {results['load_before']} -> {results['load_after']}; {speed_label(results)})")
    if args.readme:
        from render_readme import render_file

        changed = render_file(args.json, REPO / "README.md")
        print(f"README.md: {', '.join(changed) if changed else 'no block changed'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    raise SystemExit(main())
