"""Band power over a ring buffer, on the sample clock (numba kernel).

A frame is produced when ``window`` samples have arrived and then every
``hop`` samples. Each frame is a Hann-windowed, mean-removed periodogram of the
last ``window`` samples evaluated only at the DFT bins the bands need, scaled
as a one-sided power spectral density (the same numbers as
``scipy.signal.welch(x, fs, window="hann", nperseg=window)`` at those bins)
and summed over each band times the bin width: band power in units².
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _bandpower_kernel(
    data, stamps, ring, state, hop, cos_w, sin_w, win_dft_re, win_dft_im, bin_scale, bin_band,
    n_bands, out_power, out_time, out_bad,
):
    """Push ``data`` into ``ring``; write one row of band powers per completed hop.

    state = [write position, samples seen, frames produced]; returns frames written.
    """
    n, nch = data.shape
    W = ring.shape[0]
    n_bins = cos_w.shape[0]
    k = 0
    for i in range(n):
        pos = state[0]
        for c in range(nch):
            ring[pos, c] = data[i, c]
        pos += 1
        if pos == W:
            pos = 0
        state[0] = pos
        state[1] += 1
        if state[1] >= W and (state[1] - W) % hop == 0:
            for c in range(nch):
                for b in range(n_bands):
                    out_power[k, c, b] = 0.0
                total = 0.0
                for j in range(W):
                    total += ring[j, c]
                mean = total / W
                bad = not np.isfinite(total)
                out_bad[k] = out_bad[k] or bad
                for q in range(n_bins):
                    re = 0.0
                    im = 0.0
                    # oldest sample sits at `pos`; window index j runs oldest → newest
                    for j in range(W - pos):
                        x = ring[pos + j, c]
                        re += x * cos_w[q, j]
                        im += x * sin_w[q, j]
                    off = W - pos
                    for j in range(pos):
                        x = ring[j, c]
                        re += x * cos_w[q, off + j]
                        im += x * sin_w[q, off + j]
                    re -= mean * win_dft_re[q]
                    im -= mean * win_dft_im[q]
                    out_power[k, c, bin_band[q]] += (re * re + im * im) * bin_scale[q]
            out_time[k] = stamps[i]
            state[2] += 1
            k += 1
    return k


class BandPower:
    """Streaming band power of ``n_channels`` channels.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    n_channels : int
        Channels in each incoming chunk.
    bands : dict of str -> (low, high)
        Band edges in Hz; bins with ``low <= f <= high`` are summed.
    window, hop : int
        Window length and frame interval, in samples.
    """

    def __init__(self, sfreq: float, n_channels: int, bands: dict[str, tuple[float, float]], window: int, hop: int):
        self.sfreq = float(sfreq)
        self.window = int(window)
        self.hop = int(hop)
        self.n_channels = int(n_channels)
        self.band_names = tuple(bands)
        W = self.window
        freqs = np.arange(W // 2 + 1) * self.sfreq / W
        bins, owner = [], []
        for b, (lo, hi) in enumerate(bands.values()):
            sel = np.flatnonzero((freqs >= lo - 1e-9) & (freqs <= hi + 1e-9))
            if sel.size == 0:
                raise ValueError(f"band {self.band_names[b]} [{lo}, {hi}] Hz holds no DFT bin at window {W}")
            bins.extend(sel.tolist())
            owner.extend([b] * sel.size)
        bins_arr = np.array(bins)
        j = np.arange(W)
        w = 0.5 - 0.5 * np.cos(2 * np.pi * j / W)  # periodic Hann, as scipy's get_window("hann")
        phase = 2 * np.pi * np.outer(bins_arr, j) / W
        self._cos = np.ascontiguousarray(w * np.cos(phase))
        self._sin = np.ascontiguousarray(-w * np.sin(phase))
        self._wdft_re = self._cos.sum(axis=1)
        self._wdft_im = self._sin.sum(axis=1)
        one_sided = np.where((bins_arr == 0) | (2 * bins_arr == W), 1.0, 2.0)
        df = self.sfreq / W
        self._scale = one_sided / (self.sfreq * np.sum(w**2)) * df
        self._owner = np.array(owner, dtype=np.int64)
        self.freqs = freqs[bins_arr]
        self._ring = np.zeros((W, self.n_channels))
        self._state = np.zeros(3, dtype=np.int64)
        self._alloc(64)

    def _alloc(self, max_frames: int) -> None:
        self._power = np.zeros((max_frames, self.n_channels, len(self.band_names)))
        self._time = np.zeros(max_frames)
        self._bad = np.zeros(max_frames, dtype=np.bool_)

    @property
    def frames_produced(self) -> int:
        return int(self._state[2])

    def step(self, data: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed samples; return (power (k, ch, bands), times (k,), nonfinite (k,)) views for new frames."""
        need = data.shape[0] // self.hop + 2
        if need > self._time.shape[0]:
            self._alloc(need)
        self._bad[:need] = False
        k = _bandpower_kernel(
            np.ascontiguousarray(data, dtype=np.float64), timestamps, self._ring, self._state, self.hop,
            self._cos, self._sin, self._wdft_re, self._wdft_im, self._scale, self._owner,
            len(self.band_names), self._power, self._time, self._bad,
        )
        return self._power[:k], self._time[:k], self._bad[:k]

    def warmup(self) -> None:
        """Compile the kernel on a throwaway copy before the session clock starts."""
        twin = BandPower(self.sfreq, 1, {"b": (self.freqs[0], self.freqs[0])}, self.window, self.hop)
        twin.step(np.zeros((self.window, 1)), np.zeros(self.window))
