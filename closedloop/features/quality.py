"""Per-frame quality flags over each frame's window, O(channels) per frame.

Every check keeps, per channel, the index of the last sample that tripped it,
so a frame only compares indices with the start of its window:

- ARTIFACT: ``|x| > amplitude_uV`` somewhere in the window;
- FLAT: the channel stayed within ``±flat_uV`` of one value for the whole
  window (an anchor moves whenever a sample leaves that band);
- NONFINITE: a NaN or Inf sample in the window;
- EMG: RMS of the signal above ``emg_hz`` (2nd-order Butterworth high-pass)
  over the window exceeds ``emg_rms_uV`` (block sums, resynced once a window);
- GAP: consecutive timestamps inside the window differ from ``1/sfreq`` by more
  than half a period plus ``gap_tolerance_s`` (or are not finite).

Thresholds apply to the preprocessed signal (set a high-pass so that
electrode offsets do not count as amplitude). Defaults: docs/eeg-and-pain.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numba
import numpy as np
from scipy import signal

from closedloop.types import Quality

_NEVER = -(2**62)


@numba.njit(inline="always", cache=True, nogil=True)
def _emg_sample(v, c, hp_sos, hp_unit, started, zi0, zi1, blk):
    """One sample of channel ``c`` through the EMG high-pass (started in its steady state); add y² to its block."""
    if started[c] == 0:
        zi0[c] = hp_unit[0] * v
        zi1[c] = hp_unit[1] * v
        started[c] = 1
    y = hp_sos[0] * v + zi0[c]
    zi0[c] = hp_sos[1] * v - hp_sos[4] * y + zi1[c]
    zi1[c] = hp_sos[2] * v - hp_sos[5] * y
    blk[c] += y * y


@numba.njit(cache=True, nogil=True)
def _quality_kernel(setup, params, trips, chan, ring, out_flags, x, stamps):
    """Track per-channel trip indices; write flag bits at frames. Returns frames written.

    Few arguments (each costs dispatch time), unpacked here:
    setup (int64) = [count, last gap index, hop, window, block, amplitude on, flat on, EMG on];
    params = [amplitude, flat, EMG mean square, sample period, gap tolerance, stamp of the previous sample,
    high-pass SOS (6), its unit-step state (2)]; trips (4, n_ch) int64 = last sample that was non-finite,
    over amplitude, outside the flat band, and whether the high-pass has started; chan (5, n_ch) = the
    high-pass state (2 rows), flat anchor, EMG block sum and window sum; ring (blocks, n_ch) = EMG block sums.
    """
    n, n_ch = x.shape
    hop, window, block = setup[2], setup[3], setup[4]
    amp_on, flat_on, emg_on = setup[5] != 0, setup[6] != 0, setup[7] != 0
    amp, flat, emg_ms = params[0], params[1], params[2]
    period, gap_tol = params[3], params[4]
    hp_sos, hp_unit = params[6:12], params[12:14]
    last_bad, last_over, last_move, started = trips[0], trips[1], trips[2], trips[3]
    zi0, zi1, anchor, blk, wsum = chan[0], chan[1], chan[2], chan[3], chan[4]
    n_blocks = ring.shape[0]
    k = 0
    for i in range(n):
        count = setup[0]
        t = stamps[i]
        if count > 0:
            dt = t - params[5]
            if not (abs(dt - period) <= 0.5 * period + gap_tol):
                setup[1] = count
        params[5] = t
        row = x[i]
        finite = True
        for c in range(n_ch):
            if not np.isfinite(row[c]):
                finite = False
        # the same per-channel updates either way; a finite row runs them check by check over all
        # channels (vectorised loops), a row with NaN/Inf channel by channel, skipping the bad ones
        if finite:
            if amp_on:
                for c in range(n_ch):
                    if abs(row[c]) > amp:
                        last_over[c] = count
            if flat_on:
                for c in range(n_ch):
                    v = row[c]
                    if not (abs(v - anchor[c]) <= flat):
                        anchor[c] = v
                        last_move[c] = count
            if emg_on:
                for c in range(n_ch):
                    _emg_sample(row[c], c, hp_sos, hp_unit, started, zi0, zi1, blk)
        else:
            for c in range(n_ch):
                v = row[c]
                if not np.isfinite(v):
                    last_bad[c] = count
                    continue
                if amp_on and abs(v) > amp:
                    last_over[c] = count
                if flat_on and not (abs(v - anchor[c]) <= flat):
                    anchor[c] = v
                    last_move[c] = count
                if emg_on:
                    _emg_sample(v, c, hp_sos, hp_unit, started, zi0, zi1, blk)
        count += 1
        setup[0] = count
        if emg_on and count % block == 0:
            slot = (count // block - 1) % n_blocks
            for c in range(n_ch):
                wsum[c] += blk[c] - ring[slot, c]
                ring[slot, c] = blk[c]
                blk[c] = 0.0
            if slot == n_blocks - 1:
                for c in range(n_ch):
                    total = 0.0
                    for j in range(n_blocks):
                        total += ring[j, c]
                    wsum[c] = total
        if count < window or (count - window) % hop != 0:
            continue
        start = count - window
        bits = 0
        if setup[1] > start:  # both samples around the gap are in the window
            bits |= 16
        for c in range(n_ch):
            if last_bad[c] >= start:
                bits |= 4
            if amp_on and last_over[c] >= start:
                bits |= 1
            if flat_on and last_move[c] <= start:
                bits |= 2
            if emg_on and wsum[c] > emg_ms * window:
                bits |= 8
        out_flags[k] = bits
        k += 1
    return k


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
    amplitude_uV, flat_uV, emg_rms_uV : float | None
        Thresholds; ``None`` switches a check off.
    emg_hz : float
        High-pass corner of the EMG check.
    gap_tolerance_s : float
        Extra tolerance of sample intervals before GAP.
    """

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        window: int,
        hop: int,
        amplitude_uV: float | None = 100.0,
        flat_uV: float | None = 0.5,
        emg_hz: float = 30.0,
        emg_rms_uV: float | None = 5.0,
        gap_tolerance_s: float = 0.001,
    ) -> None:
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self.window, self.hop = int(window), int(hop)
        emg_on = emg_rms_uV is not None and emg_hz < self.sfreq / 2
        self._block = math.gcd(self.window, self.hop)
        self._setup = np.array(
            [0, _NEVER, self.hop, self.window, self._block, amplitude_uV is not None, flat_uV is not None, emg_on],
            dtype=np.int64,
        )
        self._params = np.zeros(14)
        self._params[:5] = [
            amplitude_uV or 0.0,
            flat_uV or 0.0,
            (emg_rms_uV or 0.0) ** 2,
            1.0 / self.sfreq,
            gap_tolerance_s,
        ]
        if emg_on:
            sos = signal.butter(2, emg_hz, "highpass", fs=self.sfreq, output="sos")
            self._params[6:12] = sos[0]
            self._params[12:14] = signal.sosfilt_zi(sos)[0]
        nch = self.n_channels
        self._trips = np.full((4, nch), _NEVER, dtype=np.int64)
        self._trips[3] = 0  # the high-pass has not started
        self._chan = np.zeros((5, nch))
        self._chan[2] = np.inf  # flat anchor: the first sample moves it
        self._ring = np.zeros((self.window // self._block, nch))

    def process(self, x: np.ndarray, stamps: np.ndarray, out_flags: np.ndarray) -> int:
        """Feed float64 C-contiguous ``x`` (n, n_channels); write int64 flag bits per frame."""
        return _quality_kernel(self._setup, self._params, self._trips, self._chan, self._ring, out_flags, x, stamps)

    def bind(self, out_flags: np.ndarray) -> Callable[[np.ndarray, np.ndarray], int]:
        """``process`` with its output fixed: the kernel with its state bound, called as ``(x, stamps)``."""
        return functools.partial(
            _quality_kernel, self._setup, self._params, self._trips, self._chan, self._ring, out_flags
        )


assert (Quality.ARTIFACT, Quality.FLAT, Quality.NONFINITE, Quality.EMG, Quality.GAP) == (1, 2, 4, 8, 16)
