"""Per-frame quality flags from window statistics kept on the sample clock, O(channels) per frame.

Per column (feature signal or monitor electrode) and frame window:

- ARTIFACT: peak-to-peak amplitude (max - min) above ``amplitude_uV``;
- FLAT: peak-to-peak at most ``2 * flat_uV`` (the channel stayed within
  ``±flat_uV`` of one value all window);
- SATURATION: some ``|x| >= saturation_uV`` (a railed amplifier, garbage);
- NONFINITE: a NaN or Inf sample;
- EMG: mean square of the signal through the EMG filter (elliptic band-pass
  ``emg_hz``–``emg_high_hz``, clear of 50/60 Hz mains; a high-pass at
  ``emg_hz`` when ``emg_high_hz`` is None) above ``emg_rms_uV²``;
- GAP: consecutive timestamps inside the window differ from ``1/sfreq`` by
  more than half a period plus ``gap_tolerance_s`` (or are not finite).

Max and min ignore NaN (an Inf counts: it is an extreme value, so it also
trips SATURATION and ARTIFACT). The EMG filter skips samples that are not
finite or reach ``saturation_uV`` (its state never holds garbage); skipped
samples add 0 to the mean square. Thresholds apply to the preprocessed signal;
how the defaults were chosen: docs/quality.md.

How it stays cheap: frames fall at sample counts ``window + j * hop``, so
every window is a whole number of blocks of ``gcd(window, hop)`` samples.
Per run of samples, passes vectorised over the channels update the running
block's max and min, then its EMG sum of squares (the EMG cascade takes two
usable rows per pass, its state in registers in between; rows with a bad sample
go one at a time and note the last non-finite sample per channel); with few
columns (a ROI and its monitor electrodes) a run
of usable samples goes channel by channel instead, with the filter state in
registers — the same operations per channel in the same order. The running max and min of the
vectorised pass take four rows per pass, the running value in a register across them (a chain of
``v if v > m else m``: NaN ignored, ties keep ``m``; one ``maxpd`` each); a single row stored back in
that form would compile to a masked store (``vmaskmovpd``), slow on AMD cores (that pass took ~4x as
long at 64 channels), so it uses ``np.fmax`` / ``np.fmin``, equal bit for bit for a running value that
is never NaN (the four-row chain compiles to ``vmaxpd``/``vminpd`` for Zen 2 and 3 too, checked with
``NUMBA_CPU_NAME``). Blocks are grouped in segments of ``window / block``
blocks; when a segment completes its block statistics are turned, in place,
into suffix statistics (max, min, sum of each block to the segment's end),
while the current segment keeps prefix statistics. A window is the tail of
the previous segment plus the head of the current one, so its statistics are
``op(suffix_prev[r], prefix_cur)`` — two values per channel, computed afresh
from the samples of that window alone: nothing is ever subtracted, so there
is no drift and no cancellation (a 1e30 sample leaves no residue once it is
out of the window), max/min are exact, and sums depend only on the sample
count, so flags are bit-identical for any chunking.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.features import QualityConfig
from closedloop.features.intrinsics import carve, muladd
from closedloop.preprocess.filters import scipy_design
from closedloop.types import Quality

_NEVER = -(2**62)
#: setup slots (int64)
_COUNT, _GAP, _HOP, _WINDOW, _BLOCK, _NBLK, _CHECKS, _UNSTARTED, _NSOS, _R, _PARITY = range(11)
_N_SETUP = 11
#: check bits in setup[_CHECKS]
_AMP, _FLAT, _EMG, _SAT = 1, 2, 4, 8
#: params slots (float64); the EMG sections (6 each) and their unit-step states (2 each) follow
_P_AMP, _P_FLAT, _P_EMG, _P_SAT, _P_PERIOD, _P_GAPTOL, _P_PREV, _P_GUARD = range(8)
_N_PARAMS = 8
#: rows of ``chan`` (n_rows, n_channels); the EMG filter states (2 per section) follow
_BMX, _BMN, _BSS, _PMX, _PMN, _PSS, _FMX, _FMN, _FSS = range(9)
_N_ROWS = 9
_N_SOS = 3  # EMG filter sections (fewer are padded with pass-through sections)


@numba.njit(cache=True, nogil=True)
def _start_filters(setup, params, chan, started, x):
    """Put each not-yet-started channel's EMG filter in its steady state for its first usable sample."""
    n, n_ch = x.shape
    n_sos = setup[_NSOS]
    guard = params[_P_GUARD]
    unit = params[_N_PARAMS + 6 * n_sos :]
    for c in range(n_ch):
        if started[c] != 0:
            continue
        for i in range(n):
            v = x[i, c]
            if abs(v) < guard:
                for s in range(n_sos):
                    chan[_N_ROWS + 2 * s, c] = unit[2 * s] * v
                    chan[_N_ROWS + 2 * s + 1, c] = unit[2 * s + 1] * v
                started[c] = 1
                setup[_UNSTARTED] -= 1
                break


@numba.njit(cache=True, nogil=True, inline="always")
def _section(u, b0, b1, b2, a1, a2, z0, z1):
    """One EMG filter section, direct form II transposed: return ``(y, z0, z1)`` after input ``u``.

    The form of :func:`scipy.signal.sosfilt` with its products folded into
    :func:`~closedloop.features.intrinsics.muladd`: five operations instead of
    nine, each rounded once on CPUs with FMA. Every EMG path here uses it, so
    a sample gets the same bits whichever path filters it.
    """
    y = muladd(b0, u, z0)
    return y, muladd(b1, u, muladd(-a1, y, z1)), muladd(b2, u, -a2 * y)


@numba.njit(cache=True, nogil=True, inline="always")
def _emg_row(row, sos, chan, bss, n_ch):
    """One row of usable samples through the three EMG sections (fused, vectorised over channels); add y²."""
    b00, b01, b02, a01, a02 = sos[0], sos[1], sos[2], sos[4], sos[5]
    b10, b11, b12, a11, a12 = sos[6], sos[7], sos[8], sos[10], sos[11]
    b20, b21, b22, a21, a22 = sos[12], sos[13], sos[14], sos[16], sos[17]
    s0, s1, s2 = chan[_N_ROWS], chan[_N_ROWS + 1], chan[_N_ROWS + 2]
    s3, s4, s5 = chan[_N_ROWS + 3], chan[_N_ROWS + 4], chan[_N_ROWS + 5]
    for c in range(n_ch):
        y, s0[c], s1[c] = _section(row[c], b00, b01, b02, a01, a02, s0[c], s1[c])
        y, s2[c], s3[c] = _section(y, b10, b11, b12, a11, a12, s2[c], s3[c])
        y, s4[c], s5[c] = _section(y, b20, b21, b22, a21, a22, s4[c], s5[c])
        bss[c] += y * y


@numba.njit(cache=True, nogil=True, inline="always")
def _emg_rows(row0, row1, sos, chan, bss, n_ch):
    """Two consecutive rows of usable samples through the EMG sections, as :func:`_emg_row` twice (same bits).

    The filter states stay in registers between the two samples: half the loads and stores of the states.
    """
    b00, b01, b02, a01, a02 = sos[0], sos[1], sos[2], sos[4], sos[5]
    b10, b11, b12, a11, a12 = sos[6], sos[7], sos[8], sos[10], sos[11]
    b20, b21, b22, a21, a22 = sos[12], sos[13], sos[14], sos[16], sos[17]
    s0, s1, s2 = chan[_N_ROWS], chan[_N_ROWS + 1], chan[_N_ROWS + 2]
    s3, s4, s5 = chan[_N_ROWS + 3], chan[_N_ROWS + 4], chan[_N_ROWS + 5]
    for c in range(n_ch):
        y, z0, z1 = _section(row0[c], b00, b01, b02, a01, a02, s0[c], s1[c])
        y, z2, z3 = _section(y, b10, b11, b12, a11, a12, s2[c], s3[c])
        y, z4, z5 = _section(y, b20, b21, b22, a21, a22, s4[c], s5[c])
        acc = bss[c] + y * y
        y, s0[c], s1[c] = _section(row1[c], b00, b01, b02, a01, a02, z0, z1)
        y, s2[c], s3[c] = _section(y, b10, b11, b12, a11, a12, z2, z3)
        y, s4[c], s5[c] = _section(y, b20, b21, b22, a21, a22, z4, z5)
        bss[c] = acc + y * y


@numba.njit(cache=True, nogil=True, inline="always")
def _above(m, v):
    """``v if v > m else m``: the larger, ``m`` if ``v`` is NaN (one ``maxpd``)."""
    return v if v > m else m


@numba.njit(cache=True, nogil=True, inline="always")
def _below(m, v):
    """``v if v < m else m``: the smaller, ``m`` if ``v`` is NaN (one ``minpd``)."""
    return v if v < m else m


@numba.njit(cache=True, nogil=True, inline="always")
def _extremes(x, i0, run, bmx, bmn, guard, n_ch):
    """Fold rows ``x[i0 : i0 + run]`` into the running max ``bmx`` and min ``bmn``; return the bad samples' count.

    Bad: NaN, Inf, or ``|v| >= guard``. Four rows (then two, then one) per pass over the channels, each
    running value kept in a register across them: a chain of ``_above``/``_below``, whose last select is
    not between the loaded value and another, so it compiles to ``maxpd``/``minpd`` and a plain store.
    A single row uses ``np.fmax``/``np.fmin`` (the same values: the running ones are never NaN), as
    ``_above(bmx[c], v)`` stored back would compile to a masked store (see the module's docstring).
    """
    n_bad = 0
    i, end = i0, i0 + run
    while i + 4 <= end:
        r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for c in range(n_ch):
            v0, v1, v2, v3 = r0[c], r1[c], r2[c], r3[c]
            bmx[c] = _above(_above(_above(_above(bmx[c], v0), v1), v2), v3)
            bmn[c] = _below(_below(_below(_below(bmn[c], v0), v1), v2), v3)
            n_bad += (
                (not (abs(v0) < guard)) + (not (abs(v1) < guard)) + (not (abs(v2) < guard)) + (not (abs(v3) < guard))
            )
        i += 4
    if i + 2 <= end:
        r0, r1 = x[i], x[i + 1]
        for c in range(n_ch):
            v0, v1 = r0[c], r1[c]
            bmx[c] = _above(_above(bmx[c], v0), v1)
            bmn[c] = _below(_below(bmn[c], v0), v1)
            n_bad += (not (abs(v0) < guard)) + (not (abs(v1) < guard))
        i += 2
    if i < end:
        r0 = x[i]
        for c in range(n_ch):
            v0 = r0[c]
            bmx[c] = np.fmax(bmx[c], v0)
            bmn[c] = np.fmin(bmn[c], v0)
            n_bad += not (abs(v0) < guard)
    return n_bad


#: up to this many columns a run of usable samples goes channel by channel (state in registers); more
#: columns go row by row, vectorised over the channels
_FEW = 8


@numba.njit(cache=True, nogil=True)
def _few_channels(x, i0, run, sos, chan, bss, emg_on, n_ch):
    """Add a run of usable rows channel by channel: block max, min and the EMG cascade with its sum of squares.

    Per channel the same operations in the same sample order as :func:`_emg_row` row by row, so the same bits.
    """
    bmx, bmn = chan[_BMX], chan[_BMN]
    for c in range(n_ch):
        mx, mn = bmx[c], bmn[c]
        for ii in range(i0, i0 + run):
            v = x[ii, c]
            mx = v if v > mx else mx
            mn = v if v < mn else mn
        bmx[c], bmn[c] = mx, mn
    if not emg_on:
        return
    b00, b01, b02, a01, a02 = sos[0], sos[1], sos[2], sos[4], sos[5]
    b10, b11, b12, a11, a12 = sos[6], sos[7], sos[8], sos[10], sos[11]
    b20, b21, b22, a21, a22 = sos[12], sos[13], sos[14], sos[16], sos[17]
    for c in range(n_ch):
        s0, s1, s2 = chan[_N_ROWS, c], chan[_N_ROWS + 1, c], chan[_N_ROWS + 2, c]
        s3, s4, s5 = chan[_N_ROWS + 3, c], chan[_N_ROWS + 4, c], chan[_N_ROWS + 5, c]
        acc = bss[c]
        for ii in range(i0, i0 + run):
            y, s0, s1 = _section(x[ii, c], b00, b01, b02, a01, a02, s0, s1)
            y, s2, s3 = _section(y, b10, b11, b12, a11, a12, s2, s3)
            y, s4, s5 = _section(y, b20, b21, b22, a21, a22, s4, s5)
            acc += y * y
        chan[_N_ROWS, c], chan[_N_ROWS + 1, c], chan[_N_ROWS + 2, c] = s0, s1, s2
        chan[_N_ROWS + 3, c], chan[_N_ROWS + 4, c], chan[_N_ROWS + 5, c] = s3, s4, s5
        bss[c] = acc


@numba.njit(cache=True, nogil=True, inline="always")
def _note_nonfinite(row, count, lb, n_ch):
    """Note ``count`` as the last non-finite sample of each channel whose value in ``row`` is NaN or Inf."""
    for c in range(n_ch):
        lb[c] = lb[c] if np.isfinite(row[c]) else count


@numba.njit(cache=True, nogil=True)
def _bad_rows(row0, row1, count0, two, guard, sos, chan, lb, n_ch):
    """Rows holding NaN/Inf or values from ``guard`` on: note non-finite samples; EMG over the others.

    ``row0`` (sample ``count0``), then ``row1`` if ``two``: consecutive rows, either of them or both bad.
    One pass over the channels, the filter states in registers between the two samples as in
    :func:`_emg_rows`, and the skipped samples' states and sums kept by selects rather than branches
    (vectorised, no masked stores): a channel that is bad in every row (a dead electrode) keeps the
    other channels' rows going two at a time, and their usable samples get the bits of :func:`_emg_row`.
    """
    _note_nonfinite(row0, count0, lb, n_ch)
    if two:
        _note_nonfinite(row1, count0 + 1, lb, n_ch)
    b00, b01, b02, a01, a02 = sos[0], sos[1], sos[2], sos[4], sos[5]
    b10, b11, b12, a11, a12 = sos[6], sos[7], sos[8], sos[10], sos[11]
    b20, b21, b22, a21, a22 = sos[12], sos[13], sos[14], sos[16], sos[17]
    s0, s1, s2 = chan[_N_ROWS], chan[_N_ROWS + 1], chan[_N_ROWS + 2]
    s3, s4, s5 = chan[_N_ROWS + 3], chan[_N_ROWS + 4], chan[_N_ROWS + 5]
    bss = chan[_BSS]
    for c in range(n_ch):
        v, w = row0[c], row1[c]
        ok, ok1 = abs(v) < guard, two and abs(w) < guard
        o0, o1, o2, o3, o4, o5, acc = s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], bss[c]
        y, z0, z1 = _section(v if ok else 0.0, b00, b01, b02, a01, a02, o0, o1)
        y, z2, z3 = _section(y, b10, b11, b12, a11, a12, o2, o3)
        y, z4, z5 = _section(y, b20, b21, b22, a21, a22, o4, o5)
        o0, o1, o2 = (z0, z1, z2) if ok else (o0, o1, o2)  # a skipped sample leaves the states and the sum alone
        o3, o4, o5 = (z3, z4, z5) if ok else (o3, o4, o5)
        acc = acc + y * y if ok else acc
        y, z0, z1 = _section(w if ok1 else 0.0, b00, b01, b02, a01, a02, o0, o1)
        y, z2, z3 = _section(y, b10, b11, b12, a11, a12, o2, o3)
        y, z4, z5 = _section(y, b20, b21, b22, a21, a22, o4, o5)
        s0[c], s1[c], s2[c] = (z0, z1, z2) if ok1 else (o0, o1, o2)
        s3[c], s4[c], s5[c] = (z3, z4, z5) if ok1 else (o3, o4, o5)
        bss[c] = acc + y * y if ok1 else acc


@numba.njit(cache=True, nogil=True)
def _quality_kernel(ist, fst, out_flags, x, stamps):
    """Update the window statistics sample by sample; write flag bits at frames. Returns frames written.

    Two state arrays (each argument costs dispatch time), viewed here: ``ist`` (int64) = setup (see
    ``_COUNT`` ...), then per channel the last non-finite sample and whether its EMG filter started;
    ``fst`` (float64) = params (thresholds, timing, EMG sections and their unit-step states), then
    ``chan`` (rows ``_BMX`` ... and two filter states per EMG section, over channels), then ``seg``
    (2 segments, 3 statistics, blocks, channels): the previous segment's suffix statistics and the
    current segment's block statistics.
    """
    n, n_ch = x.shape
    setup = ist[:_N_SETUP]
    lb = ist[_N_SETUP : _N_SETUP + n_ch]
    started = ist[_N_SETUP + n_ch : _N_SETUP + 2 * n_ch]
    n_sos = setup[_NSOS]
    n_par = _N_PARAMS + 8 * n_sos
    n_rows = _N_ROWS + 2 * n_sos
    hop, window, block, n_blk = setup[_HOP], setup[_WINDOW], setup[_BLOCK], setup[_NBLK]
    params = fst[:n_par]
    chan = carve(fst, n_par, (n_rows, n_ch))
    seg = carve(fst, n_par + n_rows * n_ch, (2, 3, n_blk, n_ch))
    checks = setup[_CHECKS]
    emg_on = (checks & _EMG) != 0
    period, gap_tol, guard = params[_P_PERIOD], params[_P_GAPTOL], params[_P_GUARD]
    sos = params[_N_PARAMS : _N_PARAMS + 6 * n_sos]
    if emg_on and setup[_UNSTARTED] > 0:
        _start_filters(setup, params, chan, started, x)
    bmx, bmn, bss = chan[_BMX], chan[_BMN], chan[_BSS]
    pmx, pmn, pss = chan[_PMX], chan[_PMN], chan[_PSS]
    fmx, fmn, fss = chan[_FMX], chan[_FMN], chan[_FSS]
    k = 0
    count = setup[_COUNT]
    prev_t = params[_P_PREV]
    i = 0
    while i < n:
        run = min(n - i, block - count % block)  # samples up to the end of the block (or of the chunk)
        for ii in range(i, i + run):
            t = stamps[ii]
            if count + ii - i > 0 and not (abs(t - prev_t - period) <= 0.5 * period + gap_tol):
                setup[_GAP] = count + ii - i
            prev_t = t
        usual = False
        if n_ch <= _FEW:  # few channels: is the run free of bad samples (the usual case)?
            n_bad = 0
            for ii in range(i, i + run):
                for c in range(n_ch):
                    n_bad += not (abs(x[ii, c]) < guard)
            usual = n_bad == 0
        if usual:
            _few_channels(x, i, run, sos, chan, bss, emg_on, n_ch)
        elif _extremes(x, i, run, bmx, bmn, guard, n_ch) == 0:  # no bad sample: the EMG cascade two rows a pass
            if emg_on:
                ii = i
                while ii + 2 <= i + run:
                    _emg_rows(x[ii], x[ii + 1], sos, chan, bss, n_ch)
                    ii += 2
                if ii < i + run:
                    _emg_row(x[ii], sos, chan, bss, n_ch)
        else:
            pend, pend_bad = -1, False  # a row whose EMG step waits for the next row, to run both in one pass
            for ii in range(i, i + run):
                row = x[ii]
                n_bad = 0
                for c in range(n_ch):
                    n_bad += not (abs(row[c]) < guard)
                if n_bad == 0 and not pend_bad:
                    if emg_on:
                        if pend < 0:
                            pend = ii
                        else:
                            _emg_rows(x[pend], row, sos, chan, bss, n_ch)
                            pend = -1
                elif not emg_on:
                    _note_nonfinite(row, count + ii - i, lb, n_ch)
                elif pend < 0:
                    pend, pend_bad = ii, True
                else:  # this row or the pending one holds a bad sample
                    _bad_rows(x[pend], row, count + pend - i, True, guard, sos, chan, lb, n_ch)
                    pend, pend_bad = -1, False
            if pend >= 0:
                if pend_bad:
                    _bad_rows(x[pend], x[pend], count + pend - i, False, guard, sos, chan, lb, n_ch)
                else:
                    _emg_row(x[pend], sos, chan, bss, n_ch)
        i += run
        count += run
        if count % block != 0:
            continue
        # a block is complete: into the current segment, and into its prefix
        r = setup[_R]
        cur = seg[1 - setup[_PARITY]]
        cmx, cmn, css = cur[0, r], cur[1, r], cur[2, r]
        for c in range(n_ch):
            cmx[c] = bmx[c]
            cmn[c] = bmn[c]
            css[c] = bss[c]
            pmx[c] = np.fmax(pmx[c], bmx[c])
            pmn[c] = np.fmin(pmn[c], bmn[c])
            pss[c] += bss[c]
            bmx[c] = -np.inf
            bmn[c] = np.inf
            bss[c] = 0.0
        r += 1
        if r == n_blk:  # the segment is complete: suffix statistics in place, it becomes the previous one
            for j in range(n_blk - 2, -1, -1):
                amx, amn, ass = cur[0, j], cur[1, j], cur[2, j]
                nmx, nmn, nss = cur[0, j + 1], cur[1, j + 1], cur[2, j + 1]
                for c in range(n_ch):
                    amx[c] = amx[c] if amx[c] > nmx[c] else nmx[c]
                    amn[c] = amn[c] if amn[c] < nmn[c] else nmn[c]
                    ass[c] = ass[c] + nss[c]
            setup[_PARITY] = 1 - setup[_PARITY]
            for c in range(n_ch):
                pmx[c] = -np.inf
                pmn[c] = np.inf
                pss[c] = 0.0
            r = 0
        setup[_R] = r
        if count < window or (count - window) % hop != 0:
            continue
        # a frame: the window is the previous segment from block r on, plus the current prefix
        prev = seg[setup[_PARITY]]
        smx, smn, sss = prev[0, r], prev[1, r], prev[2, r]
        start = count - window
        amp, flat2, emg_total, sat = params[_P_AMP], params[_P_FLAT], params[_P_EMG], params[_P_SAT]
        n_amp = n_flat = n_emg = n_sat = n_nf = 0
        for c in range(n_ch):
            mx = smx[c] if smx[c] > pmx[c] else pmx[c]
            mn = smn[c] if smn[c] < pmn[c] else pmn[c]
            ss = sss[c] + pss[c]
            fmx[c] = mx
            fmn[c] = mn
            fss[c] = ss
            ptp = mx - mn
            n_amp += ptp > amp
            n_flat += (ptp <= flat2) & (mx >= mn)  # a channel with no non-NaN sample is not FLAT
            n_emg += ss > emg_total
            n_sat += (mx >= sat) | (mn <= -sat)
            n_nf += lb[c] >= start
        bits = 16 if setup[_GAP] > start else 0  # both samples around the gap are in the window
        if n_amp > 0 and (checks & _AMP) != 0:
            bits |= 1
        if n_flat > 0 and (checks & _FLAT) != 0:
            bits |= 2
        if n_nf > 0:
            bits |= 4
        if n_emg > 0 and emg_on:
            bits |= 8
        if n_sat > 0 and (checks & _SAT) != 0:
            bits |= 32
        out_flags[k] = bits
        k += 1
    setup[_COUNT] = count
    params[_P_PREV] = prev_t
    return k


def emg_filter(sfreq: float, low_hz: float, high_hz: float | None) -> np.ndarray:
    """Return the EMG filter's second-order sections for ``sfreq``.

    An elliptic band-pass (order 3: 1 dB ripple, 40 dB stopband) from ``low_hz``
    to ``high_hz`` — with the defaults 30–43 Hz it passes 30–43 Hz within 1 dB
    and attenuates 50 Hz mains by ≥ 25 dB and 60, 100, 120 Hz by ≥ 40 dB (the
    figures per rate are in docs/quality.md); a 2nd-order Butterworth
    high-pass at ``low_hz`` when ``high_hz`` is None or not below Nyquist.
    """
    if high_hz is not None and high_hz < sfreq / 2:
        return scipy_design("ellip", 3, 1.0, 40.0, [low_hz, high_hz], "bandpass", fs=sfreq, output="sos")
    return scipy_design("butter", 2, low_hz, "highpass", fs=sfreq, output="sos")


class QualityMonitor:
    """Quality flags per frame for ``n_channels`` columns.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    n_channels : int
        Columns checked (feature signals and monitor electrodes).
    window, hop : int
        The frame schedule of the extractor.
    config : QualityConfig, optional
        Thresholds (``None`` in a field switches that check off); the
        defaults of :class:`~closedloop.config.features.QualityConfig` if omitted.
    """

    def __init__(self, sfreq: float, n_channels: int, window: int, hop: int, config: QualityConfig | None = None):
        q = config if config is not None else QualityConfig()
        self.config = q
        self.sfreq = float(sfreq)
        self.n_channels = nch = int(n_channels)
        self.window, self.hop = int(window), int(hop)
        self.block = math.gcd(self.window, self.hop)
        n_blk = self.window // self.block
        emg_on = q.emg_rms_uV is not None and q.emg_hz < self.sfreq / 2
        sos = emg_filter(self.sfreq, q.emg_hz, q.emg_high_hz) if emg_on else np.zeros((0, 6))
        if emg_on and sos.shape[0] < _N_SOS:  # pass-through sections (y = u exactly): one fused loop serves all
            sos = np.vstack([sos, np.tile([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], (_N_SOS - sos.shape[0], 1))])
        n_sos = sos.shape[0]
        checks = (
            (_AMP if q.amplitude_uV is not None else 0)
            | (_FLAT if q.flat_uV is not None else 0)
            | (_EMG if emg_on else 0)
            | (_SAT if q.saturation_uV is not None else 0)
        )
        n_rows = _N_ROWS + 2 * n_sos
        n_par = _N_PARAMS + 8 * n_sos
        self._ist = np.zeros(_N_SETUP + 2 * nch, dtype=np.int64)
        self._setup = self._ist[:_N_SETUP]
        self._setup[[_GAP, _HOP, _WINDOW, _BLOCK, _NBLK, _CHECKS, _UNSTARTED, _NSOS]] = [
            _NEVER,
            self.hop,
            self.window,
            self.block,
            n_blk,
            checks,
            nch if emg_on else 0,
            n_sos,
        ]
        self._last_bad = self._ist[_N_SETUP : _N_SETUP + nch]
        self._last_bad[:] = _NEVER
        self._fst = np.zeros(n_par + n_rows * nch + 6 * n_blk * nch)
        params = self._fst[:n_par]
        params[:_N_PARAMS] = [
            q.amplitude_uV if q.amplitude_uV is not None else np.inf,
            2.0 * q.flat_uV if q.flat_uV is not None else -np.inf,
            (q.emg_rms_uV or 0.0) ** 2 * self.window,
            q.saturation_uV if q.saturation_uV is not None else np.inf,
            1.0 / self.sfreq,
            q.gap_tolerance_s,
            0.0,
            q.saturation_uV if q.saturation_uV is not None else 1e100,  # the EMG filter skips samples from here
        ]
        if n_sos:
            params[_N_PARAMS : _N_PARAMS + 6 * n_sos] = sos.ravel()
            params[_N_PARAMS + 6 * n_sos :] = scipy_design("sosfilt_zi", sos).ravel()
        self._chan = self._fst[n_par : n_par + n_rows * nch].reshape(n_rows, nch)
        for row in (_BMX, _PMX, _FMX):
            self._chan[row] = -np.inf
        for row in (_BMN, _PMN, _FMN):
            self._chan[row] = np.inf

    def process(self, x: np.ndarray, stamps: np.ndarray, out_flags: np.ndarray) -> int:
        """Feed float64 C-contiguous ``x`` (n, n_channels); write int64 flag bits per frame."""
        return self.bind(out_flags)(x, stamps)

    def bind(self, out_flags: np.ndarray) -> Callable[[np.ndarray, np.ndarray], int]:
        """``process`` with its output fixed: the kernel with its state bound, called as ``(x, stamps)``."""
        return functools.partial(_quality_kernel, self._ist, self._fst, out_flags)

    def window_stats(self) -> dict[str, np.ndarray]:
        """Return the statistics of the last frame's window per column (copies).

        ``max``/``min`` (NaN ignored), ``emg_ms`` (mean square of the EMG
        filter's output), ``last_nonfinite`` (sample count of the last NaN/Inf).
        """
        return {
            "max": self._chan[_FMX].copy(),
            "min": self._chan[_FMN].copy(),
            "emg_ms": self._chan[_FSS] / self.window,
            "last_nonfinite": self._last_bad.copy(),
        }


assert (Quality.ARTIFACT, Quality.FLAT, Quality.NONFINITE, Quality.EMG, Quality.GAP, Quality.SATURATION) == (
    1,
    2,
    4,
    8,
    16,
    32,
)
