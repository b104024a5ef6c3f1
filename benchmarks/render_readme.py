"""Render the README's performance figures from a ``run_all.py`` results file.

README.md holds blocks between markers ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->`` (NAME: startup, features, latency, replay,
memory); this script rewrites each block whose benchmark is in the results
file, from that file alone, with the machine, load average, versions and
commit it was measured on. Blocks whose benchmark is missing are left as
they are. The figures in those blocks are never edited by hand.

Usage::

    python benchmarks/render_readme.py results.json [--readme README.md] [--check]

``--check`` changes nothing and exits 1 if a block would change.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _f(x, digits: int = 2) -> str:
    """Format a number for a table (``—`` when missing)."""
    if x is None or (isinstance(x, float) and x != x):
        return "—"
    if isinstance(x, float) and abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def conditions(results: dict, name: str) -> str:
    """Return the line saying where, when and how a benchmark's figures were measured."""
    m, v, c = results["machine"], results["versions"], results["commit"]
    entry = results["benchmarks"][name]
    own = "commit" in entry  # each benchmark's own (run_all --update may have re-run some later)
    dirty = entry.get("dirty") if own else c.get("dirty")
    sha = ((entry.get("commit") if own else c.get("sha")) or "unknown")[:10] + (" + local changes" if dirty else "")
    vers = ", ".join(f"{k} {v[k]}" for k in ("python", "numpy", "scipy", "numba", "mne", "pylsl") if v.get(k))
    quick = " **quick mode (smoke run, not for comparison)**" if results.get("quick") else ""
    load = entry.get("load_before") or []
    load_after = entry.get("load_after") or []
    return (
        f"*`{entry['command']}`*, run by `benchmarks/run_all.py` at commit `{sha}` on {machine_label(m)}, "
        f"load average {_load(load)} before and {_load(load_after)} after{_speed(entry.get('speed_before'))}; "
        f"{vers}.{quick}"
    )


def machine_label(m: dict) -> str:
    """Name the machine of a run (``run_all.machine()``): CPU, cores and, if recorded, the vector width used."""
    vectors = f"; vectors: {m['vectors']}" if m.get("vectors") else ""
    return f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores{vectors})"


def speed_label(results: dict) -> str:
    """Say how fast the machine ran ``run_all.machine_speed``'s fixed workloads at the start (and end) of a run."""
    before, after = results.get("speed_before"), results.get("speed_after")
    if not before:
        return "machine speed not recorded"
    text = f"{_workloads(before)} at the start"
    if after:
        text += f" ({after['python_loop_ms']:.0f} / {after['numpy_fft_ms']:.1f} ms at the end)"
    return text


def _workloads(speed: dict) -> str:
    """Say how long the fixed workloads took (``run_all.machine_speed``'s two figures)."""
    return f"Python loop {speed['python_loop_ms']:.0f} ms, numpy FFT {speed['numpy_fft_ms']:.1f} ms"


def _speed(speed: dict | None) -> str:
    """Say how fast the machine ran the fixed workloads just before a benchmark (nothing if not recorded)."""
    return f"; machine speed before it: {_workloads(speed)}" if speed else ""


def _load(x: list) -> str:
    """Format a load average as recorded (the 1-minute figure first), or say it is unknown."""
    return f"{x[0]:.2f}" if x else "unknown"


def render_startup(r: dict, rep: dict | None) -> str:
    """Startup table: --help, check, run phases, report, numba cache."""
    run = r["run"]
    ph = run["phases"]
    rows = [
        ("`closedloop --help`", f"{_f(r['help']['best_s'])} s", "≤ 0.3 s"),
        ("`closedloop check pipelines/alpha_tacs.toml`", f"{_f(r['check']['best_s'])} s", "≤ 0.5 s"),
        (
            "`closedloop run pipelines/alpha_tacs.toml`: imports and pipeline loaded",
            f"{_f(ph.get('imports_and_load_s'))} s",
            "",
        ),
        (
            "… stream resolved, first `time_correction`, kernels loaded (overlapped)",
            f"{_f(ph.get('resolve_and_time_correction_s'))} s",
            "",
        ),
        ("… recording, devices and other streams started", f"{_f(run.get('running_s'))} s after the start", ""),
        (
            "… first frame (median of the runs)",
            f"{_f(run.get('first_frame_s'))} s after the start"
            + (
                f" ({', '.join(_f(x) for x in run['first_frame_runs_s'])})"
                if len(run.get("first_frame_runs_s", [])) > 1
                else ""
            ),
            "≤ 2 s",
        ),
        ("`report.html` after `summary.json`", f"{_f(run.get('report_s'))} s (progress shown)", "≤ 1 s or after it"),
    ]
    ext = r.get("run_lsl")
    if ext is not None:
        rows.insert(
            len(rows) - 1,
            (
                "`closedloop run pipelines/alpha_tacs_lsl.toml` on a stream already running "
                "(`closedloop synth`, another process): first frame",
                f"{_f(ext.get('first_frame_s'))} s after the start",
                "≤ 2 s",
            ),
        )
    if rep is not None:
        rows.append(
            (
                f"`report.html` of a {_f(rep['duration_s'], 0)}-s session, plotting stack already imported",
                f"{_f(rep.get('prepared_s'))} s (cold {_f(rep.get('cold_s'))} s)",
                "≤ 1 s",
            )
        )
    ov = r.get("overlap")
    if ov is not None:
        rows.insert(
            4,
            (
                "… stream opening and kernel warm-up: apart / in parallel",
                f"{_f(ov['open_s'])} + {_f(ov['warmup_s'])} s / {_f(ov['overlapped_s'])} s",
                "",
            ),
        )
    lines = ["| what | measured | target |", "|---|---:|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    cache = r.get("numba_cache", {})
    parts = []
    for where, variants in cache.items():
        hits = sum(v["hits"] for v in variants.values())
        kernels = sum(v["kernels"] for v in variants.values())
        misses = sum(v["misses"] for v in variants.values())
        parts.append(f"{where.replace('_', ' ')}: {hits}/{kernels} kernels loaded from the cache, {misses} compiled")
    if parts:
        lines += [
            "",
            "numba's on-disk cache in a second fresh process (every pipeline method) — " + "; ".join(parts) + ".",
        ]
    return "\n".join(lines)


def render_features(r: dict) -> str:
    """Per-update cost table of the 64-channel run, and the summary of both configurations."""
    c = r["config"]
    head = (
        f"| {c['n_channels']} ch @ {c['sfreq'] / 1000:g} kHz, {c['window_samples']}-sample window, "
        f"hop {c['hop_samples']}, theta + alpha | median µs | p99 µs | × scipy welch |"
    )
    lines = [head, "|---|---:|---:|---:|"]
    for name, m in r["methods"].items():
        lines.append(
            f"| {name} | {_f(m['median_us'], 1)} | {_f(m['p99_us'], 1)} | {_f(m['ratio_vs_scipy_welch'], 1)} |"
        )
    summary = r.get("summary", {})
    if summary:
        lines.append("")
        lines.append(
            "Extractor step with every quality check (sliding DFT): "
            + "; ".join(
                f"{k}: {_f(v['median_us'], 1)} µs = {v['ratio_vs_scipy_welch']:,.1f}× scipy welch "
                f"(target ≥ {_f(v['target'], 0)}×: {'met' if v['ratio_vs_scipy_welch'] >= v['target'] else 'not met'})"
                for k, v in summary.items()
            )
            + "."
        )
    return "\n".join(lines)


def render_latency(r: list) -> str:
    """Latency table per stream: floor, closedloop (wait, busy), the labs' loops; overheads and ratios."""
    lines = ["| stream | loop | median ms | p99 ms | max ms | compute ms |", "|---|---|---:|---:|---:|---:|"]
    notes = []
    for run in r:
        c = run["config"]
        label = f"{c['channels']} ch @ {c['rate_hz'] / 1000:g} kHz"
        rows = [
            ("LSL transport floor", run["floor"], None),
            (f'closedloop ({c["method"]}, default `poll = "wait"`)', run["loop"], run.get("compute_ms")),
            ('closedloop, `poll = "busy"`', run["busy"]["loop"], None),
        ]
        names = {
            "mne_lsl": "mne-lsl `StreamLSL` + scipy welch",
            "pylsl": "pylsl `pull_chunk` + numpy ring + scipy welch",
        }
        for key, other in run.get("others", {}).items():
            rows.append((names.get(key, key), other["loop"], other.get("compute_ms")))
        for i, (what, m, comp) in enumerate(rows):
            lines.append(
                f"| {label if i == 0 else ''} | {what} | {_f(m['median_ms'], 3)} | {_f(m['p99_ms'], 3)} | "
                f"{_f(m['max_ms'], 2)} | {_f(comp, 3) if comp is not None else ''} |"
            )
        note = (
            f"{label}: closedloop adds {_f(run['overhead_median_ms'], 3)} ms to the floor's median "
            f'(target ≤ 0.2), {_f(run["busy"]["overhead_median_ms"], 3)} ms with `poll = "busy"` (target ≤ 0.1)'
        )
        if "in_process" in run:
            own, own_busy = run["in_process"], run["busy"]["in_process"]
            note += (
                f"; its own share of each command's latency (pull returned → command issued) is "
                f"{_f(own['median_ms'], 3)} ms median, p99 {_f(own['p99_ms'], 3)} ms, and "
                f"{_f(own_busy['median_ms'], 3)} / {_f(own_busy['p99_ms'], 3)} ms busy (target p99 < 1 ms; "
                f"the rest of the total's p99 is the transport's, as the floor's own p99 shows)"
            )
        pace = run.get("pace")
        if pace is not None:
            note += (
                f"; the loop's compute on the same chunks without LSL is {_f(pace['back_to_back']['median_ms'], 3)} "
                f"ms back to back and {_f(pace['at_stream_pace']['median_ms'], 3)} ms at the stream's pace, idle "
                f"between chunks ({_f(pace['ratio'], 1)}×)"
            )
            if "ratio_computing" in pace:
                busy = pace["ratio_computing"]
                why = (
                    "the time between chunks costs it, not waking from idle"
                    if busy - 1.0 >= 0.5 * (pace["ratio"] - 1.0)
                    else "most of it is waking from idle"
                )
                note += (
                    f", {_f(pace['at_stream_pace_computing']['median_ms'], 3)} ms at that pace with the thread "
                    f"computing between chunks instead of sleeping ({_f(busy, 1)}×: {why})"
                )
            if "ratio_warm" in pace:
                warm = pace["ratio_warm"]
                why = (
                    "most of the cost is the pipeline's code going cold between chunks"
                    if warm - 1.0 <= 0.5 * (pace["ratio"] - 1.0)
                    else "not only the pipeline's code going cold"
                )
                note += (
                    f", and {_f(pace['at_stream_pace_warm']['median_ms'], 3)} ms with a second, identical pipeline "
                    f"fed between chunks ({_f(warm, 1)}×: {why})"
                )
        for key, other in run.get("others", {}).items():
            ratio = other["ratio_vs"]
            note += (
                f"; {names.get(key, key).split(' ')[0]} takes {_f(ratio['latency_median'], 1)}× its median latency and "
                f"{_f(ratio['compute'], 0)}× its compute time"
            )
        notes.append(note + ".")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def render_replay(r: dict) -> str:
    """Replay speed table and the time per frame of each stage."""
    t = r["targets"]
    rows = [
        (
            "in memory (through the session driver, every command applied)",
            r["realtime_factor_in_memory"],
            t["in_memory"],
        ),
        ("from XDF, no outputs (what a sweep does)", r["realtime_factor"], t["from_xdf"]),
        (
            "from XDF, writing `session.xdf` and `summary.json`",
            r["realtime_factor_with_recording"],
            t["with_recording"],
        ),
        ("`Pipeline.process` alone, 100-sample chunks", r["realtime_factor_pipeline_only"], None),
    ]
    head = (
        f"| replay of {r['duration_s']:g} s, {r['n_channels']} ch @ {r['sfreq'] / 1000:g} kHz, "
        f"{r['frames_per_s_of_data']:g} frames/s, one core | × real time | target |"
    )
    cpu = r.get("realtime_factor_cpu", {})
    keys = ["in_memory", "from_xdf", "with_recording", None]
    lines = [head.replace("| × real time |", "| × real time | from CPU time |"), "|---|---:|---:|---:|"]
    lines += [
        f"| {a} | {_f(b, 0)}× | {_f(cpu.get(k), 0) + '×' if k in cpu else ''} | {'≥ ' + _f(c, 0) + '×' if c else ''} |"
        for (a, b, c), k in zip(rows, keys)
    ]
    stages = ", ".join(f"{k} {_f(v, 1)} µs" for k, v in r["stage_us_per_frame"].items())
    lines += ["", f"Time per frame by stage ({r['method']} band power): {stages}."]
    return "\n".join(lines)


def render_memory(r: dict) -> str:
    """RSS over the accelerated session."""
    return (
        f"| accelerated session with recording | measured | target |\n|---|---:|---:|\n"
        f"| {r['hours']:.3g} h of {r['channels']} ch @ {r['sfreq']:g} Hz ({r['frames']:,} frames, "
        f"`session.xdf` {r['session_xdf_mb']:.0f} MB), replayed at {_f(r['realtime_factor'], 0)}× | "
        f"RSS {_f(r['rss_after_warmup_mb'], 1)} → {_f(r['rss_end_mb'], 1)} MB | |\n"
        f"| RSS spread after {r['warmup_min']:g} min of data | {_f(r['rss_spread_after_warmup_mb'], 2)} MB | "
        f"≤ {r['target_spread_mb']:g} MB |\n"
        f"| RSS slope | {r['rss_slope_mb_per_hour']:+.2f} MB/h | |"
    )


def blocks(results: dict) -> dict[str, str]:
    """Return NAME -> rendered block text for every benchmark present in ``results``."""
    bench = results["benchmarks"]
    out: dict[str, str] = {}

    def ok(name: str) -> dict | list | None:
        entry = bench.get(name)
        return entry.get("results") if entry else None

    renderers: dict[str, Callable[[], str]] = {}
    if ok("startup") is not None:
        renderers["startup"] = lambda: render_startup(ok("startup"), ok("report"))
    if ok("features") is not None:
        renderers["features"] = lambda: render_features(ok("features"))
    if ok("latency") is not None:
        renderers["latency"] = lambda: render_latency(ok("latency"))
    if ok("replay") is not None:
        renderers["replay"] = lambda: render_replay(ok("replay"))
    if ok("memory") is not None:
        renderers["memory"] = lambda: render_memory(ok("memory"))
    for name, fn in renderers.items():
        out[name] = fn() + "\n\n" + conditions(results, name)
    return out


def render(text: str, results: dict) -> tuple[str, list[str]]:
    """Return ``text`` with every known block rendered, and the names of the blocks that changed."""
    changed = []
    for name, body in blocks(results).items():
        pattern = re.compile(rf"(<!-- bench:{name}:start -->\n)(.*?)(<!-- bench:{name}:end -->)", re.S)
        match = pattern.search(text)
        if match is None:
            continue
        new = match.group(1) + body + "\n" + match.group(3)
        if new != match.group(0):
            changed.append(name)
            text = text[: match.start()] + new + text[match.end() :]
    return text, changed


def render_file(results_path: Path, readme: Path, check: bool = False) -> list[str]:
    """Render ``readme`` from ``results_path`` in place (``check``: only report); return the changed blocks."""
    results = json.loads(Path(results_path).read_text())
    text, changed = render(readme.read_text(), results)
    if changed and not check:
        readme.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="the JSON file run_all.py wrote")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block would change")
    args = ap.parse_args(argv)
    changed = render_file(args.results, args.readme, check=args.check)
    print(f"{args.readme}: {'would change' if args.check else 'rendered'} {', '.join(changed) or 'nothing'}")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
