"""Welch band power over a ring buffer: the method equal to scipy and MNE.

Each frame averages the Hann-windowed, mean-removed periodograms of
overlapping segments of the last ``window`` samples, evaluated only at the DFT
bins the bands need: the numbers of ``scipy.signal.welch(x, fs,
window="hann", nperseg=L, noverlap=L - step)`` and of
``mne.time_frequency.psd_array_welch(x, fs, window="hann", n_fft=L,
n_per_seg=L, n_overlap=L - step)`` on the same samples. Segments are aligned
to the newest sample; with one segment (the default) this is the periodogram.

The ring holds every sample twice (``ring[p]`` and ``ring[p + window]``) so
that each segment is one contiguous block, and each segment is one BLAS
matrix product with a table of windowed cosines and sines (plus a column of
ones for the mean). All buffers are 64-byte aligned so BLAS sums in the same
order for the same frame, whatever the chunking.
"""

from __future__ import annotations

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.features.bandpower import BandPowerMethod, Bands, band_bins, hann, psd_bin_scale
from closedloop.preprocess.buffers import aligned_zeros


@numba.njit(cache=True, nogil=True)
def _welch_kernel(
    x,
    stamps,
    n_ch,
    ring,
    state,
    hop,
    first,
    step,
    n_seg,
    table,
    wdft,
    scale,
    band_ptr,
    band_bin,
    acc,
    seg_out,
    out_power,
    out_time,
):
    """Push samples; at each frame average segment periodograms and sum bands. Returns frames written."""
    n = x.shape[0]
    W = ring.shape[0] // 2
    L = table.shape[0]
    n_bins = scale.shape[0]
    n_bands = band_ptr.shape[0] - 1
    k = 0
    for i in range(n):
        count = state[0]
        slot = count % W
        for c in range(n_ch):
            v = x[i, c]
            ring[slot, c] = v
            ring[slot + W, c] = v
        count += 1
        state[0] = count
        if count < W or (count - W) % hop != 0:
            continue
        oldest = count % W
        for c in range(n_ch):
            for q in range(n_bins):
                acc[c, q] = 0.0
        for s in range(n_seg):
            a = oldest + first + s * step
            seg = ring[a : a + L]
            np.dot(seg.T, table, seg_out)
            for c in range(n_ch):
                mean = seg_out[c, 2 * n_bins] / L
                for q in range(n_bins):
                    re = seg_out[c, 2 * q] - mean * wdft[2 * q]
                    im = seg_out[c, 2 * q + 1] - mean * wdft[2 * q + 1]
                    acc[c, q] += re * re + im * im
        for c in range(n_ch):
            for b in range(n_bands):
                total = 0.0
                for j in range(band_ptr[b], band_ptr[b + 1]):
                    q = band_bin[j]
                    total += acc[c, q] * scale[q]
                out_power[k, c, b] = total / n_seg
        out_time[k] = stamps[i]
        k += 1
    return k


class WelchBandPower(BandPowerMethod):
    """Welch (or single-segment periodogram) band power on the sample clock.

    Parameters
    ----------
    sfreq, n_channels, bands, window, hop
        See :class:`~closedloop.features.bandpower.BandPowerMethod`.
    segment : int, optional
        Segment length (default: the whole window, one segment).
    overlap : float
        Fraction of a segment shared with the next (scipy's ``noverlap / nperseg``).
    """

    name = "welch"

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        bands: Bands,
        window: int,
        hop: int,
        segment: int | None = None,
        overlap: float = 0.5,
    ) -> None:
        super().__init__(sfreq, n_channels, bands, window, hop)
        L = int(segment or window)
        if not 2 <= L <= window:
            raise ValueError(f"segment ({L}) must be in [2, window={window}]")
        self.segment = L
        self.overlap = float(overlap)
        self.seg_step = max(L - int(round(overlap * L)), 1) if L < window else L
        self.n_segments = 1 + (self.window - L) // self.seg_step
        used = L + (self.n_segments - 1) * self.seg_step
        self._first = self.window - used  # segments end at the newest sample
        bins, self._band_ptr, self._band_bin = band_bins(self.bands, self.sfreq, L)
        self.freqs = bins * self.sfreq / L
        w = hann(L)
        phase = 2.0 * np.pi * np.outer(np.arange(L), bins) / L
        table = aligned_zeros((L, 2 * bins.size + 1))
        table[:, 0 : 2 * bins.size : 2] = w[:, None] * np.cos(phase)
        table[:, 1 : 2 * bins.size : 2] = -w[:, None] * np.sin(phase)
        table[:, -1] = 1.0
        self._table = table
        self._wdft = np.ascontiguousarray(table[:, :-1].sum(axis=0))
        self._scale = psd_bin_scale(bins, self.sfreq, w)
        self._ring = aligned_zeros((2 * self.window, self.n_channels))
        self._acc = np.zeros((self.n_channels, bins.size))
        self._seg_out = aligned_zeros((self.n_channels, 2 * bins.size + 1))
        self._state = np.zeros(1, dtype=np.int64)

    def process(self, x, stamps, out_power, out_time) -> int:
        """Feed float64 C-contiguous ``x``; write band powers and times of completed frames; return their count."""
        return _welch_kernel(
            x,
            stamps,
            self.n_channels,
            self._ring,
            self._state,
            self.hop,
            self._first,
            self.seg_step,
            self.n_segments,
            self._table,
            self._wdft,
            self._scale,
            self._band_ptr,
            self._band_bin,
            self._acc,
            self._seg_out,
            out_power,
            out_time,
        )

    def _twin_args(self) -> dict:
        return {**super()._twin_args(), "segment": self.segment, "overlap": self.overlap}
