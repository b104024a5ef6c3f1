"""Run-to-run spread of the headline figures of two or more ``run_all.py`` results files.

A figure measured once on a shared machine says little on its own: this
script reads the same headline figures (those the README holds against the
targets) from each results file and prints them side by side, with the
spread ``(max - min) / min`` and, per target, whether every run met it.

Usage::

    python benchmarks/run_all.py --json run1.json
    python benchmarks/run_all.py --json run2.json
    python benchmarks/spread.py run1.json run2.json [--json spread.json] [--readme README.md]

``--readme`` renders the table into README.md between
``<!-- bench:spread:start -->`` and ``<!-- bench:spread:end -->``; the figures
there are never edited by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from render_readme import machine_label, speed_label  # the README's names for a run's machine (same folder)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Headline:
    """One headline figure: where it sits in a results file and the target it is held against."""

    label: str
    unit: str
    get: Callable[[dict], float | None]
    target: float | None = None
    higher_is_better: bool = False
    in_quick_runs: bool = True  #: whether ``run_all.py --quick`` measures it too
    as_range: bool = False  #: a difference near zero (an overhead over a floor): spread shown as max - min

    def meets(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (None: no target or no value)."""
        if self.target is None or value is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


def _results(results: dict, name: str):
    """Return the results of benchmark ``name`` in a run_all file (None if it is missing or failed)."""
    entry = results.get("benchmarks", {}).get(name)
    return None if not entry or "error" in entry else entry.get("results")


def _number(node, keys) -> float | None:
    """Return ``node[k0][k1]...`` as a float; None if a key is missing or the value is not a number."""
    for key in keys:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def _path(*keys: str | int) -> Callable[[dict], float | None]:
    """Getter of ``results["benchmarks"][keys[0]]["results"][keys[1]]...``; None if any key is missing."""
    return lambda results: _number(_results(results, keys[0]), keys[1:])


def _latency(channels: int, *keys: str) -> Callable[[dict], float | None]:
    """Getter of a figure of the latency run with ``channels`` channels."""

    def get(results: dict) -> float | None:
        runs = _results(results, "latency") or []
        run = next((r for r in runs if r.get("config", {}).get("channels") == channels), None)
        return None if run is None else _number(run, keys)

    return get


HEADLINES: tuple[Headline, ...] = (
    Headline("`closedloop --help` (best)", "s", _path("startup", "help", "best_s"), 0.3),
    Headline("`closedloop check` (best)", "s", _path("startup", "check", "best_s"), 0.5),
    Headline("first frame after `closedloop run` (median of 3)", "s", _path("startup", "run", "first_frame_s"), 2.0),
    Headline("first frame, LSL stream already running", "s", _path("startup", "run_lsl", "first_frame_s"), 2.0),
    Headline("`report.html` after `summary.json`", "s", _path("startup", "run", "report_s")),
    Headline(
        "step + all quality checks, 64 ch @ 1 kHz",
        "× scipy",
        _path("features", "summary", "64ch@1000Hz", "ratio_vs_scipy_welch"),
        100.0,
        True,
    ),
    Headline("… its median", "µs", _path("features", "summary", "64ch@1000Hz", "median_us")),
    Headline(
        "step + all quality checks, 256 ch @ 2 kHz",
        "× scipy",
        _path("features", "summary", "256ch@2000Hz", "ratio_vs_scipy_welch"),
        200.0,
        True,
    ),
    Headline("… its median", "µs", _path("features", "summary", "256ch@2000Hz", "median_us")),
    Headline("… scipy welch at 256 ch", "µs", _path("features", "runs", 1, "methods", "scipy welch", "median_us")),
    Headline("replay in memory", "× real time", _path("replay", "realtime_factor_in_memory"), 3000.0, True),
    Headline("replay from XDF", "× real time", _path("replay", "realtime_factor"), 1500.0, True),
    Headline(
        "replay writing session.xdf", "× real time", _path("replay", "realtime_factor_with_recording"), 1000.0, True
    ),
    Headline("loop over the LSL floor, 64 ch (median)", "ms", _latency(64, "overhead_median_ms"), 0.2, as_range=True),
    Headline('… `poll = "busy"`', "ms", _latency(64, "busy", "overhead_median_ms"), 0.1, as_range=True),
    Headline("… the loop's own share, busy, p99", "ms", _latency(64, "busy", "in_process", "p99_ms"), 1.0),
    Headline("… the LSL floor itself (median)", "ms", _latency(64, "floor", "median_ms")),
    Headline("… compute without LSL, at the stream's pace ÷ back to back", "×", _latency(64, "pace", "ratio")),
    Headline("… the same, computing between chunks instead of idling", "×", _latency(64, "pace", "ratio_computing")),
    Headline("… the same, a second pipeline fed between chunks", "×", _latency(64, "pace", "ratio_warm")),
    Headline(
        "loop over the LSL floor, 256 ch (median)",
        "ms",
        _latency(256, "overhead_median_ms"),
        0.2,
        in_quick_runs=False,
        as_range=True,
    ),
    Headline(
        '… `poll = "busy"`', "ms", _latency(256, "busy", "overhead_median_ms"), 0.1, in_quick_runs=False, as_range=True
    ),
    Headline(
        "… the loop's own share, busy, p99",
        "ms",
        _latency(256, "busy", "in_process", "p99_ms"),
        1.0,
        in_quick_runs=False,
    ),
    Headline("… the LSL floor itself (median)", "ms", _latency(256, "floor", "median_ms"), in_quick_runs=False),
    Headline("RSS spread over 8 h with recording", "MB", _path("memory", "rss_spread_after_warmup_mb"), 5.0),
)


def spread(runs: list[dict]) -> list[dict]:
    """Return one row per headline: each run's value, the spread and whether every run met the target.

    ``spread`` is ``(max - min) / min`` over the runs that have the figure
    (None with fewer than two, when the smallest is not above 0, or for a
    difference near zero such as an overhead over a floor: those are shown by
    their ``range``, max - min).
    """
    rows = []
    for h in HEADLINES:
        values = [h.get(r) for r in runs]
        have = [v for v in values if v is not None]
        lo, hi = (min(have), max(have)) if have else (None, None)
        rel = (hi - lo) / lo if len(have) >= 2 and lo > 0 and not h.as_range else None
        met = [h.meets(v) for v in have]
        rows.append(
            {
                "label": h.label,
                "unit": h.unit,
                "target": h.target,
                "higher_is_better": h.higher_is_better,
                "values": values,
                "min": lo,
                "max": hi,
                "spread": rel,
                "range": hi - lo if len(have) >= 2 else None,
                "met_in_every_run": None if h.target is None or not have else all(met),
                "met_in_runs": None if h.target is None else sum(bool(m) for m in met),
            }
        )
    return rows


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}" if abs(x) < 1 else f"{x:.2f}"


def _commit_label(sha: object, dirty: object) -> str:
    """Name a commit as the run lines do: its short sha, and whether the tree had local changes."""
    return str(sha or "unknown")[:10] + (" + local changes" if dirty else "")


def _run_line(k: int, results: dict) -> str:
    m, c = results.get("machine", {}), results.get("commit", {})
    load = results.get("load_before") or [float("nan")]
    quick = ", quick mode" if results.get("quick") else ""
    # after ``run_all.py --only ... --update`` the benchmarks of one file come from more than one commit
    by_commit: dict[str, list[str]] = {}
    for name, bench in results.get("benchmarks", {}).items():
        by_commit.setdefault(_commit_label(bench.get("commit"), bench.get("dirty")), []).append(name)
    if len(by_commit) > 1:
        where = "commits " + ", ".join(f"`{label}` ({', '.join(names)})" for label, names in by_commit.items())
        when = f"last updated {results.get('started', '?')}"
    else:
        where, when = f"commit `{_commit_label(c.get('sha'), c.get('dirty'))}`", str(results.get("started", "?"))
    speed = speed_label(results)  # or "machine speed not recorded" (files written before it was)
    return f"run {k}: {where}, {when}, {machine_label(m)}, load {load[0]:.2f} at the start; {speed}{quick}"


def render(runs: list[dict], rows: list[dict]) -> str:
    """Markdown table of the rows and one line per run saying where and when it was measured."""
    head = "| figure | target | " + " | ".join(f"run {k}" for k in range(1, len(runs) + 1)) + " | spread | met |"
    lines = [head, "|---|---:|" + "---:|" * len(runs) + "---:|---|"]
    for row in rows:
        target = ""
        if row["target"] is not None:
            target = f"{'≥' if row['higher_is_better'] else '≤'} {row['target']:g} {row['unit']}"
        values = " | ".join(_num(v) for v in row["values"])
        if row["spread"] is not None:
            rel = f"{100 * row['spread']:.0f} %"
        elif row["range"] is not None:
            rel = f"{_num(row['range'])} {row['unit']}"
        else:
            rel = "—"
        if row["target"] is None:
            met = ""
        elif row["met_in_every_run"] and None not in row["values"]:
            met = "every run"
        else:
            met = f"{row['met_in_runs']} of {len(runs)}"
        unit = "" if row["target"] is not None else f", {row['unit']}"
        lines.append(f"| {row['label']}{unit} | {target} | {values} | {rel} | {met} |")
    return "\n".join(lines + [""] + [f"- {_run_line(k, r)}" for k, r in enumerate(runs, 1)])


def render_readme(text: str, block: str) -> str:
    """Return ``text`` with the spread block replaced by ``block`` (unchanged if there is no block)."""
    pattern = re.compile(r"(<!-- bench:spread:start -->\n)(.*?)(<!-- bench:spread:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(3), text, count=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="results files of run_all.py, in run order")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--readme", type=Path, help="render the table into this README's spread block")
    args = ap.parse_args(argv)
    try:
        runs = [json.loads(p.read_text()) for p in args.results]
    except (OSError, ValueError) as err:
        print(f"spread.py: cannot read a results file: {err}", file=sys.stderr)
        return 2
    rows = spread(runs)
    table = render(runs, rows)
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": [str(p) for p in args.results], "rows": rows}, indent=1))
    if args.readme is not None:
        text = args.readme.read_text()
        new = render_readme(text, table)
        if new == text and "<!-- bench:spread:start -->" not in text:
            print(f"spread.py: {args.readme} has no spread block", file=sys.stderr)
            return 2
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
