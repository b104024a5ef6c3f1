"""Offline tuning: outcome metrics, grids, and sweeps on local processes and on a Dask cluster."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from closedloop.config import PipelineError, load_pipeline
from closedloop.offline.files import Event
from closedloop.offline.metrics import (
    dose_charge_C,
    duty_by_state,
    duty_cycle,
    outcomes,
    state_agreement,
    state_intervals,
    switches_per_minute,
    time_in_band,
)
from closedloop.offline.replay import replay
from closedloop.offline.sweep import expand_grid, parse_grid, sweep
from closedloop.synthetic.recording import write_synthetic_xdf

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipelines" / "alpha_tacs.toml"
GRID = {"controller.lower": [1.3, 1.45], "controller.onset": [2, 6]}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    paths = []
    for seed in (1, 2):
        path = folder / f"synthetic-{seed}.xdf"
        write_synthetic_xdf(path, 40.0, n_channels=32, sfreq=500.0, seed=seed, pain_tau_s=8.0)
        paths.append(path)
    return paths


# -- metrics --------------------------------------------------------------------


def test_metrics_on_a_known_trace():
    t = np.arange(120) * 0.5  # a frame every 0.5 s for 60 s
    amp = np.where(t < 30, 1.0, 0.0)
    on = (t >= 10) & (t < 20) | (t >= 40) & (t < 45)
    assert duty_cycle(t, amp) == pytest.approx(0.5)
    assert dose_charge_C(t, amp) == pytest.approx((59 * 0.5 + 0.25) / 1000)  # mA·s -> C
    assert switches_per_minute(t, on) == pytest.approx(4.0)
    x = np.sin(2 * np.pi * t / 60)
    assert time_in_band(t, x, -0.5, 0.5) == pytest.approx(np.mean(np.abs(x) <= 0.5))
    assert math.isnan(duty_cycle(np.zeros(0), np.zeros(0)))
    events = [
        Event(5.0, 20.0, "pain", "a"),
        Event(40.0, 0.0, "rest", "m"),
        Event(50.0, 0.0, "pain", "m"),
        Event(12.0, 3.0, "BAD_muscle", "a"),
        Event(1.0, 0.0, "blink", "m"),
    ]
    assert state_intervals(events) == [(5.0, 25.0, "pain")]  # point markers need named states
    iv = state_intervals(events, ["pain", "rest"], end_time=60.0)
    assert iv == [(5.0, 25.0, "pain"), (40.0, 50.0, "rest"), (50.0, 60.0, "pain")]
    by_state = duty_by_state(t, amp, iv)
    assert by_state["pain"] == pytest.approx(20 / 30) and by_state["rest"] == 0.0
    # stimulation wanted in pain: agreement where (amp > 0) == in pain
    want = ((t >= 5) & (t < 25)) | (t >= 50)
    assert state_agreement(t, amp, iv, ["pain"]) == pytest.approx(np.mean((amp > 0) == want))


def test_outcomes_of_a_replay(recordings):
    resolved = load_pipeline(PIPELINE)
    result = replay(recordings[0], resolved, keep="trace")
    row = outcomes(result.trace, "alpha", (1.3, 1.55), result.events, stim_states=["pain"], states=["rest"])
    tr = result.trace
    assert row["frames"] == len(tr) and row["duty_cycle"] == duty_cycle(tr.time, tr.allowed_amplitude_mA)
    assert row["dose_C"] == pytest.approx(result.summary["charge_C"], rel=0.02)  # safety's own dose account
    assert 0 <= row["agreement"] <= 1 and {"duty_in_pain", "duty_in_rest"} <= set(row)


# -- grids --------------------------------------------------------------------------


def test_parse_grid_reads_toml_values_and_rejects_bad_specs():
    grid = parse_grid(["controller.lower=1.2, 1.3", "controller.onset=2,4", "x.flag=true", "x.name=alpha,'b c'"])
    assert grid == {
        "controller.lower": [1.2, 1.3],
        "controller.onset": [2, 4],
        "x.flag": [True],
        "x.name": ["alpha", "b c"],
    }
    assert isinstance(grid["controller.onset"][0], int)
    assert len(expand_grid(grid)) == 8 and expand_grid({}) == [{}]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_grid(["controller.lower"])
    with pytest.raises(ValueError, match="twice"):
        parse_grid(["a=1", "a=2"])


def test_invalid_combinations_fail_before_anything_runs(recordings):
    with pytest.raises(PipelineError, match=r"controller\.lower.*1\.7.*controller\.upper"):
        sweep(recordings, PIPELINE, {"controller.lower": [1.3, 1.7]}, workers=1)
    with pytest.raises(PipelineError, match="controller.onsett"):
        sweep(recordings, PIPELINE, {"controller.onsett": [2]}, workers=1)


# -- sweeps -----------------------------------------------------------------------


def test_sweep_in_process_matches_single_replays(recordings, tmp_path):
    rows = sweep(
        recordings, PIPELINE, GRID, workers=1, states=["rest"], stim_states=["pain"], csv_path=tmp_path / "sweep.csv"
    )
    assert len(rows) == 8 and not any(r["error"] for r in rows)
    assert [(r["file"], r["controller.lower"], r["controller.onset"]) for r in rows] == [
        (str(f), lo, on) for f in recordings for lo in (1.3, 1.45) for on in (2, 6)
    ]
    one = rows[6]  # second file, lower 1.45, onset 2
    result = replay(
        recordings[1], load_pipeline(PIPELINE, {"controller.lower": 1.45, "controller.onset": 2}), keep="trace"
    )
    want = outcomes(result.trace, "alpha", (1.3, 1.55), result.events, ["rest"], ["pain"])
    for key, value in want.items():
        assert one[key] == pytest.approx(value, nan_ok=True), key
    with open(tmp_path / "sweep.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 8
    assert list(table[0])[:7] == [
        "file",
        "controller.lower",
        "controller.onset",
        "frames",
        "duration_s",
        "duty_cycle",
        "switches_per_min",
    ]
    assert {"dose_C", "time_in_band", "agreement", "duty_in_pain", "duty_in_rest"} <= set(table[0])
    assert float(table[6]["duty_cycle"]) == pytest.approx(one["duty_cycle"], rel=1e-9)


def test_sweep_on_a_dask_cluster_gives_the_same_rows(recordings):
    from distributed import LocalCluster

    grid = {"controller.lower": [1.3, 1.45]}
    local = sweep(recordings[:1], PIPELINE, grid, workers=1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = sweep(recordings[:1], PIPELINE, grid, scheduler=cluster.scheduler_address)
    assert len(remote) == 2
    for a, b in zip(local, remote):
        assert {k: v for k, v in a.items() if k != "realtime_factor"} == {
            k: v for k, v in b.items() if k != "realtime_factor"
        }


def test_cli_sweep_on_local_processes(recordings, tmp_path):
    out = tmp_path / "table.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "closedloop",
            "sweep",
            *map(str, recordings),
            "--pipeline",
            str(PIPELINE),
            "--grid",
            "controller.lower=1.3,1.45",
            "--grid",
            "controller.upper=1.6",
            "--workers",
            "2",
            "--stim-states",
            "pain",
            "--out",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 4 and all(r["error"] == "" for r in table)
    assert {r["controller.lower"] for r in table} == {"1.3", "1.45"}
    assert all(0 <= float(r["agreement"]) <= 1 for r in table)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "closedloop",
            "sweep",
            str(recordings[0]),
            "--pipeline",
            str(PIPELINE),
            "--grid",
            "controller.lower=abc",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "controller.lower" in bad.stderr
