"""pyxdf reads closedloop's session.xdf, live-recorded and replay-recorded, without a single warning.

pyxdf synchronises clocks and dejitters by default; it warns (through
``logging`` and, for some numpy paths, ``warnings``) when a stream has no
ClockOffset chunks, when its clock segments disagree with its data
segments, or when a footer contradicts the samples. Every stream of a
closedloop session carries ClockOffset chunks and a footer, as LabRecorder
writes them.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def load_quietly(path: Path, caplog) -> tuple[dict, dict]:
    """Load with pyxdf's defaults (clock sync, dejitter); fail on any warning; streams by name."""
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        streams, header = pyxdf.load_xdf(str(path))
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records if r.name.startswith("pyxdf")]
    assert messages == [], messages
    return {s["info"]["name"][0]: s for s in streams}, header


def role(stream: dict) -> str:
    """The ``desc/closedloop/role`` of a stream closedloop recorded."""
    return stream["info"]["desc"][0]["closedloop"][0]["role"][0]


def check_intact(path: Path, synced: dict) -> None:
    """Values as written, every stream with offsets and a footer; timestamps moved by the recorded offsets."""
    raw, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    raw = {s["info"]["name"][0]: s for s in raw}
    assert sorted(raw) == sorted(synced)
    for name, r in raw.items():
        s = synced[name]
        # fixed offsets at the start and the end at least; measured ones at the start and every 5 s
        assert len(r["clock_times"]) >= (1 if role(r) in ("eeg", "extra") else 2), name
        assert int(s["footer"]["info"]["sample_count"][0]) == len(r["time_stamps"]), name
        if isinstance(r["time_series"], list):
            assert s["time_series"] == r["time_series"], name
        else:
            np.testing.assert_array_equal(s["time_series"], r["time_series"], err_msg=name)
        if len(r["time_stamps"]):
            # offsets are constant over these short sessions: synced = raw + offset (dejitter moves < 1 ms)
            offset = float(np.mean(r["clock_values"]))
            np.testing.assert_allclose(s["time_stamps"], r["time_stamps"] + offset, atol=1e-3, err_msg=name)
    for name, r in raw.items():
        if role(r) not in ("eeg", "extra"):  # closedloop's own streams are stamped in the recording clock
            assert r["clock_values"] == [0.0] * len(r["clock_values"]), name


@pytest.mark.lsl
def test_pyxdf_reads_live_and_replayed_sessions_without_warnings(tmp_path, caplog):
    from closedloop.live.runtime import LiveSession

    caplog.set_level(logging.WARNING)
    overrides = {"controller.lower": 1.45, "controller.upper": 1.6, "controller.onset": 2}
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", overrides)
    live_dir, replay_dir = tmp_path / "live", tmp_path / "replay"
    steps: list = []
    summary = LiveSession(resolved, 4.0, live_dir, show_status=False, on_step=steps.append).run()  # over LSL
    assert summary["stop_reason"] == "duration reached" and summary["recording"]["error"] is None
    assert len(steps) > 40
    live = live_dir / "session.xdf"
    streams, header = load_quietly(live, caplog)
    check_intact(live, streams)
    eeg = next(s for s in streams.values() if role(s) == "eeg")
    assert len(eeg["time_stamps"]) > 1000 and "closedloop-features" in streams

    replay(live, resolved, out_dir=replay_dir, report=False)
    replayed = replay_dir / "session.xdf"
    streams_r, _ = load_quietly(replayed, caplog)
    check_intact(replayed, streams_r)
    # the replay's EEG carries the live pipeline offset as its clock offset: both files line up in pyxdf
    eeg_r = next(s for s in streams_r.values() if role(s) == "eeg")
    np.testing.assert_allclose(eeg_r["time_stamps"][[0, -1]], eeg["time_stamps"][[0, -1]], atol=2e-3)
    np.testing.assert_array_equal(eeg_r["time_series"], eeg["time_series"])
    np.testing.assert_allclose(
        streams_r["closedloop-features"]["time_stamps"], streams["closedloop-features"]["time_stamps"], atol=1e-3
    )
