"""From preprocessed chunks to frames: band powers, ratios, log scale, smoothing, flags."""

from __future__ import annotations

import math

import numpy as np

from closedloop.features.bandpower import BandPower
from closedloop.types import Chunk, Frame, Quality


class FeatureExtractor:
    """Turn preprocessed chunks into :class:`~closedloop.types.Frame` objects.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    ch_names : list of str
        Names of the (virtual) channels coming out of preprocessing.
    bands : dict of str -> (low, high)
        Frequency bands (Hz).
    ratios : dict of str -> (numerator, denominator)
        Ratios of band powers.
    window, hop : int
        Window and hop in samples.
    log10 : bool
        Report log10 of powers and ratios.
    smoothing_s : float
        Time constant of an exponential moving average applied per frame (0 = off).
    per_channel : bool
        Name features ``{feature}_{channel}`` (one set per channel); otherwise a
        single channel is expected and features carry the bare names.
    """

    def __init__(
        self,
        sfreq: float,
        ch_names: list[str],
        bands: dict[str, tuple[float, float]],
        ratios: dict[str, tuple[str, str]] | None = None,
        window: int = 500,
        hop: int = 25,
        log10: bool = True,
        smoothing_s: float = 0.0,
        per_channel: bool = False,
    ) -> None:
        self.sfreq = float(sfreq)
        self.bandpower = BandPower(sfreq, len(ch_names), bands, window, hop)
        self.ratios = dict(ratios or {})
        band_idx = {b: i for i, b in enumerate(bands)}
        self._ratio_idx = [(band_idx[n], band_idx[d]) for n, d in self.ratios.values()]
        base = list(bands) + list(self.ratios)
        if per_channel:
            self.names = tuple(f"{f}_{ch}" for ch in ch_names for f in base)
        else:
            if len(ch_names) != 1:
                raise ValueError("without per_channel, features need exactly one (virtual) channel")
            self.names = tuple(base)
        self.log10 = log10
        self.n_base = len(base)
        self._ema_a = 1.0 - math.exp(-hop / (smoothing_s * sfreq)) if smoothing_s > 0 else 1.0
        self._ema = np.full(len(self.names), np.nan)
        self._row = np.empty(len(self.names))
        self._last_stamp = math.nan
        self._gap = False
        self.frames = 0

    def step(self, chunk: Chunk) -> list[Frame]:
        """Feed a chunk; return the frames completed by it (possibly none)."""
        ts = chunk.timestamps
        if ts.shape[0]:
            expected = 1.0 / self.sfreq
            prev = self._last_stamp
            first_gap = (not math.isnan(prev)) and abs(ts[0] - prev - expected) > 0.5 * expected + 1e-3
            inner_gap = ts.shape[0] > 1 and np.max(np.abs(np.diff(ts) - expected)) > 0.5 * expected + 1e-3
            self._gap = self._gap or first_gap or bool(inner_gap)
            self._last_stamp = ts[-1]
        power, times, bad = self.bandpower.step(chunk.data, ts)
        frames = []
        nb = power.shape[2]
        for k in range(power.shape[0]):
            row = self._row
            for c in range(power.shape[1]):
                base = c * self.n_base
                row[base : base + nb] = power[k, c]
                for r, (i, j) in enumerate(self._ratio_idx):
                    row[base + nb + r] = power[k, c, i] / power[k, c, j] if power[k, c, j] > 0 else np.nan
            if self.log10:
                with np.errstate(divide="ignore", invalid="ignore"):
                    np.log10(row, out=row)
            if self._ema_a < 1.0:
                fresh = np.isnan(self._ema)
                self._ema[fresh] = row[fresh]
                self._ema += self._ema_a * (row - self._ema)
                values = self._ema.copy()
            else:
                values = row.copy()
            flags = Quality.OK
            if bad[k] or not np.all(np.isfinite(values)):
                flags |= Quality.NONFINITE
            if self._gap:
                flags |= Quality.GAP
                self._gap = False
            frames.append(Frame(float(times[k]), values, self.names, flags, self.frames))
            self.frames += 1
        return frames

    def warmup(self) -> None:
        self.bandpower.warmup()
