"""Aperiodic (1/f) fit of a power spectrum, the specparam/FOOOF algorithm as numba kernels.

A spectrum's log10 power ``y`` over frequencies ``f`` is modelled as an aperiodic
component plus Gaussian peaks (Donoghue et al., Nat Neurosci 2020,
doi:10.1038/s41593-020-00744-x; the ``specparam`` package, formerly ``fooof``):

- ``fixed``: ``L(f) = offset - exponent * log10(f)``;
- ``knee``: ``L(f) = offset - log10(knee + f ** exponent)``.

:func:`fit_aperiodic` follows specparam's ``spectral_fit`` algorithm step by step:

1. a first aperiodic fit to all points, then a robust re-fit to the points that do
   not stand above the first fit (specparam's 0.025-percentile threshold of the
   clipped, flattened spectrum);
2. peaks found one at a time in the spectrum flattened by that fit: the highest
   point, while it exceeds ``peak_threshold`` standard deviations of what is left
   (and ``min_peak_height``), becomes a Gaussian with the point's height and a
   width from its shortest half-height side, clamped to ``peak_width`` (with
   specparam's clamping quirks), and is subtracted; peaks closer to an edge than
   their width and the lower of two overlapping peaks are dropped;
3. the Gaussians' centre, height and width are refined jointly by least squares
   (Levenberg-Marquardt within specparam's bounds: centre within 3 widths of its
   guess and inside the range, height >= 0, width inside ``peak_width / 2``);
4. the final aperiodic fit to the spectrum with the peaks removed.

The fixed model is a straight line in log-log coordinates (closed-form least
squares); the knee model is fitted by Levenberg-Marquardt. Everything runs on
preallocated work arrays (:class:`AperiodicWork`): a fit allocates nothing.
Agreement with specparam on the same spectra is tested (tests/features/test_aperiodic.py)
and measured (benchmarks/bench_pain_features.py).

Aperiodic-corrected band power is the power above the fitted aperiodic component,
``sum over the band's bins of (P(f) - 10 ** L(f)) * df``, in the units of the
spectrum times Hz (µV²): it is near 0 (and may be negative) when no oscillation
stands above the background.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)

_LN10 = math.log(10.0)
_AP_PERCENTILE = 0.025  # specparam's ap_percentile_thresh (in percent)
_BW_STD_EDGE = 1.0  # specparam's bw_std_edge
_OVERLAP = 0.75  # specparam's gauss_overlap_thresh
_CF_BOUND = 1.5  # specparam's cf_bound (the centre moves at most 2 * 1.5 widths)
_TOL = 1e-5  # specparam's curve_fit tolerance (ftol = xtol = 1e-5)
_MAX_ITER = 20  # Levenberg-Marquardt iterations of the peak refinement (enough: see the module notes)


@numba.njit(cache=True, nogil=True)
def _line(x, y, lo, hi, mask):
    """Least-squares ``y = a - b x`` over the points ``lo <= i < hi`` with ``mask`` (all if mask is empty).

    Returns (a, b, ok).
    """
    n = 0
    sx = 0.0
    sy = 0.0
    use_all = mask.shape[0] == 0
    for i in range(lo, hi):
        if use_all or mask[i]:
            n += 1
            sx += x[i]
            sy += y[i]
    if n < 2:
        return 0.0, 0.0, False
    mx = sx / n
    my = sy / n
    sxx = 0.0
    sxy = 0.0
    for i in range(lo, hi):
        if use_all or mask[i]:
            dx = x[i] - mx
            sxx += dx * dx
            sxy += dx * (y[i] - my)
    if sxx == 0.0:
        return 0.0, 0.0, False
    slope = sxy / sxx
    return my - slope * mx, -slope, True


@numba.njit(cache=True, nogil=True)
def _knee_model(f, offset, knee, exponent):
    return offset - math.log10(knee + f**exponent)


@numba.njit(cache=True, nogil=True)
def _knee_cost(f, y, lo, hi, mask, offset, knee, exponent):
    use_all = mask.shape[0] == 0
    cost = 0.0
    for i in range(lo, hi):
        if use_all or mask[i]:
            inner = knee + f[i] ** exponent
            if not inner > 0.0:
                return np.inf
            r = y[i] - (offset - math.log10(inner))
            cost += r * r
    return cost


@numba.njit(cache=True, nogil=True)
def _solve(a, b, n, x):
    """Solve the ``n`` x ``n`` system ``a x = b`` in place by Gaussian elimination with partial pivoting."""
    for col in range(n):
        piv = col
        best = abs(a[col, col])
        for r in range(col + 1, n):
            if abs(a[r, col]) > best:
                best = abs(a[r, col])
                piv = r
        if best == 0.0 or not np.isfinite(best):
            return False
        if piv != col:
            for k in range(n):
                a[col, k], a[piv, k] = a[piv, k], a[col, k]
            b[col], b[piv] = b[piv], b[col]
        for r in range(col + 1, n):
            m = a[r, col] / a[col, col]
            if m != 0.0:
                for k in range(col, n):
                    a[r, k] -= m * a[col, k]
                b[r] -= m * b[col]
    for r in range(n - 1, -1, -1):
        s = b[r]
        for k in range(r + 1, n):
            s -= a[r, k] * x[k]
        x[r] = s / a[r, r]
    return True


@numba.njit(cache=True, nogil=True)
def _knee_fit(f, y, lo, hi, mask, p, mat, vec, step):
    """Levenberg-Marquardt fit of the knee model from ``p`` = (offset, knee, exponent); ``p`` is updated.

    Returns whether the final parameters give a finite cost.
    """
    use_all = mask.shape[0] == 0
    lam = 1e-3
    cost = _knee_cost(f, y, lo, hi, mask, p[0], p[1], p[2])
    if not np.isfinite(cost):
        return False
    for _ in range(200):
        for r in range(3):
            vec[r] = 0.0
            for k in range(3):
                mat[r, k] = 0.0
        for i in range(lo, hi):
            if use_all or mask[i]:
                fe = f[i] ** p[2]
                inner = p[1] + fe
                res = y[i] - (p[0] - math.log10(inner))
                j0 = 1.0
                j1 = -1.0 / (inner * _LN10)
                j2 = -fe * math.log(f[i]) / (inner * _LN10)
                jac = (j0, j1, j2)
                for r in range(3):
                    vec[r] += jac[r] * res
                    for k in range(3):
                        mat[r, k] += jac[r] * jac[k]
        improved = False
        rel = 0.0
        for _try in range(30):
            for r in range(3):  # the damped system, in the work matrix's rows 3..5
                for k in range(3):
                    mat[r + 3, k] = mat[r, k]
                mat[r + 3, r] += lam * (mat[r, r] if mat[r, r] > 0.0 else 1.0)
                step[r + 3] = vec[r]
            ok = _solve(mat[3:6], step[3:6], 3, step[0:3])
            if ok:
                c = _knee_cost(f, y, lo, hi, mask, p[0] + step[0], p[1] + step[1], p[2] + step[2])
                if c < cost:
                    rel = (cost - c) / max(cost, 1e-300)
                    p[0] += step[0]
                    p[1] += step[1]
                    p[2] += step[2]
                    cost = c
                    lam = max(lam * 0.1, 1e-12)
                    improved = True
                    break
            lam *= 10.0
            if lam > 1e12:
                break
        if not improved or rel < 1e-8:
            break
    return np.isfinite(cost)


@numba.njit(cache=True, nogil=True)
def _gauss_sum(f, guess, n_peaks, out):
    """Sum of the Gaussians ``guess[:n_peaks, :3]`` at ``f`` (each over its 8-width support)."""
    n = f.shape[0]
    res = f[1] - f[0]
    for i in range(n):
        out[i] = 0.0
    for p in range(n_peaks):
        ctr, hgt, wid = guess[p, 0], guess[p, 1], guess[p, 2]
        a = max(int(math.floor((ctr - 8.0 * wid - f[0]) / res)), 0)
        b = min(int(math.ceil((ctr + 8.0 * wid - f[0]) / res)) + 1, n)
        for i in range(a, b):
            d = f[i] - ctr
            out[i] += hgt * math.exp(-d * d / (2.0 * wid * wid))


@numba.njit(cache=True, nogil=True)
def _peak_cost(f, flat, guess, n_peaks, model):
    _gauss_sum(f, guess, n_peaks, model)
    cost = 0.0
    for i in range(f.shape[0]):
        r = flat[i] - model[i]
        cost += r * r
    return cost


@numba.njit(cache=True, nogil=True)
def _simple_fit(f, x, y, lo, hi, mask, knee, p, mat, vec, step):
    """Specparam's ``_simple_ap_fit`` (and the robust re-fit when ``mask`` is given); fills ``p``."""
    a, b, ok = _line(x, y, lo, hi, mask)
    if not knee:
        p[0] = a
        p[1] = 0.0
        p[2] = b
        return ok
    if mask.shape[0] == 0:  # first fit: specparam's guess (offset = first point, exponent = end-to-end slope)
        p[0] = y[lo]
        p[1] = 0.0
        p[2] = abs((y[hi - 1] - y[lo]) / (x[hi - 1] - x[lo]))
    return _knee_fit(f, y, lo, hi, mask, p, mat, vec, step)


@numba.njit(cache=True, nogil=True)
def _ap_value(f, x, knee, p):
    if knee:
        return p[0] - math.log10(p[1] + f ** p[2])
    return p[0] - p[2] * x


@numba.njit(cache=True, nogil=True)
def fit_aperiodic(f, x, y, knee, settings, p, work, mask, guess, jac, mat, vec, step):
    """Fit one log10 spectrum ``y`` at frequencies ``f`` (``x = log10 f``); return the number of peaks.

    ``settings`` = [peak width low, peak width high (Hz, two-sided as specparam's
    ``peak_width_limits``), max peaks, peak threshold (sd), min peak height (log10)];
    ``p`` receives (offset, knee, exponent) (knee 0 for the fixed model; NaN if the fit
    failed); work arrays (see :class:`AperiodicWork`): ``work`` (4, n), ``mask`` (n,) bool,
    ``guess`` (max peaks, 10), ``jac`` (m, n), ``mat`` (2 m, m), ``vec`` (m,) and ``step`` (2 m,)
    with ``m = 3 * max(max peaks, 1)``.
    """
    n = f.shape[0]
    for i in range(n):
        if not np.isfinite(y[i]):
            p[0] = p[1] = p[2] = np.nan
            return 0
    no_mask = mask[:0]
    flat, flat_iter, model, sort_buf = work[0], work[1], work[2], work[3]
    if not _simple_fit(f, x, y, 0, n, no_mask, knee, p, mat, vec, step):
        p[0] = p[1] = p[2] = np.nan
        return 0
    # robust re-fit: points at or below the clipped-flattened spectrum's 0.025th percentile
    for i in range(n):
        v = y[i] - _ap_value(f[i], x[i], knee, p)
        flat[i] = v if v > 0.0 else 0.0
        sort_buf[i] = flat[i]
    sort_buf.sort()
    pos = _AP_PERCENTILE / 100.0 * (n - 1)
    k = int(math.floor(pos))
    frac = pos - k
    thresh = sort_buf[k] + (sort_buf[min(k + 1, n - 1)] - sort_buf[k]) * frac
    for i in range(n):
        mask[i] = flat[i] <= thresh
    if not _simple_fit(f, x, y, 0, n, mask, knee, p, mat, vec, step):
        p[0] = p[1] = p[2] = np.nan
        return 0
    for i in range(n):
        flat[i] = y[i] - _ap_value(f[i], x[i], knee, p)
        flat_iter[i] = flat[i]
    # peak guesses
    w_lo, w_hi = settings[0], settings[1]
    max_peaks, threshold, min_height = int(settings[2]), settings[3], settings[4]
    res = f[1] - f[0]
    n_peaks = 0
    while n_peaks < max_peaks:
        best = 0
        for i in range(1, n):
            if flat_iter[i] > flat_iter[best]:
                best = i
        height = flat_iter[best]
        mean = 0.0
        for i in range(n):
            mean += flat_iter[i]
        mean /= n
        var = 0.0
        for i in range(n):
            var += (flat_iter[i] - mean) ** 2
        if height <= threshold * math.sqrt(var / n):
            break
        if not height > min_height:
            break
        half = 0.5 * height
        short = -1
        for i in range(best - 1, 0, -1):  # specparam's search stops before index 0
            if flat_iter[i] <= half:
                short = best - i
                break
        for i in range(best + 1, n):
            if flat_iter[i] <= half:
                if short < 0 or i - best < short:
                    short = i - best
                break
        if short < 0:
            std = 0.5 * (w_lo + w_hi)
        else:
            std = short * 2.0 * res / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        if std < w_lo / 2.0:
            std = w_lo / 2.0
        if std > w_hi / 2.0:
            std = w_lo / 2.0  # specparam clamps an over-wide guess to the *lower* limit
        guess[n_peaks, 0] = f[best]
        guess[n_peaks, 1] = height
        guess[n_peaks, 2] = std
        for i in range(n):
            d = f[i] - f[best]
            flat_iter[i] -= height * math.exp(-d * d / (2.0 * std * std))
        n_peaks += 1
    # drop peaks near the edges
    kept = 0
    for q in range(n_peaks):
        ctr, wid = guess[q, 0], guess[q, 2] * _BW_STD_EDGE
        if abs(ctr - f[0]) > wid and abs(ctr - f[n - 1]) > wid:
            for c in range(3):
                guess[kept, c] = guess[q, c]
            kept += 1
    n_peaks = kept
    # sort by centre (insertion sort; few peaks), then drop the lower of overlapping neighbours
    for q in range(1, n_peaks):
        j = q
        while j > 0 and guess[j - 1, 0] > guess[j, 0]:
            for c in range(3):
                guess[j - 1, c], guess[j, c] = guess[j, c], guess[j - 1, c]
            j -= 1
    for q in range(n_peaks):
        guess[q, 3] = 0.0  # drop marks
    for q in range(n_peaks - 1):
        if guess[q, 0] + guess[q, 2] * _OVERLAP > guess[q + 1, 0] - guess[q + 1, 2] * _OVERLAP:
            if guess[q, 1] <= guess[q + 1, 1]:
                guess[q, 3] = 1.0
            else:
                guess[q + 1, 3] = 1.0
    kept = 0
    for q in range(n_peaks):
        if guess[q, 3] == 0.0:
            for c in range(3):
                guess[kept, c] = guess[q, c]
            kept += 1
    n_peaks = kept
    if n_peaks > 0:
        for q in range(n_peaks):  # specparam's centre bounds: 2 * cf_bound widths, inside the range
            ctr, wid = guess[q, 0], guess[q, 2]
            guess[q, 3] = max(ctr - 2.0 * _CF_BOUND * wid, f[0])
            guess[q, 4] = min(ctr + 2.0 * _CF_BOUND * wid, f[n - 1])
        _refine_peaks(f, flat, guess, n_peaks, w_lo / 2.0, w_hi / 2.0, model, jac, mat, vec, step)
    _gauss_sum(f, guess, n_peaks, model)
    for i in range(n):
        flat_iter[i] = y[i] - model[i]  # the peak-removed spectrum
    if not _simple_fit(f, x, flat_iter, 0, n, no_mask, knee, p, mat, vec, step):
        p[0] = p[1] = p[2] = np.nan
    return n_peaks


@numba.njit(cache=True, nogil=True)
def _refine_peaks(f, flat, guess, n_peaks, w_lo, w_hi, model, jac, mat, vec, step):
    """Refine the Gaussians ``guess[:n_peaks, :3]`` by projected Levenberg-Marquardt.

    Centre bounds are in ``guess[:, 3:5]``, heights stay >= 0, widths within ``[w_lo, w_hi]``;
    ``guess[:, 5:8]`` holds the trial parameters and ``guess[:, 8:10]`` each peak's support (the
    bins within 8 widths of its centre, beyond which its Jacobian is below 1e-13 of its height):
    the normal equations only sum where two supports overlap.
    """
    n_p = 3 * n_peaks
    n = f.shape[0]
    lam = 1e-3
    cost = _peak_cost(f, flat, guess, n_peaks, model)
    trial = guess[:, 5:8]
    res = f[1] - f[0]
    for _ in range(_MAX_ITER):
        for i in range(n):
            model[i] = 0.0
        for p in range(n_peaks):
            ctr, hgt, wid = guess[p, 0], guess[p, 1], guess[p, 2]
            a = max(int(math.floor((ctr - 8.0 * wid - f[0]) / res)), 0)
            b = min(int(math.ceil((ctr + 8.0 * wid - f[0]) / res)) + 1, n)
            guess[p, 8] = a
            guess[p, 9] = b
            for i in range(a, b):
                d = f[i] - ctr
                e = math.exp(-d * d / (2.0 * wid * wid))
                model[i] += hgt * e
                jac[3 * p, i] = hgt * e * d / (wid * wid)
                jac[3 * p + 1, i] = e
                jac[3 * p + 2, i] = hgt * e * d * d / (wid * wid * wid)
        for p in range(n_peaks):
            a, b = int(guess[p, 8]), int(guess[p, 9])
            for u in range(3):
                r = 3 * p + u
                jr = jac[r]
                s = 0.0
                for i in range(a, b):
                    s += jr[i] * (flat[i] - model[i])
                vec[r] = s
            for q in range(p, n_peaks):
                lo = max(a, int(guess[q, 8]))
                hi = min(b, int(guess[q, 9]))
                for u in range(3):
                    r = 3 * p + u
                    jr = jac[r]
                    for v in range(3):
                        k = 3 * q + v
                        jk = jac[k]
                        s = 0.0
                        for i in range(lo, hi):
                            s += jr[i] * jk[i]
                        mat[r, k] = s
                        mat[k, r] = s
        improved = False
        rel = 0.0
        moved = 0.0
        for _try in range(30):
            for r in range(n_p):
                for k in range(n_p):
                    mat[n_p + r, k] = mat[r, k]
                mat[n_p + r, r] += lam * (mat[r, r] if mat[r, r] > 0.0 else 1.0)
                step[n_p + r] = vec[r]
            if _solve(mat[n_p : 2 * n_p], step[n_p : 2 * n_p], n_p, step[0:n_p]):
                for p in range(n_peaks):
                    trial[p, 0] = min(max(guess[p, 0] + step[3 * p], guess[p, 3]), guess[p, 4])
                    trial[p, 1] = max(guess[p, 1] + step[3 * p + 1], 0.0)
                    trial[p, 2] = min(max(guess[p, 2] + step[3 * p + 2], w_lo), w_hi)
                c = _peak_cost(f, flat, trial, n_peaks, model)
                if c < cost:
                    rel = (cost - c) / max(cost, 1e-300)
                    for p in range(n_peaks):  # largest relative parameter change (curve_fit's xtol)
                        for q in range(3):
                            moved = max(moved, abs(trial[p, q] - guess[p, q]) / max(abs(guess[p, q]), 1e-12))
                            guess[p, q] = trial[p, q]
                    cost = c
                    lam = max(lam * 0.1, 1e-12)
                    improved = True
                    break
            lam *= 10.0
            if lam > 1e12:
                break
        if not improved or rel < _TOL or moved < _TOL:
            break


class AperiodicWork:
    """Preallocated work arrays of :func:`fit_aperiodic` for spectra of ``n`` bins.

    Parameters
    ----------
    n : int
        Bins of the fitted spectrum.
    knee : bool
        Fit the knee model (else the fixed model).
    peak_width : (float, float)
        Limits of a peak's width (Hz; specparam's ``peak_width_limits``).
    max_peaks : int
        Peaks fitted at most (specparam's ``max_n_peaks``).
    peak_threshold : float
        Peak detection threshold (standard deviations of the flattened spectrum).
    min_peak_height : float
        Absolute peak height threshold (log10 power).
    """

    def __init__(
        self,
        n: int,
        knee: bool = False,
        peak_width: tuple[float, float] = (0.5, 12.0),
        max_peaks: int = 6,
        peak_threshold: float = 2.0,
        min_peak_height: float = 0.0,
    ) -> None:
        self.knee = bool(knee)
        self.settings = np.array([peak_width[0], peak_width[1], max_peaks, peak_threshold, min_peak_height], float)
        m = 3 * max(int(max_peaks), 1)
        self.params = np.zeros(3)
        self.work = np.zeros((4, n))
        self.mask = np.zeros(n, dtype=np.bool_)
        self.guess = np.zeros((max(int(max_peaks), 1), 10))
        self.jac = np.zeros((m, n))
        self.mat = np.zeros((2 * m, m))
        self.vec = np.zeros(m)
        self.step = np.zeros(2 * m)

    def fit(self, freqs: np.ndarray, power: np.ndarray) -> tuple[float, float, float]:
        """Return (offset, knee, exponent) of a linear power spectrum (knee 0 for the fixed model)."""
        f = np.ascontiguousarray(freqs, dtype=float)
        y = np.log10(np.asarray(power, dtype=float))
        fit_aperiodic(
            f,
            np.log10(f),
            y,
            self.knee,
            self.settings,
            self.params,
            self.work,
            self.mask,
            self.guess,
            self.jac,
            self.mat,
            self.vec,
            self.step,
        )
        return float(self.params[0]), float(self.params[1]), float(self.params[2])
