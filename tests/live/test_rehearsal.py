"""The busy loop's rehearsal: a twin pipeline stepped before each chunk, which the session never sees."""

from __future__ import annotations

import numpy as np
import pytest

from closedloop.config import load_pipeline
from closedloop.live.rehearsal import LEAD_S, MIN_INTERVAL_S, Rehearsal
from closedloop.pipeline import Pipeline
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.types import Chunk

SFREQ, CHUNK = 500.0, 5


@pytest.fixture(scope="module")
def setup():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    # stimulation switches on and off during the data (thresholds inside the synthetic alpha's range)
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"controller.blanking_s": 0.5})
    gen = SyntheticEEG(n_channels=32, sfreq=SFREQ, seed=3)
    data = gen.generate(int(20 * SFREQ))
    return resolved, gen.ch_names, data


def steps_of(pipe: Pipeline, data: np.ndarray, rehearsal: Rehearsal | None = None) -> list:
    out = []
    for i, a in enumerate(range(0, data.shape[0], CHUNK)):
        chunk = Chunk(data[a : a + CHUNK], (a + np.arange(CHUNK)) / SFREQ)
        out += pipe.process(chunk)
        if rehearsal is not None:  # as the loop does: copy the chunk, then step the twin before the next one
            rehearsal.after_chunk(chunk, i * CHUNK / SFREQ)
            rehearsal.step()
    return out


def test_the_session_computes_the_same_with_a_rehearsing_twin(setup):
    resolved, names, data = setup
    alone = steps_of(Pipeline(resolved, names), data)
    rehearsal = Rehearsal(resolved, names, None)
    with_twin = steps_of(Pipeline(resolved, names), data, rehearsal)
    assert len(alone) == len(with_twin) > 300
    for a, b in zip(alone, with_twin):
        assert a.frame.time == b.frame.time and a.frame.flags == b.frame.flags
        np.testing.assert_array_equal(a.frame.values, b.frame.values)
        assert (a.desired.on, a.desired.amplitude_mA) == (b.desired.on, b.desired.amplitude_mA)
        assert (a.allowed.amplitude_mA, a.allowed.time) == (b.allowed.amplitude_mA, b.allowed.time)
    assert 0 < max(s.allowed.amplitude_mA for s in alone)  # the data made the controller stimulate
    # the twin did run the whole pipeline (frames, its own safety layer), once per chunk
    assert rehearsal.steps == data.shape[0] // CHUNK and rehearsal.error is None
    assert rehearsal.twin.features.frames > 300 and rehearsal.twin.safety.t is not None


def test_the_twin_steps_lead_before_the_next_chunk_on_a_copy_and_its_own_time_line(setup):
    resolved, names, data = setup
    rehearsal = Rehearsal(resolved, names, None)
    fed = []
    real = rehearsal.twin.process
    rehearsal.twin.process = lambda chunk: fed.append((chunk.data.copy(), chunk.timestamps.copy())) or real(chunk)
    buf = data[:CHUNK].copy()
    rehearsal.after_chunk(Chunk(buf, np.arange(CHUNK) / SFREQ), 100.0)
    assert rehearsal.due is None  # one chunk: no interval known yet
    rehearsal.step()  # the first chunk is rehearsed all the same when asked
    for k, arrival in enumerate((100.010, 100.020), start=1):
        buf[:] = data[k * CHUNK : (k + 1) * CHUNK]
        rehearsal.after_chunk(Chunk(buf, np.arange(CHUNK) / SFREQ), arrival)
    assert rehearsal.interval_s == pytest.approx(0.010)
    assert rehearsal.due == pytest.approx(100.020 + 0.010 - LEAD_S)
    buf[:] = 0.0  # the source reuses its buffer: the twin steps on its own copy of the last chunk
    rehearsal.step()
    assert rehearsal.due is None  # once per chunk
    np.testing.assert_array_equal(fed[-1][0], data[2 * CHUNK : 3 * CHUNK])
    # a larger chunk than any before (a backlog) is kept whole: the copy grows
    big = data[100:300]
    rehearsal.after_chunk(Chunk(big, np.arange(200) / SFREQ), 100.030)
    rehearsal.step()
    np.testing.assert_array_equal(fed[-1][0], big)
    # the twin's samples follow each other, one chunk after the other, whatever the real stamps were
    stamps = np.concatenate([t for _, t in fed])
    np.testing.assert_allclose(np.diff(stamps), 1 / SFREQ, rtol=1e-9)
    # chunks closer together than MIN_INTERVAL_S keep the code warm themselves: no step is planned
    fast = Rehearsal(resolved, names, None)
    for k in range(5):
        fast.after_chunk(Chunk(data[:CHUNK], np.arange(CHUNK) / SFREQ), k * MIN_INTERVAL_S / 2)
    assert fast.due is None


def test_a_twin_that_raises_stops_rehearsing_and_raises_nothing(setup):
    resolved, names, data = setup
    rehearsal = Rehearsal(resolved, names, None)

    def broken(chunk):
        raise RuntimeError("twin broke")

    rehearsal.twin.process = broken
    for k in range(3):
        rehearsal.after_chunk(Chunk(data[:CHUNK], np.arange(CHUNK) / SFREQ), k * 0.01)
    rehearsal.step()
    assert rehearsal.error == "RuntimeError: twin broke" and rehearsal.steps == 0
    rehearsal.after_chunk(Chunk(data[:CHUNK], np.arange(CHUNK) / SFREQ), 0.03)
    assert rehearsal.due is None  # nothing planned any more
