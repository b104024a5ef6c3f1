"""The study commands without a live stream: refusals before anything starts, ``sessions``, ``report``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from closedloop.cli import main
from closedloop.config import load_pipeline
from closedloop.study import Ledger, load_study

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipelines" / "alpha_tacs.toml"
STUDY = """\
[study]
name = "cli-pilot"
root = "data"
ledger_timeout_s = 0.5

[rules.max_sessions_per_week]
value = 5
source = "protocol of the test study: five sessions a week"
"""


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def test_a_corrupted_ledger_refuses_the_run_before_anything_starts(capsys, study_file, tmp_path):
    ledger = tmp_path / "data" / "ledger.sqlite"
    ledger.parent.mkdir()
    ledger.write_bytes(b"not a database, a text file someone saved over the ledger\n" * 100)
    code, _, err = cli(capsys, "run", str(PIPELINE), "--study", str(study_file), "--participant", "01", "-q")
    assert code == 3
    assert err.startswith("error: ledger ") and "cannot be read" in err and "refusing to start" in err
    assert err.count("\n") == 1
    assert not any((tmp_path / "data").glob("sub-*")), "nothing may be written for a refused session"


def test_a_run_in_a_study_needs_a_participant(capsys, study_file):
    code, _, err = cli(capsys, "run", str(PIPELINE), "--study", str(study_file), "-q")
    assert code == 2 and "--participant: required for a session of study 'cli-pilot'" in err


def test_a_study_beside_the_pipeline_is_found(capsys, tmp_path):
    project = tmp_path / "project"
    (project / "pipelines").mkdir(parents=True)
    pipeline = project / "pipelines" / "alpha_tacs.toml"
    pipeline.write_text(PIPELINE.read_text())
    (project / "study.toml").write_text('[study]\nname = "found"\nroot = "data"\n[rules.oops_per_day]\n')
    code, _, err = cli(capsys, "run", str(pipeline), "--participant", "01", "-q")
    assert code == 2 and "invalid study file" in err and str(project / "study.toml") in err


def test_sessions_and_the_longitudinal_report(capsys, study_file, tmp_path, monkeypatch):
    study = load_study(study_file)
    resolved = load_pipeline(PIPELINE)
    t = [1_900_000_000.0]
    ledger = Ledger(study.ledger_path, now=lambda: t[0])
    charges = [1.2, 2.4, 0.6]
    for i, charge in enumerate(charges, 1):
        admitted = ledger.admit(resolved, "01", str(i), 1200.0, [], tmp_path / str(i))
        t[0] += 1300.0
        ledger.finish(
            admitted.entry_id,
            {
                "stop_reason": "duration reached" if i < 3 else "operator stop",
                "dose": {"charge_C": charge, "stim_time_s": 900.0},
                "safety_events": {"clamp": i},
                "features": {"alpha": {"mean": 1.4 + 0.1 * i, "std": 0.05, "n": 2000}},
            },
            {"n": 4, "mean": 6.0 - i, "min": 5.0 - i, "max": 7.0 - i, "first": 7.0 - i, "last": 5.0 - i},
        )
        t[0] += 86400.0
    ledger.admit(resolved, "02", "1", 600.0, [], tmp_path / "other")
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)  # the study is found as ./study.toml
    code, out, _ = cli(capsys, "sessions", "--participant", "01")
    assert code == 0
    rows = [line for line in out.splitlines() if "alpha_tacs" in line]
    assert len(rows) == 3 and "operator stop" in rows[2] and "charge_C 2.4" in rows[1]
    code, out, _ = cli(capsys, "sessions")
    assert code == 0 and "counted in full" in out  # participant 02's session never closed
    code, _, err = cli(capsys, "report", "--participant", "01")
    assert code == 0, err
    page = (study.root / "sub-01" / "report-sub-01.html").read_text()
    assert "participant 01" in page and page.count("<img") == 3  # dose, ratings, features
    assert "total charge_C</th><td>4.2 C" in page and "operator stop" in page
    code, _, err = cli(capsys, "report", "--participant", "03")
    assert code == 2 and "no sessions" in err


def test_sessions_without_a_study(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "sessions")
    assert code == 2 and "no study: give --study FILE" in err
    (tmp_path / "study.toml").write_text(STUDY)
    code, _, err = cli(capsys, "sessions")
    assert code == 3 and "no ledger yet" in err
    assert os.path.exists(tmp_path / "study.toml")
