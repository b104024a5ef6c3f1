"""IIR band power: band-pass, squared output, smoothing — the lowest-latency method.

Each band has a causal Butterworth band-pass (second-order sections, state
carried across chunks). The squared output is smoothed either by a boxcar
over the last ``window`` samples (the same support as the spectral methods)
or by an exponential moving average with time constant ``tau_s``. The result
is in the same units as the spectral methods (µV²): a sine at band centre of
amplitude A gives A²/2; broadband noise reads higher by the filter's
noise-equivalent bandwidth (≈ 11 % for order 2).

The boxcar keeps sums per block of ``gcd(window, hop)`` samples and a running
window sum that is recomputed exactly from the blocks once per window, so it
cannot drift. Non-finite samples skip the filter update (the state stays
finite) and make the channel's value NaN for ``window`` samples.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.features.bandpower import BandPowerMethod, Bands
from closedloop.preprocess.filters import scipy_design


@numba.njit(cache=True, nogil=True)
def _iir_kernel(
    n_ch,
    sos,
    zi,
    state,
    hop,
    block,
    ema_a,
    use_ema,
    ema,
    blk,
    ring,
    wsum,
    last_bad,
    work,
    out_power,
    out_time,
    x,
    stamps,
):
    """Filter, square and smooth per sample; emit at frames. Returns frames written.

    sos (bands, sections, 6); zi (bands, sections, 2, n_ch); ring (n_blocks, bands, n_ch). Inner loops
    run over contiguous channels (vectorised); a sample row holding NaN/Inf takes a per-channel path
    that skips the bad channels.
    """
    n = x.shape[0]
    n_bands, n_sec = sos.shape[0], sos.shape[1]
    n_blocks = ring.shape[0]
    W = n_blocks * block
    k = 0
    for i in range(n):
        count = state[0]
        row = x[i, :n_ch]
        finite = True
        for c in range(n_ch):
            if not np.isfinite(row[c]):
                finite = False
        for b in range(n_bands):
            if finite:
                for c in range(n_ch):
                    work[c] = row[c]
                for s in range(n_sec):
                    b0, b1, b2 = sos[b, s, 0], sos[b, s, 1], sos[b, s, 2]
                    a1, a2 = sos[b, s, 4], sos[b, s, 5]
                    z0 = zi[b, s, 0]
                    z1 = zi[b, s, 1]
                    for c in range(n_ch):
                        v = work[c]
                        y = b0 * v + z0[c]
                        z0[c] = b1 * v - a1 * y + z1[c]
                        z1[c] = b2 * v - a2 * y
                        work[c] = y
            else:
                for c in range(n_ch):
                    v = row[c]
                    if not np.isfinite(v):
                        last_bad[c] = count
                        work[c] = 0.0  # contributes nothing; the state is left as it was
                        continue
                    for s in range(n_sec):
                        y = sos[b, s, 0] * v + zi[b, s, 0, c]
                        zi[b, s, 0, c] = sos[b, s, 1] * v - sos[b, s, 4] * y + zi[b, s, 1, c]
                        zi[b, s, 1, c] = sos[b, s, 2] * v - sos[b, s, 5] * y
                        v = y
                    work[c] = v
            if use_ema:
                e = ema[b]
                for c in range(n_ch):
                    e[c] += ema_a * (work[c] * work[c] - e[c])
            else:
                acc = blk[b]
                for c in range(n_ch):
                    acc[c] += work[c] * work[c]
        count += 1
        state[0] = count
        if not use_ema and count % block == 0:
            slot = (count // block - 1) % n_blocks
            for b in range(n_bands):
                acc = blk[b]
                old = ring[slot, b]
                tot = wsum[b]
                for c in range(n_ch):
                    tot[c] += acc[c] - old[c]
                    old[c] = acc[c]
                    acc[c] = 0.0
            if slot == n_blocks - 1:  # exact resync of the running sums
                for b in range(n_bands):
                    tot = wsum[b]
                    for c in range(n_ch):
                        tot[c] = 0.0
                    for j in range(n_blocks):
                        r = ring[j, b]
                        for c in range(n_ch):
                            tot[c] += r[c]
        if count < W or (count - W) % hop != 0:
            continue
        for c in range(n_ch):
            bad = last_bad[c] >= count - W
            for b in range(n_bands):
                if bad:
                    out_power[k, c, b] = np.nan
                elif use_ema:
                    out_power[k, c, b] = ema[b, c]
                else:
                    out_power[k, c, b] = wsum[b, c] / W
        out_time[k] = stamps[i]
        k += 1
    return k


class IIRBandPower(BandPowerMethod):
    """Band-pass + squared envelope + boxcar or EMA smoothing, per channel and band.

    Parameters
    ----------
    sfreq, n_channels, bands, window, hop
        See :class:`~closedloop.features.bandpower.BandPowerMethod`.
    order : int
        Butterworth order per edge (the band-pass has order ``2 * order``).
    smoothing : {"boxcar", "ema"}
        Mean over the window, or exponential moving average.
    tau_s : float, optional
        EMA time constant (default: half the window, the boxcar's mean delay).
    """

    name = "iir"

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        bands: Bands,
        window: int,
        hop: int,
        order: int = 2,
        smoothing: str = "boxcar",
        tau_s: float | None = None,
    ) -> None:
        super().__init__(sfreq, n_channels, bands, window, hop)
        if smoothing not in ("boxcar", "ema"):
            raise ValueError(f"smoothing must be 'boxcar' or 'ema', got {smoothing!r}")
        nyq = self.sfreq / 2
        for name, (lo, hi) in self.bands.items():
            if not 0 < lo < hi < nyq:
                raise ValueError(f"band {name} [{lo}, {hi}] Hz: need 0 < low < high < Nyquist ({nyq} Hz)")
        self.order = int(order)
        self.smoothing = smoothing
        self.tau_s = float(tau_s) if tau_s else self.window / (2.0 * self.sfreq)
        self._sos = np.ascontiguousarray(
            np.stack(
                [
                    scipy_design("butter", self.order, [lo, hi], "bandpass", fs=self.sfreq, output="sos")
                    for lo, hi in self.bands.values()
                ]
            )
        )
        nb, ns = self._sos.shape[:2]
        self._zi = np.zeros((nb, ns, 2, self.n_channels))
        self._work = np.zeros(self.n_channels)
        self._block = math.gcd(self.window, self.hop)
        self._ring = np.zeros((self.window // self._block, nb, self.n_channels))
        self._blk = np.zeros((nb, self.n_channels))
        self._wsum = np.zeros((nb, self.n_channels))
        self._ema = np.zeros((nb, self.n_channels))
        self._ema_a = 1.0 - math.exp(-1.0 / (self.tau_s * self.sfreq))
        self._last_bad = np.full(self.n_channels, -(2**62), dtype=np.int64)
        self._count = np.zeros(1, dtype=np.int64)

    def process(self, x, stamps, out_power, out_time) -> int:
        """Feed float64 C-contiguous ``x``; write band powers and times of completed frames; return their count."""
        return self.bind(out_power, out_time)(x, stamps)

    def bind(self, out_power, out_time):
        """Return the kernel with its state and these outputs bound, called as ``(x, stamps)``."""
        return functools.partial(
            _iir_kernel,
            self.n_channels,
            self._sos,
            self._zi,
            self._count,
            self.hop,
            self._block,
            self._ema_a,
            self.smoothing == "ema",
            self._ema,
            self._blk,
            self._ring,
            self._wsum,
            self._last_bad,
            self._work,
            out_power,
            out_time,
        )

    def _twin_args(self) -> dict:
        return {**super()._twin_args(), "order": self.order, "smoothing": self.smoothing, "tau_s": self.tau_s}
