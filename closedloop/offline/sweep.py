"""Offline tuning: replay recordings with every combination of parameter values.

A grid is a list of ``key=v1,v2,...`` specifications over dotted pipeline
keys (``controller.lower=1.2,1.3``); the sweep runs their cartesian product
on every file, each run a :func:`closedloop.offline.replay.replay` with the values
as ``load_pipeline`` overrides (validated like the file itself, before
anything runs), and collects one row of outcome metrics
(:func:`closedloop.offline.metrics.outcomes`) per run.

Runs go to a local process pool by default, or to an existing Dask
distributed cluster (``scheduler="tcp://host:8786"``), so a lab with
hundreds of recordings can use its cluster.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SweepRun", "parse_grid", "expand_grid", "run_one", "sweep", "write_csv"]


def _value(text: str) -> object:
    """Parse a grid value as TOML reads it (numbers, booleans, quoted strings); bare words stay strings."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_grid(specs: Iterable[str]) -> dict[str, list[object]]:
    """Parse ``["controller.lower=1.2,1.3", ...]`` into ``{key: [values]}``.

    Raises
    ------
    ValueError
        For a specification without ``=`` or without values, or a key given twice.
    """
    grid: dict[str, list[object]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ValueError(f"grid {spec!r}: expected KEY=VALUE[,VALUE...], e.g. controller.lower=1.2,1.3")
        if key in grid:
            raise ValueError(f"grid key {key!r} given twice")
        grid[key] = [_value(v) for v in values.split(",") if v.strip()]
    return grid


def expand_grid(grid: dict[str, Sequence[object]]) -> list[dict[str, object]]:
    """Return the cartesian product of a grid, as a list of override dicts (one empty dict for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass
class SweepRun:
    """One replay of a sweep: a file and a set of overrides."""

    file: str
    overrides: dict[str, object]
    pipeline: str
    feature: str | None = None
    band: tuple[float, float] | None = None
    states: list[str] | None = None
    stim_states: list[str] | None = None
    extra: dict = field(default_factory=dict)
    plant: str | None = None  # a fitted plant overlaid on every replay (closed loop offline)


def run_one(run: SweepRun) -> dict[str, object]:
    """Replay one file with one set of overrides; return its row (never raises: errors go in ``error``)."""
    from closedloop.config import load_pipeline
    from closedloop.offline.metrics import outcomes
    from closedloop.offline.replay import replay

    row: dict[str, object] = {"file": run.file, **run.overrides}
    try:
        resolved = load_pipeline(run.pipeline, run.overrides)
        result = replay(run.file, resolved, keep="trace", **({"plant": run.plant} if run.plant else {}))
        row.update(outcomes(result.trace, run.feature, run.band, result.events, run.states, run.stim_states))
        row["duration_s"] = result.duration_s
        row["charge_C_safety"] = result.summary.get("charge_C")
        row["stop_reason"] = result.summary.get("stop_reason")
        row["realtime_factor"] = result.realtime_factor
        row["error"] = ""
    except Exception as err:  # noqa: BLE001 - one bad file must not end a sweep of hundreds
        row["error"] = f"{type(err).__name__}: {err}"
    return row


def _default_target(resolved) -> tuple[str | None, tuple[float, float] | None]:
    ctl = resolved.config.controller
    feature = getattr(ctl, "feature", None)
    if hasattr(ctl, "lower") and hasattr(ctl, "upper"):
        return feature, (float(ctl.lower), float(ctl.upper))
    return feature, None


def sweep(
    files: Sequence[str | os.PathLike],
    pipeline: str | os.PathLike,
    grid: dict[str, Sequence[object]],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    band: tuple[float, float] | None = None,
    states: Sequence[str] | None = None,
    stim_states: Sequence[str] | None = None,
    csv_path: str | os.PathLike | None = None,
    plant: str | os.PathLike | None = None,
) -> list[dict]:
    """Replay every file with every grid combination, in parallel.

    Parameters
    ----------
    files : list of str or Path
        Recordings (XDF or anything MNE reads).
    pipeline : str or Path
        The pipeline file the grid overrides.
    grid : dict of str to list
        Dotted keys and their values (see :func:`parse_grid`).
    scheduler : str, optional
        Address of a Dask distributed scheduler; by default a local process pool.
    workers : int, optional
        Local processes (default: all cores); 1 runs in this process.
    progress : bool
        Show a progress bar over runs.
    band : (low, high), optional
        Target band of the controlled feature for ``time_in_band``; default
        the pipeline's own ``controller.lower``/``upper`` (before overrides).
    states, stim_states : list of str, optional
        Labels naming states, and the states that call for stimulation (see
        :func:`closedloop.offline.metrics.outcomes`).
    csv_path : str or Path, optional
        Write the table there.
    plant : str or Path, optional
        A fitted plant (``closedloop identify``) overlaid on every replay, so
        each combination is evaluated in closed loop offline.

    Returns
    -------
    list of dict
        One row per run, in (file, combination) order.

    Raises
    ------
    closedloop.config.PipelineError
        If any combination is invalid (checked before anything runs).
    FileNotFoundError
        If a file does not exist.
    """
    from closedloop.config import PipelineError, load_pipeline

    combos = expand_grid(grid)
    base = load_pipeline(pipeline)
    for combo in combos:
        try:
            load_pipeline(pipeline, combo)
        except PipelineError as err:
            raise PipelineError(err.path, [f"grid combination {combo}: {p}" for p in err.problems]) from None
    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise FileNotFoundError(f"recordings not found: {missing}")
    feature, default_band = _default_target(base)
    runs = [
        SweepRun(
            str(f),
            combo,
            str(Path(pipeline).resolve()),
            feature,
            band or default_band,
            list(states) if states else None,
            list(stim_states) if stim_states else None,
            plant=str(plant) if plant is not None else None,
        )
        for f in files
        for combo in combos
    ]
    rows: list[dict | None] = [None] * len(runs)
    bar = _Bar(progress, len(runs))
    try:
        if scheduler is not None:
            from distributed import Client
            from distributed import as_completed as dask_completed

            with Client(scheduler, timeout="30s") as client:
                futures = client.map(run_one, runs, pure=False)
                index = {f.key: i for i, f in enumerate(futures)}
                for fut in dask_completed(futures):
                    rows[index[fut.key]] = fut.result()
                    bar.advance()
        elif (workers or os.cpu_count() or 1) <= 1 or len(runs) == 1:
            for i, run in enumerate(runs):
                rows[i] = run_one(run)
                bar.advance()
        else:
            import multiprocessing

            n = min(workers or os.cpu_count() or 1, len(runs))
            with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(run_one, run): i for i, run in enumerate(runs)}
                for fut in as_completed(futures):
                    rows[futures[fut]] = fut.result()
                    bar.advance()
    finally:
        bar.close()
    out = [r for r in rows if r is not None]
    if csv_path is not None:
        write_csv(out, csv_path, list(grid))
    return out


_METRIC_ORDER = (
    "frames",
    "duration_s",
    "duty_cycle",
    "switches_per_min",
    "dose_C",
    "charge_C_safety",
    "time_in_band",
    "agreement",
)


def write_csv(rows: Sequence[dict], path: str | os.PathLike, params: Sequence[str] = ()) -> Path:
    """Write sweep rows as CSV: file, parameters, metrics, then the rest; NaN as empty."""
    keys: list[str] = ["file", *params]
    for name in _METRIC_ORDER:
        if any(name in r for r in rows):
            keys.append(name)
    rest = sorted({k for r in rows for k in r} - set(keys) - {"error", "stop_reason", "realtime_factor"})
    keys += rest + ["stop_reason", "realtime_factor", "error"]
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _cell(r.get(k)) for k in keys})
    return path


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return value


class _Bar:
    def __init__(self, enabled: bool, total: int) -> None:
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task("runs", total=total)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
