"""Pain ratings live over LSL: recorded, aligned to frames, used by a rule controller, replayed to the same values.

Also the ``closedloop rate`` console prompt as a real subprocess publishing what is typed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.metrics import Trace  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402
from closedloop.pain.ratings import ALIGNED_STREAM, ratings_from_recording  # noqa: E402
from closedloop.recording.reader import XDFReader  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

PIPELINE = """
[pipeline]
name = "rated_live"
[source]
kind = "synthetic"
n_channels = 16
sfreq = 250.0
seed = 5
chunk_size = 5
[features]
channels = ["P3", "Pz", "P4"]
window_samples = 250
hop_samples = 25
bands = {{ theta = [4.0, 8.0], alpha = [8.0, 12.0] }}
ratios = {{}}
[controller]
kind = "rule"
on_when = "rating >= 5 and alpha < 3"
off_when = "rating < 3"
amplitude_mA = 1.0
frequency_Hz = 10.0
[ratings]
stream = {{ name = "{name}", required = true }}
[device]
profile = "sim_tacs"
"""


@pytest.mark.lsl
def test_live_ratings_reach_the_frames_and_the_controller_and_replay_to_the_same_values(tmp_path, unique_name):
    from closedloop.live.runtime import LiveSession

    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(name=unique_name))
    resolved = load_pipeline(path)
    info = pylsl.StreamInfo(unique_name, "Markers", 1, 0.0, pylsl.cf_string, unique_name)
    outlet = pylsl.StreamOutlet(info)
    script = ["2", "rating: 7", "oops", "8.5", "1", "6"]  # one every 8 frames; "oops" is not a rating
    sent = []

    def on_step(step):  # from the loop thread: the participant rates as the session runs
        if step.frame.index % 8 == 0 and len(sent) < len(script) and outlet.have_consumers():
            outlet.push_sample([script[len(sent)]], pylsl.local_clock())
            sent.append(script[len(sent)])

    summary = LiveSession(resolved, 6.0, tmp_path / "live", show_status=False, on_step=on_step).run()
    assert summary["stop_reason"] == "duration reached", summary["stop_reason"]
    assert sent == script  # every rating was sent while the session ran
    assert summary["ratings"]["accepted"] == 5 and summary["ratings"]["rejected"] == 1
    xdf = tmp_path / "live" / "session.xdf"
    reader = XDFReader(xdf)
    assert [r[0] for r in reader.find(name=unique_name)[0].strings] == script  # recorded as received
    aligned = ratings_from_recording(xdf, resolved.config.ratings)
    assert aligned.source == "aligned" and aligned.values.tolist() == [2.0, 7.0, 8.5, 1.0, 6.0]
    assert reader.find(name=ALIGNED_STREAM)
    live = Trace.from_xdf(xdf)
    rating = live.feature("rating")
    assert set(rating[np.isfinite(rating)]) <= {2.0, 7.0, 8.5, 1.0, 6.0} and np.isfinite(rating).any()
    # the controller read the ratings: off before any and at 2, on from 7, off from 1, on again from 6
    assert np.array_equal(live.desired_on, np.nan_to_num(rating) >= 5)
    assert live.desired_on.any() and not live.desired_on.all()
    # a replay of session.xdf feeds the same ratings to the same frames
    rep = replay(xdf, resolved, keep="trace")
    for name in ("rating", "rating_age_s"):
        assert np.array_equal(rep.trace.feature(name), live.feature(name), equal_nan=True), name
    assert np.array_equal(rep.trace.desired_on, live.desired_on)


@pytest.mark.lsl
def test_the_rate_prompt_publishes_what_is_typed(unique_name):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "closedloop", "rate", "--stream", unique_name, "--wait-consumer", "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        proc.stdin.write("3\n11\nouch\n\n7.5\nq\n9\n")
        proc.stdin.close()
        found = pylsl.resolve_bypred(f"name='{unique_name}'", 1, 60.0)
        assert found, "the rate prompt did not publish its stream"
        inlet = pylsl.StreamInlet(found[0])
        inlet.open_stream(timeout=30.0)
        got = []
        while len(got) < 2:
            sample, _ = inlet.pull_sample(timeout=30.0)
            assert sample is not None, f"received only {got}"
            got.append(sample[0])
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert got == ["3", "7.5"]  # 11 is off the scale, "ouch" is not a number, q stops before 9
    assert proc.returncode == 0
    assert "'11' is off the scale" in err and "'ouch' is not a rating" in err and "2 rating(s) sent" in err
    assert found[0].type() == "Markers" and found[0].channel_format() == pylsl.cf_string
