"""StreamInlets: the other LSL streams of a live session, resolved together and recorded with clock offsets."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from session_helpers import eeg_desc  # noqa: E402 (tests/ on sys.path)

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.recording import SessionRecording  # noqa: E402
from closedloop.recording.inlets import StreamInlets  # noqa: E402
from closedloop.sources.lsl import SourceError  # noqa: E402
from closedloop.synthetic.eeg import SyntheticEEG  # noqa: E402

pytestmark = pytest.mark.lsl
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resolved():
    return load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")


def recording(folder, resolved) -> SessionRecording:
    gen = SyntheticEEG(n_channels=4)
    return SessionRecording(folder, resolved, eeg_desc(gen), ("alpha",), [], min_free_bytes=0, report=False)


def outlets(base: str):
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(f"{base}-m", "Markers", 1, 0, pylsl.cf_string, f"{base}-m-sid"))
    ratings = pylsl.StreamOutlet(pylsl.StreamInfo(f"{base}-r", "Ratings", 2, 0, pylsl.cf_double64, f"{base}-r-sid"))
    own = pylsl.StreamOutlet(pylsl.StreamInfo(f"{base}-o", "Markers", 1, 0, pylsl.cf_string, f"{base}-o-sid"))
    return markers, ratings, own


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_all_streams_are_resolved_together_and_recorded_with_clock_offsets(tmp_path, resolved, unique_name):
    markers, ratings, own = outlets(unique_name)
    rec = recording(tmp_path, resolved)
    queries = [
        {"name": f"{unique_name}-m"},
        {"name": f"{unique_name}-r", "source_id": f"{unique_name}-r-sid"},
        {"name": f"{unique_name}-o", "source_id": f"{unique_name}-o-sid", "own": True},
    ]
    inlets = StreamInlets(rec, queries, resolve_timeout_s=10.0, required=True).start()
    assert inlets.names == [f"{unique_name}-m", f"{unique_name}-r", f"{unique_name}-o"]  # query order
    stamp = pylsl.local_clock()
    markers.push_sample(["blink"], stamp)
    ratings.push_chunk([[3.5, 1.0], [7.0, 2.0]], [stamp, stamp + 0.5])
    own.push_sample(["trial 1"], stamp + 1.0)
    wait_for(lambda: sum(inlets.samples.values()) == 4)
    inlets.stop()
    assert inlets.error is None
    rec.close()
    streams, _ = pyxdf.load_xdf(str(rec.path), synchronize_clocks=False, dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert by_name[f"{unique_name}-m"]["time_series"] == [["blink"]]
    np.testing.assert_array_equal(by_name[f"{unique_name}-m"]["time_stamps"], [stamp])
    np.testing.assert_array_equal(by_name[f"{unique_name}-r"]["time_series"], [[3.5, 1.0], [7.0, 2.0]])
    np.testing.assert_array_equal(by_name[f"{unique_name}-r"]["time_stamps"], [stamp, stamp + 0.5])
    assert by_name[f"{unique_name}-o"]["time_series"] == [["trial 1"]]
    for k in "mro":  # the first offset is measured by the pulling thread: each stream has one
        s = by_name[f"{unique_name}-{k}"]
        assert len(s["clock_times"]) >= 1
        assert all(abs(v) < 0.01 for v in s["clock_values"])  # the same machine: offsets near 0
    del markers, ratings, own


def test_a_missing_stream_fails_with_one_line_or_is_skipped(tmp_path, resolved, unique_name):
    markers, _ratings, _own = outlets(unique_name)
    queries = [{"name": f"{unique_name}-m"}, {"name": f"{unique_name}-absent"}]
    rec = recording(tmp_path / "a", resolved)
    with pytest.raises(SourceError, match=f"no LSL stream matching .*{unique_name}-absent") as err:
        StreamInlets(rec, queries, resolve_timeout_s=1.0, required=True).start()
    assert "\n" not in str(err.value)
    rec.close()
    rec = recording(tmp_path / "b", resolved)
    inlets = StreamInlets(rec, queries, resolve_timeout_s=1.0).start()
    assert inlets.names == [f"{unique_name}-m"]  # the one found is recorded
    markers.push_sample(["go"])
    wait_for(lambda: inlets.samples[f"{unique_name}-m"] == 1)
    inlets.stop()
    rec.close()
