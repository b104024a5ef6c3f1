"""A live synthetic study session with ratings: admitted, run, ledgered, exported to BIDS and read back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pylsl
import pytest

from closedloop.config import load_pipeline
from closedloop.live.runtime import LiveSession
from closedloop.recording.reader import XDFReader
from closedloop.study import load_study
from closedloop.study.bids import export_sessions, session_events
from closedloop.study.session import StudyRun

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "study"))
from bids_helpers import assert_events_intact, read_back, validate  # noqa: E402

pytest.importorskip("mne_bids")

STUDY = """\
[study]
name = "live-pilot"
root = "data"

[rules.min_session_interval_h]
value = 20
source = "protocol of the test study: one session a day"
"""


class Ratings:
    """An LSL outlet of pain ratings (0-10), one every 0.4 s, until stopped."""

    def __init__(self, name: str) -> None:
        info = pylsl.StreamInfo(name, "Ratings", 1, pylsl.IRREGULAR_RATE, pylsl.cf_float32, f"{name}-src")
        self.outlet = pylsl.StreamOutlet(info)
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.4):
            self.outlet.push_sample([float(3 + self.sent % 5)])
            self.sent += 1

    def __enter__(self) -> Ratings:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_live_study_session_is_ledgered_and_exports_to_valid_bids(tmp_path, unique_name):
    (tmp_path / "study.toml").write_text(STUDY)
    study = load_study(tmp_path / "study.toml")
    resolved = load_pipeline(
        REPO / "pipelines" / "alpha_tacs.toml",
        {
            "controller.lower": 1.45,
            "controller.upper": 1.6,
            "recording.streams": [{"name": unique_name, "required": True}],
            "recording.report": False,
        },
    )
    run = StudyRun.admit(study, resolved, "05", None, 6.0)
    with Ratings(unique_name) as ratings:
        summary = LiveSession(run.tighten(resolved), 6.0, run.folder, show_status=False, identity=run.identity).run()
    run.finish(summary)
    assert summary["stop_reason"] == "duration reached" and ratings.sent > 0

    (entry,) = run.ledger.sessions("05")
    assert entry.status == "finished" and entry.session == "1"
    assert entry.dose["charge_C"] == pytest.approx(summary["charge_C"]) and entry.stop_reason == "duration reached"
    assert 5 <= entry.ratings["n"] <= ratings.sent and 3.0 <= entry.ratings["mean"] <= 7.0
    assert Path(entry.folder).parent == study.root / "sub-05" / "ses-1"

    root = tmp_path / "bids"
    (item,) = export_sessions([run.folder], root)
    assert (item.subject, item.session) == ("05", "1")
    validate(root)
    raw = read_back(root, "05", "1")
    reader = XDFReader(run.folder / "session.xdf")
    (eeg,) = [s for s in reader.streams.values() if s.desc("closedloop/role") == "eeg"]
    _, stamps = reader.read_stream(eeg.stream_id)
    t0 = float(stamps[0]) + float(eeg.desc("closedloop/pipeline_offset") or 0.0)
    events = session_events(reader, t0, (raw.n_times - 1) / raw.info["sfreq"], "tes")
    assert_events_intact(raw, events)
    kinds = [e.trial_type for e in events]
    assert kinds.count("stim/on") >= 1 and kinds.count("rating") >= 5
    ratings_back = [
        float(x["rating"]) for d, x in zip(raw.annotations.description, raw.annotations.extras) if d == "rating"
    ]
    assert set(ratings_back) <= {3.0, 4.0, 5.0, 6.0, 7.0}


def test_cli_run_in_a_study_refuses_the_second_session_of_the_day(tmp_path):
    (tmp_path / "study.toml").write_text(STUDY)
    pipeline = REPO / "pipelines" / "alpha_tacs.toml"

    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300"}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "closedloop", *args],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
            env=env,
        )

    first = cli("run", str(pipeline), "--study", "study.toml", "--participant", "09", "--duration", "3", "-q")
    assert first.returncode == 0, first.stderr
    assert "sub-09 ses-1 admitted" in first.stderr
    second = cli("run", str(pipeline), "--study", "study.toml", "--participant", "09", "--duration", "3", "-q")
    assert second.returncode == 3
    assert "refused by min_session_interval_h = 20 h" in second.stderr and "protocol of the test study" in second.stderr
    listing = cli("sessions", "--participant", "09")
    assert listing.returncode == 0 and "finished" in listing.stdout and "duration reached" in listing.stdout
    report = cli("report", "--participant", "09")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "data" / "sub-09" / "report-sub-09.html").is_file()
