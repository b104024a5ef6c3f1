"""Peak alpha frequency from a long, zero-padded Welch spectrum (docs/eeg-and-pain.md).

Each time a Hann segment of ``segment`` samples completes (every ``step``
samples), its mean-removed, zero-padded periodogram is evaluated at the fine
bins ``q * sfreq / (zero_pad * segment)`` covering the PAF bands and stored;
the last ``segments`` periodograms are averaged (exactly
``scipy.signal.welch(x, fs, "hann", nperseg=segment, noverlap=segment - step,
nfft=zero_pad * segment)`` on the same samples) and two estimates refreshed:

- ``cog``: centre of gravity ``sum(f P) / sum(P)`` over ``cog_band``;
- ``peak``: the local maximum of ``log10 P`` standing highest above a straight
  line fitted (least squares) to ``log10 P`` against ``log10 f`` over
  ``peak_band`` (the 1/f background), refined by parabolic interpolation of
  ``log10 P``; NaN when no local maximum stands at least ``min_peak_log10``
  above that line. The default 0.3 (twice the background power) was never
  reached by pure 1/f noise over 15 averaged segments in 40 trials (largest
  0.27), while a sine of 3 % of the noise power reached 0.56.

Both are NaN until ``segments`` segments have been seen. The spectrum costs
``segment * bins`` multiply-adds per channel once per ``step`` samples; use it
on an ROI or a few channels.
"""

from __future__ import annotations

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.features import PafConfig
from closedloop.features.bandpower import hann


@numba.njit(cache=True, nogil=True)
def _fit_line(lx, ly, use):
    """Least-squares line ``ly = a + b lx`` over the points with ``use``; returns (a, b, ok)."""
    n = 0
    sx = 0.0
    sy = 0.0
    for j in range(lx.shape[0]):
        if use[j]:
            n += 1
            sx += lx[j]
            sy += ly[j]
    if n < 2:
        return 0.0, 0.0, False
    mx = sx / n
    my = sy / n
    sxx = 0.0
    sxy = 0.0
    for j in range(lx.shape[0]):
        if use[j]:
            sxx += (lx[j] - mx) ** 2
            sxy += (lx[j] - mx) * (ly[j] - my)
    if sxx == 0.0:
        return 0.0, 0.0, False
    b = sxy / sxx
    return my - b * mx, b, True


@numba.njit(cache=True, nogil=True)
def paf_estimates(freqs, psd, cog_sel, peak_sel, min_peak, work_lx, work_ly, work_use):
    """(centre of gravity, interpolated peak) of one spectrum; NaN where undefined."""
    num = 0.0
    den = 0.0
    for j in range(freqs.shape[0]):
        if cog_sel[j]:
            num += freqs[j] * psd[j]
            den += psd[j]
    cog = num / den if den > 0.0 else np.nan
    m = 0
    for j in range(freqs.shape[0]):
        if peak_sel[j]:
            if not psd[j] > 0.0:
                return cog, np.nan
            work_lx[m] = np.log10(freqs[j])
            work_ly[m] = np.log10(psd[j])
            work_use[m] = True
            m += 1
    lx = work_lx[:m]
    ly = work_ly[:m]
    use = work_use[:m]
    a, b, ok = _fit_line(lx, ly, use)
    if not ok:
        return cog, np.nan
    best = -1
    best_h = -np.inf
    for j in range(1, m - 1):
        if ly[j] >= ly[j - 1] and ly[j] >= ly[j + 1]:
            h = ly[j] - (a + b * lx[j])
            if h > best_h:
                best_h = h
                best = j
    if best < 0 or best_h < min_peak:
        return cog, np.nan
    y0, y1, y2 = ly[best - 1], ly[best], ly[best + 1]
    curv = y0 - 2.0 * y1 + y2
    delta = 0.5 * (y0 - y2) / curv if curv != 0.0 else 0.0
    first = 0
    while not peak_sel[first]:
        first += 1
    df = freqs[1] - freqs[0]
    return cog, freqs[first + best] + delta * df


@numba.njit(cache=True, nogil=True)
def _paf_kernel(
    x,
    n_ch,
    ring,
    state,
    hop,
    window,
    step,
    table,
    scale,
    spectra,
    avg,
    freqs,
    cog_sel,
    peak_sel,
    min_peak,
    current,
    work_lx,
    work_ly,
    work_use,
    im,
    want,
    out,
):
    """Per sample: ring; per completed segment: periodogram and estimates; per frame: copy estimates.

    state = [count, segments seen]; out (frames, n_ch, len(want)).
    """
    n = x.shape[0]
    L = ring.shape[0]
    n_q = scale.shape[0]
    n_seg = spectra.shape[0]
    k = 0
    for i in range(n):
        count = state[0]
        slot = count % L
        for c in range(n_ch):
            ring[slot, c] = x[i, c]
        count += 1
        state[0] = count
        if count >= L and (count - L) % step == 0:
            s_slot = state[1] % n_seg
            oldest = count % L
            for c in range(n_ch):
                mean = 0.0
                for m in range(L):
                    mean += ring[(oldest + m) % L, c]
                mean /= L
                re = spectra[s_slot, c]  # reuse as scratch: real parts first, then power
                for q in range(n_q):
                    im[q] = 0.0
                    re[q] = 0.0
                for m in range(L):
                    v = ring[(oldest + m) % L, c] - mean
                    row = table[m]
                    for q in range(n_q):
                        re[q] += v * row[2 * q]
                        im[q] += v * row[2 * q + 1]
                for q in range(n_q):
                    re[q] = (re[q] * re[q] + im[q] * im[q]) * scale[q]
            state[1] += 1
            if state[1] >= n_seg:
                for c in range(n_ch):
                    for q in range(n_q):
                        total = 0.0
                        for s in range(n_seg):
                            total += spectra[s, c, q]
                        avg[c, q] = total / n_seg
                    cog, peak = paf_estimates(freqs, avg[c], cog_sel, peak_sel, min_peak, work_lx, work_ly, work_use)
                    current[c, 0] = cog
                    current[c, 1] = peak
        if count < window or (count - window) % hop != 0:
            continue
        for c in range(n_ch):
            for e in range(want.shape[0]):
                out[k, c, e] = current[c, want[e]]
        k += 1
    return k


class PeakAlphaFrequency:
    """Streaming peak alpha frequency of ``n_channels`` channels, sampled at the extractor's frames.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    n_channels : int
        Channels analysed (the first ``n_channels`` input columns).
    window, hop : int
        The extractor's frame schedule (frames carry the latest estimates).
    segment, segments, overlap, zero_pad
        Welch parameters of the PAF spectrum.
    estimators : sequence of {"cog", "peak"}
        Estimates reported, in order.
    cog_band, peak_band : (float, float)
        Bands of the centre of gravity and of the peak search (Hz).
    min_peak_log10 : float
        Height above the fitted background a peak needs (log10 units).
    """

    @classmethod
    def from_config(cls, sfreq: float, n_channels: int, window: int, hop: int, cfg: PafConfig) -> PeakAlphaFrequency:
        """Build from a ``[features.paf]`` section."""
        return cls(
            sfreq,
            n_channels,
            window,
            hop,
            cfg.segment_samples,
            segments=cfg.segments,
            overlap=cfg.overlap,
            zero_pad=cfg.zero_pad,
            estimators=tuple(cfg.estimators),
            cog_band=cfg.cog_band,
            peak_band=cfg.peak_band,
            min_peak_log10=cfg.min_peak_log10,
        )

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        window: int,
        hop: int,
        segment: int,
        segments: int = 29,
        overlap: float = 0.5,
        zero_pad: int = 4,
        estimators=("cog", "peak"),
        cog_band=(8.0, 12.0),
        peak_band=(7.0, 13.0),
        min_peak_log10: float = 0.3,
    ) -> None:
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self.window, self.hop = int(window), int(hop)
        self.segment = int(segment)
        self.segments = int(segments)
        self.step = max(self.segment - int(round(overlap * self.segment)), 1)
        self.n_fft = int(zero_pad) * self.segment
        self.estimators = tuple(estimators)
        self.names = tuple(f"paf_{e}" for e in self.estimators)
        lo = min(cog_band[0], peak_band[0])
        hi = max(cog_band[1], peak_band[1])
        df = self.sfreq / self.n_fft
        q = np.arange(int(np.ceil(lo / df - 1e-9)), int(np.floor(hi / df + 1e-9)) + 1)
        self.freqs = q * df
        self._cog_sel = (self.freqs >= cog_band[0] - 1e-9) & (self.freqs <= cog_band[1] + 1e-9)
        self._peak_sel = (self.freqs >= peak_band[0] - 1e-9) & (self.freqs <= peak_band[1] + 1e-9)
        w = hann(self.segment)
        phase = 2.0 * np.pi * (np.outer(np.arange(self.segment), q) % self.n_fft) / self.n_fft
        table = np.empty((self.segment, 2 * q.size))
        table[:, 0::2] = w[:, None] * np.cos(phase)
        table[:, 1::2] = -w[:, None] * np.sin(phase)
        self._table = table
        one_sided = np.where((q == 0) | (2 * q == self.n_fft), 1.0, 2.0)
        self._scale = one_sided / (self.sfreq * np.sum(w**2))
        self._min_peak = float(min_peak_log10)
        self._want = np.array([("cog", "peak").index(e) for e in self.estimators], dtype=np.int64)
        nch, nq = self.n_channels, q.size
        self._ring = np.zeros((self.segment, nch))
        self._state = np.zeros(2, dtype=np.int64)
        self._spectra = np.zeros((self.segments, nch, nq))
        self._avg = np.zeros((nch, nq))
        self._current = np.full((nch, 2), np.nan)
        self._lx, self._ly = np.zeros(nq), np.zeros(nq)
        self._use = np.zeros(nq, dtype=np.bool_)
        self._im = np.zeros(nq)

    @property
    def spectrum(self) -> np.ndarray:
        """The latest averaged PSD (n_channels, bins) at :attr:`freqs` (valid once the buffer is full)."""
        return self._avg

    def process(self, x: np.ndarray, out: np.ndarray) -> int:
        """Feed float64 C-contiguous ``x``; write estimates (frames, n_channels, estimators)."""
        return _paf_kernel(
            x,
            self.n_channels,
            self._ring,
            self._state,
            self.hop,
            self.window,
            self.step,
            self._table,
            self._scale,
            self._spectra,
            self._avg,
            self.freqs,
            self._cog_sel,
            self._peak_sel,
            self._min_peak,
            self._current,
            self._lx,
            self._ly,
            self._use,
            self._im,
            self._want,
            out,
        )
