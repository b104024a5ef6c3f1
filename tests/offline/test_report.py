"""report.html: an mne.Report with the plots of a session, built from session.xdf."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from session_helpers import record_session  # noqa: E402  (tests/ is on sys.path)

from closedloop.config import load_pipeline
from closedloop.offline.report import write_report
from closedloop.session.summary import SessionStats

REPO = Path(__file__).resolve().parents[2]


def images(html: str) -> list[np.ndarray]:
    """The figures embedded in a report, decoded (MNE's logo left out)."""
    import matplotlib.image

    out = []
    for blob in re.findall(r"base64,([A-Za-z0-9+/=\s]{2000,})", html):
        raw = base64.b64decode(re.sub(r"\s", "", blob))
        if raw[:4] == b"\x89PNG":
            image = matplotlib.image.imread(io.BytesIO(raw), format="png")
            if image.shape[1] >= 800:  # our figures are 10 inches wide
                out.append(image)
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    resolved = load_pipeline(
        REPO / "pipelines" / "alpha_tacs.toml", {"controller.lower": 1.45, "controller.upper": 1.6}
    )
    rec, _, steps = record_session(folder, resolved, seconds=12.0, report=True)
    stats = SessionStats()
    for k in range(200):  # latencies of 1-3 ms, data ages of 5-15 ms
        stats.latency.add(0.001 + 0.00001 * k)
        stats.data_age.add(0.005 + 0.00005 * k)
    rec.close({"pipeline": "alpha_tacs", "frames": len(steps), "stop_reason": "duration reached"}, stats)
    return folder, resolved, rec


def test_report_shows_every_section_of_a_session(session):
    folder, _, rec = session
    assert rec.report_error is None and rec.report_path == folder / "report.html"
    html = (folder / "report.html").read_text()
    for title in (
        "Summary",
        "Features over time",
        "Stimulation",
        "Safety events",
        "Latency and data age",
        "Raw EEG excerpt",
        "Pipeline file",
        "Resolved pipeline",
    ):
        assert title in html, title
    assert "2 mA clamped to 1.5 mA" in html  # the recorded safety event, in its table
    assert "duration reached" in html and "[controller]" in html
    figures = images(html)
    assert len(figures) == 4  # features, stimulation, latency/age, raw EEG
    assert all(f.shape[0] > 200 and f.shape[1] > 500 and f.std() > 0.01 for f in figures)  # drawn, not blank


def test_report_without_live_timing_uses_recorded_latencies_or_says_so(session, tmp_path):
    folder, resolved, _ = session
    out = write_report(folder / "session.xdf", tmp_path / "r.html")  # pipeline from the file header
    html = out.read_text()
    assert "Latency and data age" in html and len(images(html)) == 4  # latencies of the applied stream
    assert "lower 1.45" not in html  # (thresholds are drawn, not written)
    from closedloop.recording import SessionRecording
    from closedloop.synthetic.eeg import SyntheticEEG

    gen = SyntheticEEG(n_channels=32)
    empty = SessionRecording(
        tmp_path / "empty",
        resolved,
        {"name": "e", "sfreq": 500.0, "ch_names": gen.ch_names},
        ("theta", "alpha", "theta_alpha"),
        min_free_bytes=0,
    )
    empty.close({})
    html = (tmp_path / "empty" / "report.html").read_text()
    assert "No safety events" in html and "no loop latency" in html
