"""Fixed-size latency histograms: constant memory however long the session runs."""

from __future__ import annotations

import math

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)


class LatencyHistogram:
    """Log-spaced histogram of durations in seconds (1 µs to 100 s, ~1 % bins).

    Quantiles are read off the bins (relative error below the bin width);
    count, min, max and mean are exact.
    """

    LO = 1e-6
    HI = 100.0
    BINS_PER_DECADE = 240

    def __init__(self) -> None:
        n = int(round(math.log10(self.HI / self.LO) * self.BINS_PER_DECADE))
        self.counts = np.zeros(n + 2, dtype=np.int64)  # [underflow, bins..., overflow]
        self._k = self.BINS_PER_DECADE / math.log(10.0)
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, seconds: float) -> None:
        """Count one duration (s); non-finite ones are skipped."""
        if not math.isfinite(seconds):
            return
        if seconds < self.LO:
            i = 0
        else:
            i = min(int(math.log(seconds / self.LO) * self._k) + 1, self.counts.shape[0] - 1)
        self.counts[i] += 1
        self.n += 1
        self.total += seconds
        self.min = min(self.min, seconds)
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float:
        """Approximate ``q``-quantile (0..1) in seconds (NaN when empty)."""
        if self.n == 0:
            return math.nan
        target = q * (self.n - 1) + 1
        i = int(np.searchsorted(np.cumsum(self.counts), target))
        if i == 0:
            return self.min
        if i >= self.counts.shape[0] - 1:
            return self.max
        mid = self.LO * math.exp((i - 0.5) / self._k)  # geometric centre of bin i
        return min(max(mid, self.min), self.max)

    def summary_ms(self) -> dict[str, float | None]:
        """``{median, p99, max, mean, n}`` in milliseconds (None when empty)."""
        if self.n == 0:
            return {"median": None, "p99": None, "max": None, "mean": None, "n": 0}
        return {
            "median": self.quantile(0.5) * 1e3,
            "p99": self.quantile(0.99) * 1e3,
            "max": self.max * 1e3,
            "mean": self.total / self.n * 1e3,
            "n": self.n,
        }


@numba.njit(cache=True, nogil=True)
def _welford_add(n, mean, m2, x):
    for i in range(x.shape[0]):
        v = x[i]
        if np.isfinite(v):
            n[i] += 1
            d = v - mean[i]
            mean[i] += d / n[i]
            m2[i] += d * (v - mean[i])


@numba.njit(cache=True, nogil=True)
def _welford_add_rows(n, mean, m2, rows, k):
    for r in range(k):
        _welford_add(n, mean, m2, rows[r])


class RunningStats:
    """Mean and standard deviation per feature (Welford), NaNs skipped."""

    def __init__(self, n: int) -> None:
        self.n = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n)
        self.m2 = np.zeros(n)

    def add(self, x: np.ndarray) -> None:
        """Add one row of values."""
        _welford_add(self.n, self.mean, self.m2, x)

    def add_rows(self, rows: np.ndarray, k: int) -> None:
        """Add the first ``k`` rows of ``rows`` (n_rows, n) in order: one kernel call for a chunk's frames."""
        _welford_add_rows(self.n, self.mean, self.m2, rows, k)

    def warmup(self) -> None:
        """Compile the update kernels before the session clock starts."""
        frame_values = np.zeros(1)
        frame_values.flags.writeable = False  # as the frames' values are: another signature to numba
        _welford_add(np.zeros(1, np.int64), np.zeros(1), np.zeros(1), frame_values)
        _welford_add_rows(np.zeros(1, np.int64), np.zeros(1), np.zeros(1), np.zeros((1, 1)), 1)

    def std(self) -> np.ndarray:
        """Return the sample standard deviation per feature (NaN below two values)."""
        return np.sqrt(np.where(self.n > 1, self.m2 / np.maximum(self.n - 1, 1), np.nan))


#: Stages of one command, in path order; "data_age" is the time the newest sample waited before the pull.
STAGES = ("data_age", "preprocess", "features", "controller", "safety", "adapter")


class StageTimes:
    """Per-stage durations of every command, each in a fixed-size :class:`LatencyHistogram`."""

    def __init__(self) -> None:
        self.hist = {name: LatencyHistogram() for name in STAGES}

    def add(self, durations: dict[str, float]) -> None:
        """Count one duration per stage (s)."""
        for name, seconds in durations.items():
            self.hist[name].add(seconds)

    def summary_ms(self) -> dict[str, dict[str, float | None]]:
        """``{stage: {median, p99, max}}`` in milliseconds."""
        out = {}
        for name, h in self.hist.items():
            s = h.summary_ms()
            out[name] = {"median": s["median"], "p99": s["p99"], "max": s["max"]}
        return out
