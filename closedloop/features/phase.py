"""Real-time phase, amplitude, instantaneous frequency and SNR of a narrow band, on the sample clock.

One :class:`PhaseEstimator` per ``[features.phase.<rhythm>]`` section. Its
numba kernel keeps the newest samples of every (virtual) channel in a ring;
at each frame (sample counts ``window + j * hop``, the extractor's rule) it
copies the last ``window_s`` of them into a contiguous buffer and estimates,
for the frame's newest sample, the band's analytic signal ``z``: phase
``angle(z)`` (cosine phase: 0 = peak, ±π = trough), amplitude ``|z|`` (µV),
instantaneous frequency (Hz) and the band's SNR against its flanks (dB). The
estimate depends only on the samples up to the frame, walked in order, so
frames are bit-identical for any chunking.

The estimators, implemented from their descriptions (docs/phase.md has the
sources and the measured accuracy):

``ar`` — AR forward prediction (Zrenner et al. 2018, Brain Stimul 11:374;
    "phastimate"). A window-method FIR band-pass applied once, centred (zero
    phase), keeping only the samples it fully covers (half the filter order
    is lost at each edge); a Yule–Walker AR model of those samples
    (Levinson–Durbin); forward prediction across the lost edge and half a
    Hilbert window beyond the newest sample; the analytic signal at the
    newest sample from an FFT Hilbert transform of the last ``hilbert_s``
    (computed as a dot product: the transform is linear, so its value at one
    position is a fixed kernel applied to the window).
``etp`` — educated temporal prediction (Shirinpour et al. 2020, J Neural
    Eng 17:046002). A calibration block (the first ``train_s``) gives the
    median inter-peak interval of the band-passed signal, then the period is
    adjusted so that phases predicted from the last peak best match the
    calibration block's offline (zero-phase filter + Hilbert) phase — the
    paper's bias correction. Live: the same zero-phase FIR on the window, the
    last peak (refined by a parabola through its three samples), and the
    phase ``2π (now - peak) / period``.
``echt`` — endpoint-corrected Hilbert transform (Schreglmann et al. 2021,
    Nat Commun 12:363): FFT of the window, negative frequencies zeroed,
    positive ones multiplied by the frequency response of a causal
    Butterworth band-pass, inverse FFT, the last sample. The whole chain is
    linear, so its last sample is one complex kernel applied to the window
    (computed once). Calibration divides the endpoint by
    its complex gain for a tone — the deterministic part of the endpoint
    operator (Osmers & Kolossa 2026, arXiv:2601.13962) — so that a tone reads
    its own phase and amplitude (µV). That gain's phase turns by ~35° per Hz
    across an 8–13 Hz band at order 2 (the filter's group delay), so
    ``calibrate = "band"`` (default; our extension) takes it at the band's
    dominant frequency over the last ``snr_window_s`` (the power-weighted mean
    frequency of the SNR spectrum below); ``"centre"`` at the band's peak
    response, as in the paper; ``"none"`` leaves the plain ecHT.

SNR and frequency (every estimator): Hann-windowed DFT power of the last
``snr_window_s`` on a 0.5-Hz grid; the SNR is the mean over the band divided
by the mean over two flanks of ``snr_flank_hz`` placed ``snr_gap_hz``
outside it (dB); the band's dominant frequency is its power-weighted mean
frequency. Both are recomputed every 50 ms of frames. ``freq`` is that
dominant frequency (ETP: its calibrated period's), the frequency a trigger
predicts the phase forward with: on the shared recording it predicts the
phase 50 ms ahead better than a frequency from the estimated phase's own
slope, which is noisy (79.1 % against 72.8 % for the ecHT; docs/phase.md).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.features import PHASE_OUTPUTS, PhaseConfig

__all__ = ["PhaseEstimator", "echt_kernel", "hilbert_kernels"]

_AR, _ETP, _ECHT = 0, 1, 2
_CODES = {"ar": _AR, "etp": _ETP, "echt": _ECHT}
#: The SNR and the band's dominant frequency are recomputed every this long (s, in whole frames); frames in
#: between repeat them.
SPECTRUM_EVERY_S = 0.05
#: Setup vector (int64): estimator, window, hop, samples per estimate, AR order, samples predicted, Hilbert
#: window, FIR edge, spectrum samples, training samples, frames between spectrum updates.
_EST, _WINDOW, _HOP, _N, _P, _PRED, _L, _EDGE, _NS, _NTRAIN, _SPEC = range(11)


@numba.njit(cache=True, nogil=True, inline="always")
def _wrap(a):
    """Wrap an angle to [-π, π)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@numba.njit(cache=True, nogil=True)
def _fir_valid(w, n, taps, y):
    """``y[i] = Σ taps[k] w[i + k]`` over the ``n - len(taps) + 1`` samples the filter covers; return that count."""
    nt = taps.shape[0]
    m = n - nt + 1
    for i in range(m):
        acc = 0.0
        for k in range(nt):
            acc += taps[k] * w[i + k]
        y[i] = acc
    return m


@numba.njit(cache=True, nogil=True)
def _yule_walker(y, m, p, r, a, tmp):
    """Fit ``y[n] ≈ Σ_{j=1..p} a[j] y[n-j]`` on ``y[:m]`` (biased autocorrelation, Levinson–Durbin)."""
    for k in range(p + 1):
        acc = 0.0
        for i in range(m - k):
            acc += y[i] * y[i + k]
        r[k] = acc / m
    for j in range(p + 1):
        a[j] = 0.0
    e = r[0]
    if not e > 0.0:
        return False
    for i in range(1, p + 1):
        acc = r[i]
        for j in range(1, i):
            acc -= a[j] * r[i - j]
        kk = acc / e
        for j in range(1, i):
            tmp[j] = a[j] - kk * a[i - j]
        for j in range(1, i):
            a[j] = tmp[j]
        a[i] = kk
        e *= 1.0 - kk * kk
        if not e > 0.0:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _last_peak(y, m):
    """Return the sub-sample position and height of the last local maximum of ``y[:m]`` above 0 (-1 if none)."""
    for i in range(m - 2, 0, -1):
        v = y[i]
        if v > 0.0 and v > y[i - 1] and v >= y[i + 1]:
            den = y[i - 1] - 2.0 * v + y[i + 1]
            delta = 0.5 * (y[i - 1] - y[i + 1]) / den if den < 0.0 else 0.0
            return i + delta, v - 0.25 * (y[i - 1] - y[i + 1]) * delta
    return -1.0, math.nan


@numba.njit(cache=True, nogil=True)
def _estimate(setup, w, taps, hk, g, cal, period, y, r, a, tmp, res):
    """Write the phase and amplitude of the newest sample of ``w`` into ``res[0:2]`` (NaN when undefined).

    ``period``: the ETP period (samples); for the ecHT, ``res[2]`` holds the band's dominant frequency on
    entry, at which a ``cal`` table gives the endpoint's inverse gain.
    """
    est = setup[_EST]
    n = setup[_N]
    res[0] = math.nan
    res[1] = math.nan
    if est == _ECHT:
        re = 0.0
        im = 0.0
        for i in range(n):
            re += g[0, i] * w[i]
            im += g[1, i] * w[i]
        if cal.shape[1] > 1:  # the inverse gain at the band's frequency, interpolated on the table's grid
            if not math.isfinite(res[2]):
                return
            pos = (res[2] - cal[0, 0]) / (cal[0, 1] - cal[0, 0])
            pos = min(max(pos, 0.0), cal.shape[1] - 1.0)
            j = min(int(pos), cal.shape[1] - 2)
            u = pos - j
            cr = cal[1, j] + u * (cal[1, j + 1] - cal[1, j])
            ci = cal[2, j] + u * (cal[2, j + 1] - cal[2, j])
            re, im = re * cr - im * ci, re * ci + im * cr
        res[0] = math.atan2(im, re)
        res[1] = math.sqrt(re * re + im * im)
        return
    m = _fir_valid(w, n, taps, y)
    if est == _ETP:
        if not period > 0.0:
            return
        pos, height = _last_peak(y, m)
        if pos >= 0.0:
            res[0] = _wrap(2.0 * math.pi * (n - 1 - (pos + setup[_EDGE])) / period)
            res[1] = height
        return
    p = setup[_P]
    predicted = setup[_PRED]
    L = setup[_L]
    if not _yule_walker(y, m, p, r, a, tmp):
        return
    for i in range(m, m + predicted):
        acc = 0.0
        for j in range(1, p + 1):
            acc += a[j] * y[i - j]
        y[i] = acc
    s = m + predicted - L
    re = 0.0
    im = 0.0
    for i in range(L):
        re += hk[0, 0, i] * y[s + i]
        im += hk[0, 1, i] * y[s + i]
    res[0] = math.atan2(im, re)
    res[1] = math.sqrt(re * re + im * im)


@numba.njit(cache=True, nogil=True)
def _spectrum(ws, ns, tab, in_band, freqs):
    """Return the SNR (dB: mean band power over mean flank power) of ``ws[:ns]`` and the band's mean frequency."""
    mean = 0.0
    for i in range(ns):
        mean += ws[i]
    mean /= ns
    band = 0.0
    flank = 0.0
    moment = 0.0
    nb = 0
    nf = 0
    for f in range(tab.shape[0]):
        re = 0.0
        im = 0.0
        for i in range(ns):
            v = ws[i] - mean
            re += tab[f, 0, i] * v
            im += tab[f, 1, i] * v
        pw = re * re + im * im
        if in_band[f]:
            band += pw
            moment += pw * freqs[f]
            nb += 1
        else:
            flank += pw
            nf += 1
    if not (band > 0.0 and flank > 0.0):
        return math.nan, math.nan
    return 10.0 * math.log10((band / nb) / (flank / nf)), moment / band


@numba.njit(cache=True, nogil=True)
def _window(ring, count, need, c, work):
    """Copy channel ``c``'s newest ``need`` samples from the ring into ``work``; return whether all are finite."""
    n_ring = ring.shape[0]
    first = count - need
    finite = True
    for m in range(need):
        v = ring[(first + m) % n_ring, c]
        work[m] = v
        if not math.isfinite(v):
            finite = False
    return finite


@numba.njit(cache=True, nogil=True)
def _phase_kernel(
    x, i0, i1, ring, state, train, setup, fs, taps, hk, g, cal, per, tab, in_band, freqs, work, y, r, a, tmp, res, out,
    k0, col
):  # fmt: skip
    """Walk samples ``x[i0:i1]``; at each frame write 4 outputs per channel to ``out[k, c, col:col+4]``.

    Returns the frames written (from row ``k0``). ``state[0]`` counts samples; the first ``setup[_NTRAIN]``
    samples of every channel are kept in ``train`` (ETP calibration). ``per`` holds, per channel, the ETP
    period, the last SNR and the band's dominant frequency (recomputed every ``setup[_SPEC]`` frames,
    counted on the sample clock, so chunking cannot move them).
    """
    n_ch = ring.shape[1]
    n_ring = ring.shape[0]
    window, hop = setup[_WINDOW], setup[_HOP]
    n = setup[_N]
    ns = setup[_NS]
    n_train = setup[_NTRAIN]
    etp = setup[_EST] == _ETP
    k = k0
    for i in range(i0, i1):
        count = state[0]
        slot = count % n_ring
        for c in range(n_ch):
            ring[slot, c] = x[i, c]
        if count < n_train:
            for c in range(n_ch):
                train[count, c] = x[i, c]
        count += 1
        state[0] = count
        if count < window or (count - window) % hop != 0:
            continue
        update = ((count - window) // hop) % setup[_SPEC] == 0
        for c in range(n_ch):
            if update:
                snr = f_band = math.nan
                if count >= ns and _window(ring, count, ns, c, work):
                    snr, f_band = _spectrum(work, ns, tab, in_band, freqs)
                per[n_ch + c] = snr
                per[2 * n_ch + c] = f_band
            res[2] = fs / per[c] if etp else per[2 * n_ch + c]
            if count >= n and _window(ring, count, n, c, work):
                _estimate(setup, work, taps, hk, g, cal, per[c], y, r, a, tmp, res)
            else:
                res[0] = math.nan
                res[1] = math.nan
            out[k, c, col] = res[0]
            out[k, c, col + 1] = res[1]
            out[k, c, col + 2] = res[2] if math.isfinite(res[0]) else math.nan
            out[k, c, col + 3] = per[n_ch + c]
        k += 1
    return k - k0


@numba.njit(cache=True, nogil=True)
def _etp_lags(xc, n, taps, ends, edge, y, lags):
    """For windows of ``n`` samples ending at ``ends`` (inclusive), samples from the last peak to the end."""
    for j in range(ends.shape[0]):
        e = ends[j]
        m = _fir_valid(xc[e - n + 1 : e + 1], n, taps, y)
        pos, _h = _last_peak(y, m)
        lags[j] = n - 1 - (pos + edge) if pos >= 0.0 else math.nan


def hilbert_kernels(length: int, positions: list[int]) -> np.ndarray:
    """Return ``(len(positions), 2, length)``: re/im of the FFT Hilbert analytic signal at each position.

    ``scipy.signal.hilbert(x)[q] == kernels[i, 0] @ x + 1j * kernels[i, 1] @ x`` for ``q = positions[i]``.
    """
    from scipy import signal  # lazy: a pipeline without phase outputs never imports scipy.signal

    h = signal.hilbert(np.eye(length), axis=0)  # column n: the analytic signal of a unit impulse at n
    rows = h[positions, :]
    return np.ascontiguousarray(np.stack([rows.real, rows.imag], axis=1))


def echt_kernel(n: int, band: tuple[float, float], sfreq: float, order: int = 2, calibrate: bool = True) -> np.ndarray:
    """Return ``(2, n)``: re/im of the kernel whose dot product with a window is the ecHT at its last sample.

    The ecHT of ``x`` (Schreglmann et al. 2021) is ``ifft(mask * H * fft(x))[-1]`` with ``mask`` the analytic
    one-sided weights (1, 2, ..., 2, 1 at Nyquist, 0) and ``H`` the causal Butterworth band-pass's frequency
    response at the DFT frequencies; it equals ``Σ g[k] x[k]`` with ``g = fft(mask * H * e^{2πik(n-1)/n}) / n``.
    ``calibrate`` divides ``g`` by its gain at the band's peak response (:func:`echt_gain`): a pure tone there
    then reads its own phase and amplitude.
    """
    from scipy import signal  # lazy: a pipeline without phase outputs never imports scipy.signal

    lo, hi = band
    b, a = signal.butter(order, [lo, hi], btype="bandpass", fs=sfreq)
    k = np.arange(n)
    _, resp = signal.freqz(b, a, worN=k * sfreq / n, fs=sfreq)
    mask = np.zeros(n)
    mask[0] = 1.0
    mask[1 : (n + 1) // 2] = 2.0
    if n % 2 == 0:
        mask[n // 2] = 1.0
    g = np.fft.fft(mask * resp * np.exp(2j * np.pi * k * (n - 1) / n)) / n
    g = np.stack([g.real, g.imag])
    if calibrate:
        grid = np.linspace(lo, hi, 401)
        _, h = signal.freqz(b, a, worN=grid, fs=sfreq)
        gain = echt_gain(g, np.array([grid[int(np.argmax(np.abs(h)))]]), sfreq)[0]
        g = np.stack([(g[0] + 1j * g[1]) / gain]).view(float).reshape(n, 2).T
    return np.ascontiguousarray(g)


def echt_gain(g: np.ndarray, freqs: np.ndarray, sfreq: float) -> np.ndarray:
    """Return the endpoint's complex gain at ``freqs``: what a unit tone ending at phase 0 reads, times 2.

    A tone ``A cos(ω k + θ)`` ending at phase ``θ`` reads ``A/2 (G₊ e^{iθ} + G₋ e^{-iθ})`` with
    ``G± = Σ g[k] e^{±iω(k - n + 1)}``; ``G₋`` is the small leakage the analytic mask leaves (Osmers &
    Kolossa's residual term), ``G₊`` the deterministic gain. Returns ``G₊ / 2``.
    """
    n = g.shape[1]
    k = np.arange(n)
    e = np.exp(2j * np.pi * np.outer(freqs, k - (n - 1)) / sfreq)
    return 0.5 * (e @ (g[0] + 1j * g[1]))


class PhaseEstimator:
    """Phase, amplitude, frequency and SNR of one rhythm on ``n_channels`` (virtual) channels.

    Parameters
    ----------
    name : str
        The rhythm's name; the outputs are ``<name>_phase``, ``_amp``, ``_freq``, ``_snr``.
    cfg : PhaseConfig
        The ``[features.phase.<name>]`` section.
    sfreq : float
        Sampling rate (Hz).
    n_channels : int
        Channels analysed (the first ``n_channels`` input columns).
    window, hop : int
        The extractor's frame schedule (samples).
    """

    def __init__(self, name: str, cfg: PhaseConfig, sfreq: float, n_channels: int, window: int, hop: int) -> None:
        from scipy import signal  # lazy: a pipeline without phase outputs never imports scipy.signal

        self.name = name
        self.cfg = cfg
        self.sfreq = fs = float(sfreq)
        self.n_channels = nch = int(n_channels)
        self.names = tuple(f"{name}_{kind}" for kind in PHASE_OUTPUTS)
        lo, hi = cfg.band
        n = max(8, int(round(cfg.window_s * fs)))
        est = _CODES[cfg.estimator]
        taps = np.zeros(1)
        hk = np.zeros((1, 2, 1))
        g = np.zeros((2, 1))
        cal = np.zeros((3, 1))
        p = predicted = L = edge = n_train = 0
        y_len = 1
        if est in (_AR, _ETP):
            order = cfg.filter_order_at(fs)
            if order + 8 > n:
                raise ValueError(
                    f"features.phase.{name}.filter_order_s: order {order} leaves fewer than 8 samples of a "
                    f"{n}-sample window; lengthen window_s or shorten filter_order_s"
                )
            taps = signal.firwin(order + 1, [lo, hi], pass_zero=False, fs=fs, window="hamming")
            edge = order // 2
            y_len = n - order + 1
        if est == _AR:
            p = cfg.ar_order_at(fs)
            L = 2 * max(2, int(round(cfg.hilbert_s * fs / 2)))
            predicted = edge + L // 2  # across the lost edge, then half a Hilbert window past the newest sample
            if n - order < 2 * p:
                raise ValueError(
                    f"features.phase.{name}: a {n}-sample window leaves {n - order} filtered samples, too few for "
                    f"an order-{p} AR model; lengthen window_s"
                )
            hk = hilbert_kernels(L, [L // 2 - 1])  # the newest sample sits just before the window's middle
            y_len = n - order + predicted
        elif est == _ETP:
            n_train = int(round(cfg.train_s * fs))
        else:
            g = echt_kernel(n, (lo, hi), fs, cfg.echt_order, calibrate=cfg.calibrate == "centre")
            if cfg.calibrate == "band":  # the inverse gain over the band, 0.05 Hz apart
                grid = np.arange(lo, hi + 1e-9, 0.05)
                inv = 1.0 / echt_gain(g, grid, fs)
                cal = np.stack([grid, inv.real, inv.imag])
        ns = max(8, int(round(cfg.snr_window_s * fs)))
        band_f = np.arange(lo, hi + 1e-9, 0.5)
        lo_f = np.arange(lo - cfg.snr_gap_hz - cfg.snr_flank_hz, lo - cfg.snr_gap_hz + 1e-9, 0.5)
        hi_f = np.arange(hi + cfg.snr_gap_hz, hi + cfg.snr_gap_hz + cfg.snr_flank_hz + 1e-9, 0.5)
        freqs = np.concatenate([band_f, lo_f, hi_f])
        hann = np.hanning(ns)
        arg = 2.0 * np.pi * np.outer(freqs, np.arange(ns)) / fs
        self.n, self.edge, self.n_train = n, edge, n_train
        setup = [0] * 11
        setup[_EST], setup[_WINDOW], setup[_HOP], setup[_N] = est, window, hop, n
        setup[_P], setup[_PRED], setup[_L], setup[_EDGE] = p, predicted, L, edge
        setup[_NS], setup[_NTRAIN] = ns, n_train
        setup[_SPEC] = max(1, math.ceil(SPECTRUM_EVERY_S * fs / hop))
        self._setup = np.array(setup, dtype=np.int64)
        self._ring = np.zeros((max(n, ns), nch))
        self._state = np.zeros(1, dtype=np.int64)
        self._train = np.zeros((n_train, nch))
        self._taps = np.ascontiguousarray(taps)
        self._hk = hk
        self._g = g
        self._cal = np.ascontiguousarray(cal)
        self._per = np.full(3 * nch, np.nan)  # per channel: ETP period (samples), SNR (dB), band frequency (Hz)
        self.periods = self._per[:nch]
        self._tab = np.ascontiguousarray(np.stack([hann * np.cos(arg), -hann * np.sin(arg)], axis=1))
        self._in_band = np.concatenate([np.ones(band_f.size, np.bool_), np.zeros(lo_f.size + hi_f.size, np.bool_)])
        self._freqs = freqs
        self._work = np.zeros(max(n, ns))
        self._y = np.zeros(y_len)
        self._r = np.zeros(p + 1)
        self._a = np.zeros(p + 1)
        self._tmp = np.zeros(p + 1)
        self._res = np.zeros(3)
        self.trained = est != _ETP

    @property
    def samples(self) -> int:
        """Return the samples seen."""
        return int(self._state[0])

    def process(self, x: np.ndarray, out: np.ndarray, col: int = 0) -> int:
        """Feed float64 C-contiguous ``x``; write each frame's 4 outputs to ``out[k, c, col:col + 4]``; return frames.

        An ETP estimator calibrates at the exact sample its training block ends, whatever the chunking.
        """
        n = x.shape[0]
        if self.trained or self.samples + n < self.n_train:
            return self._run(x, 0, n, out, 0, col)
        m = self.n_train - self.samples
        k = self._run(x, 0, m, out, 0, col)
        self.calibrate()
        return k + self._run(x, m, n, out, k, col)

    def _run(self, x: np.ndarray, i0: int, i1: int, out: np.ndarray, k0: int, col: int) -> int:
        return _phase_kernel(
            x,
            i0,
            i1,
            self._ring,
            self._state,
            self._train,
            self._setup,
            self.sfreq,
            self._taps,
            self._hk,
            self._g,
            self._cal,
            self._per,
            self._tab,
            self._in_band,
            self._freqs,
            self._work,
            self._y,
            self._r,
            self._a,
            self._tmp,
            self._res,
            out,
            k0,
            col,
        )

    def calibrate(self) -> None:
        """ETP: set each channel's period from its training block (the block must be complete)."""
        for c in range(self.n_channels):
            self.periods[c] = etp_period(self._train[:, c], self._taps, self.n, self.sfreq, self.cfg.band)
        self.trained = True


def etp_period(xc: np.ndarray, taps: np.ndarray, n: int, sfreq: float, band: tuple[float, float]) -> float:
    """Return the ETP period (samples) a calibration block calls for (NaN if it holds no usable rhythm).

    1. Zero-phase FIR (``taps``) over the block, Hilbert transform: the block's offline phase.
    2. Median interval between peaks of the filtered block, intervals outside the band's periods dropped.
    3. Every ~25 ms, the window of ``n`` samples ending there: samples since its last peak (as live).
    4. The period, scanned from 0.8x to 1.25x the median interval, that maximises the mean cosine of
       (offline phase - 2π lag / period): the bias correction.
    """
    from scipy import signal  # lazy: a pipeline without phase outputs never imports scipy.signal

    if xc.size < 2 * n or not np.all(np.isfinite(xc)):
        return math.nan
    lo, hi = band
    nt = taps.size
    edge = (nt - 1) // 2
    y = np.convolve(xc - xc.mean(), taps, mode="same")
    truth = np.angle(signal.hilbert(y))
    peaks, _ = signal.find_peaks(y)
    ipi = np.diff(peaks)
    ipi = ipi[(ipi >= 0.9 * sfreq / hi) & (ipi <= 1.1 * sfreq / lo)]
    if ipi.size < 5:
        return math.nan
    t0 = float(np.median(ipi))
    margin = max(nt, int(0.5 * sfreq))
    step = max(1, int(round(0.025 * sfreq)))
    ends = np.arange(max(n - 1, margin), xc.size - margin, step, dtype=np.int64)
    if ends.size < 20:
        return math.nan
    lags = np.empty(ends.size)
    _etp_lags(
        np.ascontiguousarray(xc, dtype=float), n, np.ascontiguousarray(taps), ends, float(edge), np.empty(n), lags
    )
    ok = np.isfinite(lags)
    if ok.sum() < 20:
        return math.nan
    lags, target = lags[ok], truth[ends[ok]]
    candidates = t0 * np.linspace(0.8, 1.25, 181)
    score = np.cos(target[None, :] - 2.0 * np.pi * lags[None, :] / candidates[:, None]).mean(axis=1)
    return float(candidates[int(np.argmax(score))])
