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
    assert "(8 of 32 channels), mean removed, in µV." in html  # the raw excerpt's caption
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


def section(html: str, title: str) -> str:
    """The HTML of one section of the report."""
    start = html.index(f"<h2>{title}</h2>")
    return html[start : html.index("</section>", start)]


def test_format_value_keeps_four_significant_digits():
    from closedloop.offline.report import format_value

    cases = {
        0.003872000000000158: "0.003872",
        153.82176323620445: "153.8",
        8.850000000000023: "8.85",
        30.0: "30",
        1234.5678: "1235",
        -0.5: "-0.5",
        2.5e-7: "2.5e-07",
        12345678.9: "1.235e+07",
        0.0: "0",
        float("nan"): "–",
        None: "–",
        42: "42",
        np.int64(15000): "15000",
        np.float32(0.1): "0.1",
        True: "yes",
    }
    for value, text in cases.items():
        assert format_value(value) == text, value
    assert format_value({"median": 0.21345678, "p99": 1.9876543, "max": None}) == "median 0.2135, p99 1.988, max –"
    assert format_value({"dose": {"charge_C": 0.0012345678}}) == "dose (charge_C 0.001235)"
    assert format_value(["a", 1.23456]) == "a; 1.235"


def test_summary_numbers_are_rounded_and_flags_counted(session, tmp_path):
    folder, resolved, _ = session
    summary = {
        "pipeline": "alpha_tacs",
        "charge_C": 0.003872000000000158,
        "realtime_factor": 153.82176323620445,
        "latency_ms": {"median": 0.21345678901234, "p99": 1.98765432101234, "max": 3.0},
        "quality_flags": {"ARTIFACT": 12, "FLAT": 0, "EMG": 7},
        "frames": 100,
    }
    html = write_report(folder / "session.xdf", tmp_path / "r.html", summary, resolved).read_text()
    table = section(html, "Summary")
    assert "0.003872" in table and "153.8" in table and "median 0.2135, p99 1.988, max 3" in table
    significant = [len(n.replace(".", "").lstrip("0")) for n in re.findall(r"\d+\.\d+", table)]
    assert significant and max(significant) <= 4  # no 15-20 digit numbers
    flags = section(html, "Quality flags")
    assert re.search(r"ARTIFACT</th><td class='n'>12</td><td class='n'>12 %", flags)
    assert re.search(r"EMG</th><td class='n'>7</td><td class='n'>7 %", flags) and "FLAT" not in flags


def test_flags_are_counted_from_the_recording_when_the_summary_has_none(tmp_path):
    from types import SimpleNamespace

    from closedloop.recording import SessionRecording
    from closedloop.synthetic.eeg import SyntheticEEG
    from closedloop.types import Command, Quality

    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")
    gen = SyntheticEEG(n_channels=32)
    rec = SessionRecording(
        tmp_path / "s",
        resolved,
        {"name": "e", "sfreq": 500.0, "ch_names": gen.ch_names},
        ("theta", "alpha", "theta_alpha"),
        ["on"],
        min_free_bytes=0,
        report=False,
    )
    flags = [
        (Quality.ARTIFACT if i % 3 == 0 else Quality.OK) | (Quality.EMG if i % 5 == 0 else Quality.OK)
        for i in range(60)
    ]
    flags[7] |= Quality.NONFINITE | Quality.ARTIFACT
    off = Command(0.0, 10.0, False, 0.0)
    rec.on_steps(
        [
            SimpleNamespace(
                frame=SimpleNamespace(time=i * 0.05, values=np.zeros(3), flags=f, index=i), desired=off, allowed=off
            )
            for i, f in enumerate(flags)
        ]
    )
    rec.close()
    html = write_report(rec.path, tmp_path / "r.html", {}, resolved).read_text()
    table = section(html, "Quality flags")
    # frames 0, 3, ..., 57 (20) and frame 7: 21 ARTIFACT; 0, 5, ..., 55: 12 EMG; one NONFINITE
    assert "ARTIFACT</th><td class='n'>21</td><td class='n'>35 %" in table
    assert "EMG</th><td class='n'>12</td><td class='n'>20 %" in table
    assert "NONFINITE</th><td class='n'>1</td><td class='n'>1.667 %" in table
    assert "FLAT" not in table and "of 60" in table


def test_report_title_names_the_replayed_file_and_the_identity(tmp_path):
    from closedloop.offline.replay import replay
    from closedloop.recording import SessionRecording
    from closedloop.synthetic.eeg import SyntheticEEG
    from closedloop.synthetic.recording import write_synthetic_xdf

    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")
    src = tmp_path / "P07-rest.xdf"
    write_synthetic_xdf(src, 4.0, 32, 500.0, seed=2)
    replay(src, resolved, out_dir=tmp_path / "replayed", report=True)
    html = (tmp_path / "replayed" / "report.html").read_text()
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert title == "closedloop replay of P07-rest.xdf — alpha_tacs"
    assert "closedloop session" not in html
    # regenerated later from the file alone, the title still names it
    again = write_report(tmp_path / "replayed" / "session.xdf", tmp_path / "again.html").read_text()
    assert "<title>closedloop replay of P07-rest.xdf — alpha_tacs</title>" in again

    gen = SyntheticEEG(n_channels=32)
    rec = SessionRecording(
        tmp_path / "live",
        resolved,
        {"name": "e", "sfreq": 500.0, "ch_names": gen.ch_names},
        ("theta", "alpha", "theta_alpha"),
        min_free_bytes=0,
        identity={"participant": "P07", "session": "S2", "site": "Lab A"},
    )
    rec.close({"pipeline": "alpha_tacs"})
    html = (tmp_path / "live" / "report.html").read_text()
    assert "<title>closedloop session — alpha_tacs — participant P07, session S2</title>" in html
    assert "<th>site</th><td>Lab A</td>" in section(html, "Summary")


def test_identity_from_the_summary_when_the_file_has_none(session, tmp_path):
    folder, resolved, _ = session
    summary = {"pipeline": "alpha_tacs", "identity": {"participant": "P09", "session": "S1"}}
    html = write_report(folder / "session.xdf", tmp_path / "r.html", summary, resolved).read_text()
    assert "<title>closedloop session — alpha_tacs — participant P09, session S1</title>" in html
