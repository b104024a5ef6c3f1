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
electrode offsets do not count as amplitude). Defaults: DOMAIN.md §1.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import signal

from closedloop.types import Quality

_NEVER = -(2**62)


@numba.njit(cache=True, nogil=True)
def _quality_kernel(x, stamps, checks, thresholds, hp_sos, hp_zi, hp_unit, started, state, hop, window, block,
                    last_bad, last_over, last_move, anchor, blk, ring, wsum, out_flags):
    """Track per-channel trip indices; write flag bits at frames. Returns frames written.

    checks = [amplitude, flat, emg] (0/1); thresholds = [amplitude, flat, emg mean square, sample period,
    gap tolerance]; state = [count, last gap index]; stamps of the previous sample in thresholds[5].
    """
    n, n_ch = x.shape
    amp_on, flat_on, emg_on = checks[0] != 0, checks[1] != 0, checks[2] != 0
    amp, flat, emg_ms = thresholds[0], thresholds[1], thresholds[2]
    period, gap_tol = thresholds[3], thresholds[4]
    n_blocks = ring.shape[0]
    k = 0
    for i in range(n):
        count = state[0]
        t = stamps[i]
        if count > 0:
            dt = t - thresholds[5]
            if not (abs(dt - period) <= 0.5 * period + gap_tol):
                state[1] = count
        thresholds[5] = t
        for c in range(n_ch):
            v = x[i, c]
            if not np.isfinite(v):
                last_bad[c] = count
                continue
            if amp_on and abs(v) > amp:
                last_over[c] = count
            if flat_on and not (abs(v - anchor[c]) <= flat):
                anchor[c] = v
                last_move[c] = count
            if emg_on:
                if started[c] == 0:
                    hp_zi[c, 0] = hp_unit[0] * v
                    hp_zi[c, 1] = hp_unit[1] * v
                    started[c] = 1
                y = hp_sos[0] * v + hp_zi[c, 0]
                hp_zi[c, 0] = hp_sos[1] * v - hp_sos[4] * y + hp_zi[c, 1]
                hp_zi[c, 1] = hp_sos[2] * v - hp_sos[5] * y
                blk[c] += y * y
        count += 1
        state[0] = count
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
        if state[1] > start:  # both samples around the gap are in the window
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

    def __init__(self, sfreq: float, n_channels: int, window: int, hop: int, amplitude_uV: float | None = 100.0,
                 flat_uV: float | None = 0.5, emg_hz: float = 30.0, emg_rms_uV: float | None = 5.0,
                 gap_tolerance_s: float = 0.001) -> None:
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self.window, self.hop = int(window), int(hop)
        emg_on = emg_rms_uV is not None and emg_hz < self.sfreq / 2
        self._checks = np.array([amplitude_uV is not None, flat_uV is not None, emg_on], dtype=np.int64)
        self._thr = np.array([amplitude_uV or 0.0, flat_uV or 0.0, (emg_rms_uV or 0.0) ** 2, 1.0 / self.sfreq,
                              gap_tolerance_s, 0.0])
        if emg_on:
            sos = signal.butter(2, emg_hz, "highpass", fs=self.sfreq, output="sos")
            self._hp = np.ascontiguousarray(sos[0])
            self._hp_unit = np.ascontiguousarray(signal.sosfilt_zi(sos)[0])
        else:
            self._hp = np.zeros(6)
            self._hp_unit = np.zeros(2)
        nch = self.n_channels
        self._hp_zi = np.zeros((nch, 2))
        self._started = np.zeros(nch, dtype=np.int8)
        self._state = np.array([0, _NEVER], dtype=np.int64)
        self._last_bad = np.full(nch, _NEVER, dtype=np.int64)
        self._last_over = np.full(nch, _NEVER, dtype=np.int64)
        self._last_move = np.full(nch, _NEVER, dtype=np.int64)
        self._anchor = np.full(nch, np.inf)
        self._block = math.gcd(self.window, self.hop)
        self._ring = np.zeros((self.window // self._block, nch))
        self._blk = np.zeros(nch)
        self._wsum = np.zeros(nch)

    def process(self, x: np.ndarray, stamps: np.ndarray, out_flags: np.ndarray) -> int:
        """Feed float64 C-contiguous ``x`` (n, n_channels); write int64 flag bits per frame."""
        return _quality_kernel(
            x, stamps, self._checks, self._thr, self._hp, self._hp_zi, self._hp_unit, self._started, self._state,
            self.hop, self.window, self._block, self._last_bad, self._last_over, self._last_move, self._anchor,
            self._blk, self._ring, self._wsum, out_flags,
        )


assert (Quality.ARTIFACT, Quality.FLAT, Quality.NONFINITE, Quality.EMG, Quality.GAP) == (1, 2, 4, 8, 16)
