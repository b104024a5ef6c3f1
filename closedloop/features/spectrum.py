"""The slow, full-resolution spectrum stage: aperiodic fit, corrected band power, IAF-anchored bands.

Why a spectrum of its own: the band-power methods compute only the DFT bins
their bands need (a sliding DFT keeps a running sum per bin and sample), while
an aperiodic fit needs every bin over a range (e.g. 2–40 Hz) and IAF-anchored
bands need bins that are known only when the baseline ends. So, as the PAF
estimator does (:mod:`~closedloop.features.paf`), this stage keeps the last
``segment`` samples per channel in a ring and, each time a segment completes
(every ``step`` samples), computes that one segment's Hann-windowed,
mean-removed periodogram at every bin of the needed range (a direct DFT:
``segment x bins`` multiply-adds per channel); the last ``segments``
periodograms are averaged — exactly ``scipy.signal.welch(x, fs, "hann",
nperseg=segment, noverlap=segment - step)`` on the same samples — and then,
per channel:

- the aperiodic fit (:func:`~closedloop.features.aperiodic.fit_aperiodic`,
  specparam's algorithm) over ``aperiodic.range_hz``: ``ap_offset``,
  ``ap_exponent`` (``ap_knee``);
- ``<band>_ap``: power above the fitted aperiodic component, summed over the
  band's bins (half-open ``[low, high)``) times the bin width;
- ``iaf`` and the IAF bands' powers (``IAF + offsets``, half-open).

All of it depends only on the sample count (never on chunking), runs in one
numba call per chunk on preallocated arrays, and frames carry the latest
values (NaN until ``segments`` segments have been seen). The IAF: at the
sample count where the baseline ends, the mean periodogram of the baseline's
segments (those ending inside it, all samples finite) gives each channel's IAF
(``peak``: the interpolated local maximum standing ``min_peak_log10`` above a
1/f line over the search band, else the centre of gravity; ``cog``: centre of
gravity), fixed for the session; ``fixed_hz`` skips the estimate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.features import AperiodicConfig, IAFConfig, SpectrumConfig
from closedloop.features.aperiodic import AperiodicWork, fit_aperiodic
from closedloop.features.bandpower import Bands, hann
from closedloop.features.paf import paf_estimates

# ints layout (state and settings in one int64 array: every argument costs dispatch time)
_COUNT, _SEGS, _BL_SEGS, _BL_END, _STEP, _HOP, _WINDOW, _FA, _FB = 0, 1, 2, 3, 4, 5, 6, 7, 8
_KNEE, _DO_AP, _DO_IAF, _IAF_SRC, _IAF_COG, _N_CORR, _IAF_DONE, _N_OUT = 9, 10, 11, 12, 13, 14, 15, 16
_N_INTS = 17


@numba.njit(cache=True, nogil=True)
def _channel_features(
    c,
    ints,
    fl,
    avg,
    freqs,
    logf,
    corr_idx,
    iaf_off,
    iaf_corr,
    iaf_val,
    ap_set,
    ap_p,
    ap_w,
    ap_mask,
    ap_guess,
    ap_jac,
    ap_mat,
    ap_vec,
    ap_step,
    current,
):
    """Refresh channel ``c``'s row of ``current`` from its averaged spectrum ``avg[c]``."""
    df = fl[0]
    q_lo = fl[2]
    knee = ints[_KNEE] != 0
    col = 0
    if ints[_DO_AP] != 0:
        fa, fb = ints[_FA], ints[_FB]
        y = ap_w[4]
        for i in range(fa, fb):
            v = avg[c, i]
            y[i - fa] = math.log10(v) if v > 0.0 else np.nan
        fit_aperiodic(
            freqs[fa:fb],
            logf[fa:fb],
            y,
            knee,
            ap_set,
            ap_p,
            ap_w[:4],
            ap_mask,
            ap_guess,
            ap_jac,
            ap_mat,
            ap_vec,
            ap_step,
        )
        current[c, 0] = ap_p[0]
        current[c, 1] = ap_p[2]
        col = 2
        if knee:
            current[c, 2] = ap_p[1]
            col = 3
        for b in range(ints[_N_CORR]):
            total = 0.0
            for i in range(corr_idx[b, 0], corr_idx[b, 1]):
                if knee:
                    ap = ap_p[0] - math.log10(ap_p[1] + freqs[i] ** ap_p[2])
                else:
                    ap = ap_p[0] - ap_p[2] * logf[i]
                total += avg[c, i] - 10.0**ap
            current[c, col] = total * df
            col += 1
    if ints[_DO_IAF] != 0:
        iaf = iaf_val[c]
        current[c, col] = iaf
        col += 1
        n_b = iaf_off.shape[0]
        n_bins = avg.shape[1]
        for pass_ in range(2):  # raw powers, then the corrected powers of the flagged bands
            for b in range(n_b):
                if pass_ == 1 and (iaf_corr[b] == 0 or ints[_DO_AP] == 0):
                    continue
                if not np.isfinite(iaf):
                    current[c, col] = np.nan
                    col += 1
                    continue
                a = int(math.ceil((iaf + iaf_off[b, 0]) / df - 1e-9) - q_lo)
                e = int(math.ceil((iaf + iaf_off[b, 1]) / df - 1e-9) - q_lo)
                a = min(max(a, 0), n_bins)
                e = min(max(e, 0), n_bins)
                if a >= e:
                    current[c, col] = np.nan
                    col += 1
                    continue
                total = 0.0
                for i in range(a, e):
                    if pass_ == 0:
                        total += avg[c, i]
                    else:
                        if knee:
                            ap = ap_p[0] - math.log10(ap_p[1] + freqs[i] ** ap_p[2])
                        else:
                            ap = ap_p[0] - ap_p[2] * logf[i]
                        total += avg[c, i] - 10.0**ap
                current[c, col] = total * df
                col += 1


@numba.njit(cache=True, nogil=True)
def _spectrum_kernel(
    ints,
    fl,
    ring,
    table,
    scale,
    spectra,
    avg,
    bl_sum,
    im,
    freqs,
    logf,
    corr_idx,
    iaf_off,
    iaf_corr,
    iaf_val,
    cog_sel,
    peak_sel,
    pk_lx,
    pk_ly,
    pk_use,
    ap_set,
    ap_p,
    ap_w,
    ap_mask,
    ap_guess,
    ap_jac,
    ap_mat,
    ap_vec,
    ap_step,
    current,
    out,
    x,
):
    """Per sample: ring; per segment: periodogram, Welch average, features; at the baseline end: IAF.

    Writes ``current`` into ``out[k]`` at every frame; returns the frames written.
    """
    n = x.shape[0]
    n_ch = ring.shape[1]
    L = ring.shape[0]
    n_q = scale.shape[0]
    n_seg = spectra.shape[0]
    step, hop, window, bl_end = ints[_STEP], ints[_HOP], ints[_WINDOW], ints[_BL_END]
    n_out = ints[_N_OUT]
    k = 0
    for i in range(n):
        count = ints[_COUNT]
        slot = count % L
        for c in range(n_ch):
            ring[slot, c] = x[i, c]
        count += 1
        ints[_COUNT] = count
        if count >= L and (count - L) % step == 0:
            s_slot = ints[_SEGS] % n_seg
            oldest = count % L
            for c in range(n_ch):
                mean = 0.0
                for m in range(L):
                    mean += ring[(oldest + m) % L, c]
                mean /= L
                re = spectra[s_slot, c]
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
            ints[_SEGS] += 1
            if count <= bl_end:
                finite = True
                for c in range(n_ch):
                    for q in range(n_q):
                        if not np.isfinite(spectra[s_slot, c, q]):
                            finite = False
                if finite:
                    for c in range(n_ch):
                        for q in range(n_q):
                            bl_sum[c, q] += spectra[s_slot, c, q]
                    ints[_BL_SEGS] += 1
            if ints[_SEGS] >= n_seg:
                for c in range(n_ch):
                    for q in range(n_q):
                        total = 0.0
                        for s in range(n_seg):
                            total += spectra[s, c, q]
                        avg[c, q] = total / n_seg
                    _channel_features(
                        c,
                        ints,
                        fl,
                        avg,
                        freqs,
                        logf,
                        corr_idx,
                        iaf_off,
                        iaf_corr,
                        iaf_val,
                        ap_set,
                        ap_p,
                        ap_w,
                        ap_mask,
                        ap_guess,
                        ap_jac,
                        ap_mat,
                        ap_vec,
                        ap_step,
                        current,
                    )
        if count == bl_end and ints[_DO_IAF] != 0 and ints[_IAF_DONE] == 0:
            ints[_IAF_DONE] = 1
            src = ints[_IAF_SRC]
            for c in range(n_ch):
                if ints[_BL_SEGS] == 0:
                    iaf_val[c] = np.nan
                    continue
                cc = c if src < 0 else src
                cog, peak = paf_estimates(freqs, bl_sum[cc], cog_sel, peak_sel, fl[1], pk_lx, pk_ly, pk_use)
                iaf_val[c] = cog if ints[_IAF_COG] != 0 or not np.isfinite(peak) else peak
            if ints[_SEGS] >= n_seg:
                for c in range(n_ch):
                    _channel_features(
                        c,
                        ints,
                        fl,
                        avg,
                        freqs,
                        logf,
                        corr_idx,
                        iaf_off,
                        iaf_corr,
                        iaf_val,
                        ap_set,
                        ap_p,
                        ap_w,
                        ap_mask,
                        ap_guess,
                        ap_jac,
                        ap_mat,
                        ap_vec,
                        ap_step,
                        current,
                    )
        if count < window or (count - window) % hop != 0:
            continue
        for c in range(n_ch):
            for e in range(n_out):
                out[k, c, e] = current[c, e]
        k += 1
    return k


class SpectrumStage:
    """Streaming Welch spectrum of ``n_channels`` channels, with aperiodic fit and IAF bands, at the frames.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    n_channels : int
        Channels analysed (the first ``n_channels`` input columns).
    window, hop : int
        The extractor's frame schedule (frames carry the latest values).
    bands : dict of str -> (low, high)
        The pipeline's fixed bands (for ``<band>_ap``).
    spectrum : SpectrumConfig
        Welch settings (``segment_samples`` defaults to ``window``).
    aperiodic : AperiodicConfig or None
        Aperiodic fit settings (``None``: no fit).
    iaf : IAFConfig or None
        IAF-anchored bands (``None``: none).
    baseline_end : int
        Sample count at which the baseline ends (-1: no baseline).
    signal_names : list of str
        Names of the channels (for ``iaf.channel``).
    """

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        window: int,
        hop: int,
        bands: Bands,
        spectrum: SpectrumConfig,
        aperiodic: AperiodicConfig | None,
        iaf: IAFConfig | None,
        baseline_end: int = -1,
        signal_names: list[str] | None = None,
    ) -> None:
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        L = int(spectrum.segment_samples or window)
        self.segment = L
        self.step = max(L - int(round(spectrum.overlap * L)), 1)
        self.segments = int(spectrum.segments)
        df = self.sfreq / L
        self.df = df
        corrected = (list(bands) if aperiodic.corrected is None else list(aperiodic.corrected)) if aperiodic else []
        spans = []
        if aperiodic is not None:
            spans.append(aperiodic.range_hz)
            spans += [bands[b] for b in corrected if b in bands]
        if iaf is not None:
            centre = (iaf.fixed_hz, iaf.fixed_hz) if iaf.fixed_hz is not None else iaf.search_hz
            spans.append(centre)
            spans += [(centre[0] + lo, centre[1] + hi) for lo, hi in iaf.bands.values()]
        lo = min(s[0] for s in spans)
        hi = max(s[1] for s in spans)
        q_lo = max(int(math.ceil(lo / df - 1e-9)), 1)
        q_hi = min(int(math.floor(hi / df + 1e-9)), L // 2)
        if q_hi < q_lo:
            raise ValueError(f"no DFT bin between {lo} and {hi} Hz at {L} samples")
        q = np.arange(q_lo, q_hi + 1)
        self.freqs = q * df
        names: list[str] = []
        ints = np.zeros(_N_INTS, dtype=np.int64)
        ints[_BL_END] = int(baseline_end)
        ints[_STEP], ints[_HOP], ints[_WINDOW] = self.step, int(hop), int(window)
        corr_ranges = []
        if aperiodic is not None:
            sel = np.flatnonzero(
                (self.freqs >= aperiodic.range_hz[0] - 1e-9) & (self.freqs <= aperiodic.range_hz[1] + 1e-9)
            )
            ints[_FA], ints[_FB] = sel[0], sel[-1] + 1
            ints[_KNEE] = int(aperiodic.knee)
            ints[_DO_AP] = 1
            names += ["ap_offset", "ap_exponent"] + (["ap_knee"] if aperiodic.knee else [])
            for b in corrected:
                if b in bands:
                    blo, bhi = bands[b]
                    idx = np.flatnonzero((self.freqs >= blo - 1e-9) & (self.freqs < bhi - 1e-9))
                    corr_ranges.append((idx[0], idx[-1] + 1) if idx.size else (0, 0))
                    names.append(f"{b}_ap")
        self._corr_idx = np.array(corr_ranges, dtype=np.int64).reshape(-1, 2)
        ints[_N_CORR] = len(corr_ranges)
        n_fit = int(ints[_FB] - ints[_FA]) if aperiodic is not None else 2
        self._iaf_val = np.full(self.n_channels, np.nan)
        if iaf is not None:
            ints[_DO_IAF] = 1
            ints[_IAF_COG] = int(iaf.method == "cog")
            src = -1
            if iaf.channel is not None:
                src = list(signal_names or []).index(iaf.channel)
            ints[_IAF_SRC] = src
            self._iaf_off = np.array(list(iaf.bands.values()), dtype=float).reshape(-1, 2)
            self._iaf_corr = np.array([b in corrected for b in iaf.bands], dtype=np.int64)
            names += ["iaf", *iaf.bands] + [f"{b}_ap" for b in iaf.bands if b in corrected and aperiodic]
            if iaf.fixed_hz is not None:
                self._iaf_val[:] = iaf.fixed_hz
                ints[_IAF_DONE] = 1
            search = iaf.search_hz
            min_peak = iaf.min_peak_log10
        else:
            self._iaf_off = np.zeros((0, 2))
            self._iaf_corr = np.zeros(0, dtype=np.int64)
            search = (0.0, 0.0)
            min_peak = 0.0
        self.names = tuple(names)
        ints[_N_OUT] = len(names)
        self._cog_sel = (self.freqs >= search[0] - 1e-9) & (self.freqs <= search[1] + 1e-9)
        self._peak_sel = self._cog_sel.copy()
        self._ints = ints
        self._fl = np.array([df, min_peak, float(q_lo)])
        w = hann(L)
        phase = 2.0 * np.pi * np.outer(np.arange(L), q) / L
        table = np.empty((L, 2 * q.size))
        table[:, 0::2] = w[:, None] * np.cos(phase)
        table[:, 1::2] = -w[:, None] * np.sin(phase)
        self._table = table
        one_sided = np.where(2 * q == L, 1.0, 2.0)
        self._scale = one_sided / (self.sfreq * np.sum(w**2))
        nch, nq = self.n_channels, q.size
        self._ring = np.zeros((L, nch))
        self._spectra = np.zeros((self.segments, nch, nq))
        self._avg = np.zeros((nch, nq))
        self._bl_sum = np.zeros((nch, nq))
        self._im = np.zeros(nq)
        self._logf = np.log10(self.freqs)
        self._pk = (np.zeros(nq), np.zeros(nq), np.zeros(nq, dtype=np.bool_))
        a = aperiodic or AperiodicConfig()
        work = AperiodicWork(n_fit, a.knee, a.peak_width_hz, a.max_peaks, a.peak_threshold, a.min_peak_height)
        self._ap = work
        self._ap_w = np.zeros((5, n_fit))  # rows 0-3: the fit's work, row 4: the log10 spectrum
        self._current = np.full((nch, max(len(names), 1)), np.nan)
        if iaf is not None and iaf.fixed_hz is not None:
            self._current[:, names.index("iaf")] = iaf.fixed_hz  # known before the first spectrum

    @property
    def iaf(self) -> np.ndarray:
        """The IAF of each channel (NaN until the baseline has ended)."""
        return self._iaf_val

    @property
    def spectrum(self) -> np.ndarray:
        """The latest averaged PSD (n_channels, bins) at :attr:`freqs`."""
        return self._avg

    def _args(self) -> tuple:
        ap = self._ap
        return (
            self._ints,
            self._fl,
            self._ring,
            self._table,
            self._scale,
            self._spectra,
            self._avg,
            self._bl_sum,
            self._im,
            self.freqs,
            self._logf,
            self._corr_idx,
            self._iaf_off,
            self._iaf_corr,
            self._iaf_val,
            self._cog_sel,
            self._peak_sel,
            *self._pk,
            ap.settings,
            ap.params,
            self._ap_w,
            ap.mask,
            ap.guess,
            ap.jac,
            ap.mat,
            ap.vec,
            ap.step,
            self._current,
        )

    def process(self, x: np.ndarray, out: np.ndarray) -> int:
        """Feed float64 C-contiguous ``x``; write the features of completed frames (frames, channels, names)."""
        return _spectrum_kernel(*self._args(), out, x)

    def bind(self, out: np.ndarray) -> Callable[[np.ndarray], int]:
        """``process`` with its state and output fixed: a callable ``(x) -> frames written``."""
        return functools.partial(_spectrum_kernel, *self._args(), out)
