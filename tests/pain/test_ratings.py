"""Pain ratings as data: parsing, alignment to frames, recording, and replay with the live values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pain_helpers import generator, load, write_pipeline

from closedloop.offline.metrics import Trace
from closedloop.offline.replay import replay
from closedloop.pain.ratings import ALIGNED_STREAM, RatingTrack, parse_rating, ratings_from_recording
from closedloop.recording.reader import XDFReader
from closedloop.recording.xdf import XDFWriter
from closedloop.synthetic.session import RatingPlan, simulate_session


@pytest.mark.parametrize(
    "sample, value",
    [
        ("7", 7.0),
        (" 7.5 ", 7.5),
        ("rating: 6", 6.0),
        ("NRS=3", 3.0),
        ('{"rating": 4}', 4.0),
        ('{"vas": 55.5, "note": "x"}', 55.5),
        (8, 8.0),
        (np.float32(2.5), 2.5),
        ("pain 3 of 10", None),  # two numbers: ambiguous
        ("", None),
        ("high", None),
        ('{"mood": 3}', None),
        ("nan", None),
        (float("inf"), None),
        (True, None),
    ],
)
def test_parse_rating(sample, value):
    assert parse_rating(sample) == value


def test_the_latest_rating_at_each_frame_with_its_age():
    track = RatingTrack((0.0, 10.0))
    assert track.add(10.0, 3.0) == 10.0
    assert track.add(12.5, 7.0) == 12.5
    assert track.add(13.0, 11.0) is None  # off the scale
    assert track.add(13.0, None) is None  # not a number
    got = [track.at(t) for t in (9.9, 10.0, 11.0, 12.5, 20.0)]
    assert math.isnan(got[0][0]) and math.isnan(got[0][1])
    assert got[1:] == [(3.0, 0.0), (3.0, 1.0), (7.0, 0.0), (7.0, 7.5)]
    assert (track.accepted, track.rejected, track.late) == (2, 2, 0)


def test_a_rating_older_than_max_age_reads_nan():
    track = RatingTrack((0.0, 10.0), max_age_s=5.0)
    track.add(0.0, 4.0)
    assert track.at(5.0) == (4.0, 5.0)
    value, age = track.at(5.1)
    assert math.isnan(value) and age == pytest.approx(5.1)


def test_a_late_rating_takes_effect_after_the_frames_already_processed_and_a_replay_reproduces_it():
    frames = np.arange(0.0, 3.0, 0.1)
    arrivals = {10: [(0.55, 6.0)], 20: [(1.85, 2.0), (1.95, 9.0)]}  # frame index -> ratings arriving before it

    live = RatingTrack()
    seen = []
    for k, t in enumerate(frames):
        for own, v in arrivals.get(k, []):
            live.add(own, v)
        seen.append(live.at(t))
    # 0.55 arrived before the frame at 1.0: frames 0.6-0.9 did not see it; it counts from 1.0 on
    assert seen[9][0] != 6.0 and seen[10] == (6.0, pytest.approx(1.0 - 0.55))
    assert live.late == 2  # 0.55 and 1.85 were late; 1.95 was not (newer than the frame at 1.9)
    assert seen[20] == (9.0, pytest.approx(0.05))  # both count from the frame at 2.0; the newer one is in force
    eff, own, val = live.as_arrays()
    assert eff[0] == math.nextafter(0.9, math.inf) and own[0] == 0.55

    replayed = RatingTrack()
    for e, t, v in zip(eff, own, val):
        replayed.add(t, v, effective=e)
    again = [replayed.at(t) for t in frames]
    assert np.array_equal(np.array(seen), np.array(again), equal_nan=True)
    assert replayed.late == live.late


@pytest.fixture(scope="module")
def rated_session(tmp_path_factory):
    """A 60-s session whose participant rates every 2 s, half a second late (a slow rating device)."""
    folder = tmp_path_factory.mktemp("rated")
    resolved = load(write_pipeline(folder))

    def rate(t, feature_at, gen, rng):
        return 10.0 * gen.pain_state

    plan = RatingPlan(every_s=2.0, rate=rate, start_s=3.0, delay_s=0.55)
    sim = simulate_session(resolved, 60.0, folder / "s", generator=generator(), ratings=plan)
    return resolved, sim, folder


def test_ratings_are_recorded_as_received_and_as_used(rated_session):
    resolved, sim, folder = rated_session
    reader = XDFReader(folder / "s" / "session.xdf")
    raw = reader.find(name="pain-ratings")[0]
    assert [float(r[0]) for r in raw.strings] == sim.ratings.tolist()
    assert np.array_equal(raw.string_stamps, sim.rating_times)
    aligned = reader.find(name=ALIGNED_STREAM)[0]
    values, stamps = reader.read_stream(aligned.stream_id)
    assert aligned.ch_names == ["rating", "rating_time"]
    assert np.array_equal(values[:, 0], sim.ratings) and np.array_equal(values[:, 1], sim.rating_times)
    assert np.all(stamps > sim.rating_times)  # every rating came half a second late
    summary = sim.summary["ratings"]
    assert summary == {"accepted": len(sim.ratings), "rejected": 0, "late": len(sim.ratings)}


def test_frames_carry_the_rating_in_force_and_a_replay_reproduces_them_exactly(rated_session, tmp_path):
    resolved, sim, folder = rated_session
    live = Trace.from_xdf(folder / "s" / "session.xdf")
    rating, age = live.feature("rating"), live.feature("rating_age_s")
    rec = ratings_from_recording(folder / "s" / "session.xdf", resolved.config.ratings)
    # each rating took effect just after the last frame processed before it arrived (0.55 s after it was
    # given, frames every 0.1 s); the last one arrived after the last frame
    late = rec.effective - rec.times
    assert np.all(late > 0) and np.all(late[:-1] >= 0.45 - 1e-9) and np.all(late <= 0.55 + 1e-9)
    # every frame carries the newest rating in effect, and the time since it was given
    j = np.searchsorted(rec.effective, live.time, side="right") - 1
    before = j < 0
    assert np.all(np.isnan(rating[before])) and np.all(np.isnan(age[before]))
    assert np.array_equal(rating[~before], rec.values[j[~before]])
    assert np.allclose(age[~before], live.time[~before] - rec.times[j[~before]], rtol=0, atol=1e-9)
    rep = replay(folder / "s" / "session.xdf", resolved, tmp_path / "r", keep="trace", report=False)
    assert rep.summary["replay"]["ratings"]["source"] == "aligned"
    for name in ("rating", "rating_age_s"):
        assert np.array_equal(rep.trace.feature(name), live.feature(name), equal_nan=True)
    assert rep.summary["ratings"] == sim.summary["ratings"]
    # the replay records the ratings as used too: a replay of the replay gives the same values again
    again = ratings_from_recording(tmp_path / "r" / "session.xdf", resolved.config.ratings)
    assert again.source == "aligned" and np.array_equal(again.values, sim.ratings)


def test_without_the_aligned_stream_ratings_count_from_their_own_time(rated_session, tmp_path):
    resolved, sim, folder = rated_session
    # a LabRecorder file: the EEG and the rating stream, each with its clock offset
    path = tmp_path / "lab.xdf"
    gen = generator(seed=5)
    n, offset_eeg, offset_rating = int(20 * 250), 100.0, 100.25
    data = gen.generate(n)
    raw_t = 5000.0 + np.arange(n) / 250.0
    with XDFWriter(path, {}, overwrite=True) as w:
        w.add_stream(1, "eeg", "EEG", 6, 250.0, "float32", channels=[{"label": c} for c in gen.ch_names])
        w.add_stream(2, "pain-ratings", "Markers", 1, 0.0, "string")
        w.write_samples(1, data, raw_t)
        w.write_samples(2, [["rating: 2"], ["rating: 8"], ["oops"]], [5004.0, 5010.0, 5012.0])
        w.write_clock_offset(1, 5000.0, offset_eeg)
        w.write_clock_offset(2, 5000.0, offset_rating)
    got = ratings_from_recording(path, resolved.config.ratings)
    assert got.source == "stream" and got.rejected == 1
    assert got.times.tolist() == [5004.25 + 100.0, 5010.25 + 100.0] and got.values.tolist() == [2.0, 8.0]
    rep = replay(path, resolved, keep="trace")
    t, r = rep.trace.time, rep.trace.feature("rating")
    assert np.all(np.isnan(r[t < 5104.25])) and np.all(r[(t >= 5104.25) & (t < 5110.25)] == 2.0)
    assert np.all(r[t >= 5110.25] == 8.0)


def test_a_recording_without_ratings_gives_nan_and_says_so(tmp_path):
    resolved = load(write_pipeline(tmp_path))
    sim = simulate_session(resolved, 5.0, tmp_path / "s", generator=generator())
    rep = replay(tmp_path / "s" / "session.xdf", resolved, keep="trace")
    assert np.all(np.isnan(rep.trace.feature("rating")))
    assert any("no rating arrived" in n for n in rep.notes)
    assert sim.summary["ratings"]["accepted"] == 0
