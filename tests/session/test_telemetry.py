"""Fixed-size latency histograms, running feature statistics and the per-frame flag counters."""

from __future__ import annotations

import numpy as np
import pytest

from closedloop.session.telemetry import LatencyHistogram, RunningStats


def test_quantiles_close_to_numpy():
    rng = np.random.default_rng(0)
    x = rng.lognormal(mean=np.log(1e-3), sigma=0.5, size=20000)
    h = LatencyHistogram()
    for v in x:
        h.add(float(v))
    for q in (0.5, 0.9, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(x, q), rel=0.01)
    assert h.max == x.max() and h.n == x.size
    s = h.summary_ms()
    assert s["median"] == pytest.approx(np.median(x) * 1e3, rel=0.01)


def test_size_does_not_grow():
    h = LatencyHistogram()
    size = h.counts.nbytes
    for v in np.linspace(1e-7, 1e3, 100000):
        h.add(float(v))
    assert h.counts.nbytes == size and h.counts.sum() == 100000
    assert h.counts[0] > 0 and h.counts[-1] > 0  # under- and overflow are counted, not lost


def test_empty_and_nonfinite():
    h = LatencyHistogram()
    h.add(float("nan"))
    assert h.n == 0 and h.summary_ms()["median"] is None


def test_running_stats_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 3))
    x[10, 1] = np.nan
    rs = RunningStats(3)
    for row in x:
        rs.add(row)
    np.testing.assert_allclose(rs.mean, np.nanmean(x, axis=0))
    np.testing.assert_allclose(rs.std(), np.nanstd(x, axis=0, ddof=1))


def test_session_stats_count_every_flag_of_every_frame_and_baseline_alone_is_not_flagged():
    from itertools import combinations

    from closedloop.session.summary import COUNTED_FLAGS, SessionStats
    from closedloop.types import Quality

    stats = SessionStats()
    frames = [Quality.OK]
    for k in (1, 2, 3):  # every combination of up to three flags, as a frame carries them
        frames += [Quality(sum(int(f) for f in combo)) for combo in combinations(COUNTED_FLAGS, k)]
    for flags in frames:
        stats.count_flags(flags)
    for flag in COUNTED_FLAGS:
        assert stats.quality_flags[flag.name] == sum(bool(f & flag) for f in frames), flag.name
    assert stats.flagged_frames == sum(bool(f & ~Quality.BASELINE) for f in frames)
    assert stats.flagged_frames == len(frames) - 2  # all but the clean frame and BASELINE alone
