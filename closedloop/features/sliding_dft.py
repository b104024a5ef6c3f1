"""Sliding DFT of only the needed bins: O(bins) per sample, exact by construction.

Per channel and bin the state is a DFT sum in *absolute* phase: sample
``x(t)`` contributes ``x(t) exp(-2πi k (t mod N) / N)`` with a tabulated
twiddle (``k t`` reduced mod N exactly), one real-times-complex multiply-add
per needed bin per sample (complex128 precision: float64 real and imaginary
planes, laid out over channels so every inner loop is vectorised). Time is
cut into blocks of N samples (N = window) and the running sum restarts from
zero at every block start: that restart is the periodic exact resync. A window
``[c - N, c)`` spans the end of the previous block and the start of the
current one, so its DFT is ``S_cur + (F_prev - S_prev(c - N))``: the current
block's running sum, plus the previous block's full sum minus its partial sum
at ``c - N`` — a snapshot kept at every hop. No sum ever holds more than N
products and nothing is ever subtracted out of a long running sum, so the
error stays at rounding level however long the session (measured ~1e-14
relative after 8 h at 2 kHz, see the tests), and all of it depends only on
the sample count, keeping frames bit-identical for any chunking. Memory:
``window / hop`` complex snapshots of ``channels * bins`` (two more if the
window is not a whole number of hops).

Speed (the hot loop of the fastest method): samples between two events
(block end, snapshot, frame) are added as one run, four samples per pass over
the sums, each sum still adding its products in sample order (same bits as
one at a time); a frame's rotation, Hann kernel, power, band sums and NaN
masking run in the same call; the kernel takes few arguments, since numba
charges dispatch time per argument.

Hann window and mean removal are applied per frame in the frequency domain:
``Xw_k = 0.5 X_k - 0.25 X_{k-1} - 0.25 X_{k+1}`` (the 3-bin kernel of the
periodic Hann window, its constants folded into the rotation and the PSD
scale) with the DC bin dropped (the mean removed), which equals scipy's
``detrend="constant"`` + Hann. Non-finite samples enter the sums as 0 and make
the channel's value NaN while they are in the window; the sums never hold a
NaN, so values recover the moment the bad samples leave. A run holding a bad
sample is cleaned into scratch rows and then added like any other run, so a
channel that stays dead (NaN for the whole session) costs the others nothing.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.features.bandpower import BandPowerMethod, Bands, band_bins, hann, psd_bin_scale
from closedloop.features.intrinsics import muladd, prefetch_read, prefetch_write


@numba.njit(cache=True, nogil=True)
def _accumulate(x, i0, n_run, n_ch, tw, phase, cur):
    """Add samples ``x[i0 : i0 + n_run]`` (all finite, at block phases ``phase ...``) to the running sums.

    Ten samples per pass over the sums (then four, then one at a time), a bin's real and imaginary sums
    in one pass over the channels (half the loads of the samples): the sums are loaded and stored once
    per pass, which is what bounds this loop. Each sum still adds its products one sample after the
    other with :func:`~closedloop.features.intrinsics.muladd`, so the result is the same as one sample at
    a time, however the samples are grouped.
    """
    n_raw2 = tw.shape[1]  # cur has two more rows (the zero pair), never accumulated
    i = 0
    if n_ch == 1:  # one (virtual) channel, the ROI case: vectorised over the sums instead of the channels
        flat = cur.reshape(cur.size)
        while i + 4 <= n_run:
            v0, v1, v2, v3 = x[i0 + i, 0], x[i0 + i + 1, 0], x[i0 + i + 2, 0], x[i0 + i + 3, 0]
            w0, w1, w2, w3 = tw[phase + i], tw[phase + i + 1], tw[phase + i + 2], tw[phase + i + 3]
            for j in range(n_raw2):
                flat[j] = muladd(v3, w3[j], muladd(v2, w2[j], muladd(v1, w1[j], muladd(v0, w0[j], flat[j]))))
            i += 4
        while i < n_run:
            v0 = x[i0 + i, 0]
            w0 = tw[phase + i]
            for j in range(n_raw2):
                flat[j] = muladd(v0, w0[j], flat[j])
            i += 1
        return
    while i + 10 <= n_run:  # ten samples per pass: a hop of 10 or 20 in one or two passes
        q, p = i0 + i, phase + i
        r0, r1, r2, r3, r4 = x[q], x[q + 1], x[q + 2], x[q + 3], x[q + 4]
        r5, r6, r7, r8, r9 = x[q + 5], x[q + 6], x[q + 7], x[q + 8], x[q + 9]
        w0, w1, w2, w3, w4 = tw[p], tw[p + 1], tw[p + 2], tw[p + 3], tw[p + 4]
        w5, w6, w7, w8, w9 = tw[p + 5], tw[p + 6], tw[p + 7], tw[p + 8], tw[p + 9]
        for j in range(0, n_raw2, 2):
            k = j + 1
            a0, a1, a2, a3, a4 = w0[j], w1[j], w2[j], w3[j], w4[j]
            a5, a6, a7, a8, a9 = w5[j], w6[j], w7[j], w8[j], w9[j]
            b0, b1, b2, b3, b4 = w0[k], w1[k], w2[k], w3[k], w4[k]
            b5, b6, b7, b8, b9 = w5[k], w6[k], w7[k], w8[k], w9[k]
            re, im = cur[j], cur[k]
            for c in range(n_ch):
                v0, v1, v2, v3, v4 = r0[c], r1[c], r2[c], r3[c], r4[c]
                v5, v6, v7, v8, v9 = r5[c], r6[c], r7[c], r8[c], r9[c]
                s = muladd(v4, a4, muladd(v3, a3, muladd(v2, a2, muladd(v1, a1, muladd(v0, a0, re[c])))))
                re[c] = muladd(v9, a9, muladd(v8, a8, muladd(v7, a7, muladd(v6, a6, muladd(v5, a5, s)))))
                s = muladd(v4, b4, muladd(v3, b3, muladd(v2, b2, muladd(v1, b1, muladd(v0, b0, im[c])))))
                im[c] = muladd(v9, b9, muladd(v8, b8, muladd(v7, b7, muladd(v6, b6, muladd(v5, b5, s)))))
        i += 10
    while i + 4 <= n_run:
        r0, r1, r2, r3 = x[i0 + i], x[i0 + i + 1], x[i0 + i + 2], x[i0 + i + 3]
        w0, w1, w2, w3 = tw[phase + i], tw[phase + i + 1], tw[phase + i + 2], tw[phase + i + 3]
        for j in range(0, n_raw2, 2):
            a0, a1, a2, a3 = w0[j], w1[j], w2[j], w3[j]
            b0, b1, b2, b3 = w0[j + 1], w1[j + 1], w2[j + 1], w3[j + 1]
            re, im = cur[j], cur[j + 1]
            for c in range(n_ch):
                v0, v1, v2, v3 = r0[c], r1[c], r2[c], r3[c]
                re[c] = muladd(v3, a3, muladd(v2, a2, muladd(v1, a1, muladd(v0, a0, re[c]))))
                im[c] = muladd(v3, b3, muladd(v2, b2, muladd(v1, b1, muladd(v0, b0, im[c]))))
        i += 4
    while i < n_run:
        r0 = x[i0 + i]
        w0 = tw[phase + i]
        for j in range(n_raw2):
            t0 = w0[j]
            acc = cur[j]
            for c in range(n_ch):
                acc[c] = muladd(r0[c], t0, acc[c])
        i += 1


@numba.njit(cache=True, nogil=True)
def _finish_frame(count, N, n_ch, sums, n_snap, hop, block_end, wd_ready, kernel, work, last_bad, out_row):
    """Band powers of the window ending at ``count`` into ``out_row`` (channels, bands).

    ``wd_ready``: the window's DFT (``sums[2]``) was already built, with the snapshot write of the same hop.
    """
    n_raw2 = sums.shape[1] - 2
    cur, prev, wd = sums[0], sums[1], sums[2]
    old = sums[3 + ((count - N) // hop) % n_snap]
    m = (count - N) % N  # phase of the oldest sample in the window
    # the Hann kernel's 0.25 is folded into the rotation and its 0.5 into the PSD scale: twice the windowed
    # bin, 2 Xw_k = A_k - 0.5 e^{-iθ} A_{k-1} - 0.5 e^{+iθ} A_{k+1}, and (2 re)^2 + (2 im)^2 times sc / 4.
    # Scaling by powers of two is exact, so the powers keep every bit of the unfolded form.
    ct = 0.5 * math.cos(2.0 * math.pi * m / N)
    st = 0.5 * math.sin(2.0 * math.pi * m / N)
    for j in range(0 if wd_ready else n_raw2):  # the window's DFT (rows n_raw2, n_raw2 + 1 stay zero)
        w = wd[j]
        pj = prev[j]
        if block_end:
            for c in range(n_ch):
                w[c] = pj[c]
        else:
            cj = cur[j]
            oj = old[j]
            for c in range(n_ch):
                w[c] = cj[c] + (pj[c] - oj[c])
    n_bands = kernel.shape[1] - 6
    power = work[n_bands]
    for b in range(n_bands):
        ab = work[b]
        for c in range(n_ch):
            ab[c] = 0.0
    for q in range(kernel.shape[0]):
        # kernel[q] = rows of A_{k-1}, A_k, A_{k+1}, conjugation signs of A_{k-1} and A_{k+1} (±1, so
        # folding them into the constants is exact), PSD scale, then 1.0 per band holding the bin
        rm, r0, rp = int(kernel[q, 0]), int(kernel[q, 1]), int(kernel[q, 2])
        sm, sp, sc = kernel[q, 3], kernel[q, 4], 0.25 * kernel[q, 5]
        smc, sms, spc, sps = sm * ct, sm * st, sp * ct, sp * st
        mre, mim = wd[rm], wd[rm + 1]
        zre, zim = wd[r0], wd[r0 + 1]
        pre_, pim = wd[rp], wd[rp + 1]
        for c in range(n_ch):
            re = zre[c] - (mre[c] * ct + mim[c] * sms)
            im = zim[c] - (mim[c] * smc - mre[c] * st)
            re -= pre_[c] * ct - pim[c] * sps
            im -= pim[c] * spc + pre_[c] * st
            power[c] = (re * re + im * im) * sc
        for b in range(n_bands):
            if kernel[q, 6 + b] != 0.0:
                ab = work[b]
                for c in range(n_ch):
                    ab[c] += power[c]
    for c in range(n_ch):
        bad = last_bad[c] >= count - N
        for b in range(n_bands):
            out_row[c, b] = np.nan if bad else work[b, c]


@numba.njit(cache=True, nogil=True)
def _sdft_kernel(state, last_bad, sums, twiddle, kernel, work, out_power, out_time, x, stamps):
    """Accumulate block sums over runs of samples between events; emit band powers at frames.

    Returns frames written. ``sums`` (3 + n_snap, 2 n_raw + 2, n_ch) holds float64 planes over channels
    — row 2r the real, 2r+1 the imaginary part of raw bin r — so every inner loop runs over contiguous
    channels: slot 0 the running sum of the current block, 1 the full sum of the previous block, 2 the
    window's DFT at a frame, 3... the partial sums at every hop multiple (snapshots). Events (block end,
    snapshot, frame) fall after samples whose count is a multiple of ``N``, of ``hop``, or ``N`` plus a
    multiple of ``hop``; between them samples are added in one run. state = [count, hop, n_ch]; few
    arguments, as each costs dispatch time.
    """
    hop, n_ch = state[1], state[2]
    n = x.shape[0]
    N = twiddle.shape[0]
    n_raw2 = twiddle.shape[1]
    n_snap = sums.shape[0] - 3
    cur, prev = sums[0], sums[1]
    clean = work[kernel.shape[1] - 5 :]  # scratch rows for samples with a non-finite value (after the bands)
    frame_phase = N % hop
    # a window of whole hops (the usual case) has one snapshot slot per hop: the slot a hop overwrites holds
    # the snapshot its frame subtracts, so the frame reads it just before the new one is written
    tight = n_snap * hop == N
    # the snapshot the first frame of this chunk will read (written a window ago: out of cache by now) and
    # the one the first hop will write (the same slot if tight): their loads overlap with the accumulation
    count = state[0]
    first = N if count < N else N + ((count - N) // hop + 1) * hop
    if first <= count + n and not tight:
        prefetch_read(sums[3 + ((first - N) // hop) % n_snap])
    first = (count // hop + 1) * hop
    if first <= count + n:
        prefetch_write(sums[3 + (first // hop) % n_snap])
    k = 0
    i = 0
    while i < n:
        count = state[0]
        phase = count % N
        # samples up to (and including) the next event, or the end of the chunk
        run = min(n - i, N - phase, hop - count % hop, (frame_phase - count % hop - 1) % hop + 1)
        finite = True
        for ii in range(i, i + run):
            for c in range(n_ch):
                if not np.isfinite(x[ii, c]):
                    finite = False
        if finite:
            _accumulate(x, i, run, n_ch, twiddle, phase, cur)
        else:  # bad samples count as 0: cleaned into scratch rows, then added like any run (a dead channel)
            rows = clean.shape[0]
            for a in range(0, run, rows):
                m = min(rows, run - a)
                for ii in range(m):
                    row = x[i + a + ii]
                    out = clean[ii]
                    for c in range(n_ch):
                        v = row[c]
                        if np.isfinite(v):
                            out[c] = v
                        else:
                            out[c] = 0.0
                            last_bad[c] = count + a + ii
                _accumulate(clean, 0, m, n_ch, twiddle, phase + a, cur)
        i += run
        count += run
        state[0] = count
        block_end = count % N == 0
        if block_end:
            for j in range(n_raw2):
                pj = prev[j]
                cj = cur[j]
                for c in range(n_ch):
                    pj[c] = cj[c]
                    cj[c] = 0.0
        frame = count >= N and (count - N) % hop == 0
        wd_ready = tight and frame and not block_end
        if wd_ready:  # the window's DFT from the snapshot a window old, then this hop's snapshot in its slot
            snap, wd = sums[3 + (count // hop) % n_snap], sums[2]
            for j in range(n_raw2):
                w, pj, cj, sj = wd[j], prev[j], cur[j], snap[j]
                for c in range(n_ch):
                    v = cj[c]
                    w[c] = v + (pj[c] - sj[c])
                    sj[c] = v
        elif count % hop == 0:  # snapshot: partial sum of the block holding sample count - 1, up to count
            snap = sums[3 + (count // hop) % n_snap]
            src = prev if block_end else cur
            for j in range(n_raw2):
                dst = snap[j]
                sj = src[j]
                for c in range(n_ch):
                    dst[c] = sj[c]
        if not frame:
            continue
        _finish_frame(count, N, n_ch, sums, n_snap, hop, block_end, wd_ready, kernel, work, last_bad, out_power[k])
        out_time[k] = stamps[i - 1]
        k += 1
    return k


class SlidingDFTBandPower(BandPowerMethod):
    """Sliding-DFT band power: single-segment Hann periodogram, updated per sample.

    Equal to :class:`~closedloop.features.welch.WelchBandPower` with one
    segment to rounding (< 1e-9 relative, typically 1e-13).
    """

    name = "sliding_dft"

    def __init__(self, sfreq: float, n_channels: int, bands: Bands, window: int, hop: int) -> None:
        super().__init__(sfreq, n_channels, bands, window, hop)
        N = self.window
        bins, self._band_ptr, self._band_bin = band_bins(self.bands, self.sfreq, N)
        self.freqs = bins * self.sfreq / N
        half = N // 2
        # raw bins the 3-bin Hann kernel touches; bin 0 is dropped (mean removal),
        # bins above N/2 are conjugates of their mirror (real input)
        refs = []
        for k in bins:
            for kk in (k - 1, k, k + 1):
                if kk == 0:
                    refs.append(None)
                elif kk < 0:
                    refs.append((-kk, True))
                elif kk > half:
                    refs.append((N - kk, True))
                else:
                    refs.append((kk, False))
        raw = sorted({r[0] for r in refs if r is not None and r[0] != 0})
        pos = {r: i for i, r in enumerate(raw)}
        # per bin: rows of the (re, im) pairs of A_{k-1}, A_k, A_{k+1} (row 2 len(raw): a zero pair),
        # conjugation signs of A_{k-1} and A_{k+1}, PSD scale, then per band 1.0 if the band holds the bin
        kernel = np.zeros((bins.size, 6 + len(self.bands)))
        kernel[:, :3] = 2 * len(raw)
        kernel[:, 3:5] = 1.0
        for j, ref in enumerate(refs):
            if ref is not None and ref[0] != 0:
                kernel[j // 3, j % 3] = 2 * pos[ref[0]]
                if j % 3 != 1:
                    kernel[j // 3, 3 + (j % 3) // 2] = -1.0 if ref[1] else 1.0
        kernel[:, 5] = psd_bin_scale(bins, self.sfreq, hann(N))
        for b in range(len(self.bands)):
            kernel[self._band_bin[self._band_ptr[b] : self._band_ptr[b + 1]], 6 + b] = 1.0
        self._kernel = kernel
        self.raw_bins = np.array(raw, dtype=np.int64)
        # twiddle[t, 2r], [t, 2r+1] = cos, -sin of 2π k_r t / N, with k_r t reduced mod N exactly
        t = np.arange(N, dtype=np.int64)
        red = np.outer(t, self.raw_bins) % N
        ang = 2.0 * np.pi * red / N
        tw = np.empty((N, 2 * len(raw)))
        tw[:, 0::2] = np.cos(ang)
        tw[:, 1::2] = -np.sin(ang)
        self._twiddle = tw
        nr, nch = len(raw), self.n_channels
        # complex128 sums as float64 (re, im) planes over channels: current block, previous block, the
        # window's DFT, then the snapshots, one per hop of a window (two more if the window is not a whole
        # number of hops: a frame's snapshot then differs from the one its hop writes); + a zero (re, im)
        # pair for missing neighbours
        n_snap = N // self.hop if N % self.hop == 0 else N // self.hop + 2
        self._sums = np.zeros((3 + n_snap, 2 * nr + 2, nch))
        # band sums, bin power, then up to 32 cleaned samples (bad ones as 0) at a time
        self._work = np.zeros((len(self.bands) + 1 + min(self.hop, 32), nch))
        self._last_bad = np.full(self.n_channels, -(2**62), dtype=np.int64)
        self._state = np.array([0, self.hop, self.n_channels], dtype=np.int64)  # count, hop, channels

    def process(self, x, stamps, out_power, out_time) -> int:
        """Feed float64 C-contiguous ``x``; write band powers and times of completed frames; return their count."""
        return _sdft_kernel(
            self._state,
            self._last_bad,
            self._sums,
            self._twiddle,
            self._kernel,
            self._work,
            out_power,
            out_time,
            x,
            stamps,
        )

    def bind(self, out_power, out_time):
        """Return the kernel with its state and these outputs bound, called as ``(x, stamps)``."""
        return functools.partial(
            _sdft_kernel,
            self._state,
            self._last_bad,
            self._sums,
            self._twiddle,
            self._kernel,
            self._work,
            out_power,
            out_time,
        )
