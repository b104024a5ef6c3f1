"""From band powers to feature rows: relative powers, ratios, log10, EMA smoothing, baseline z-score.

Per (virtual) channel the row holds, in order: band powers, relative powers
(``band / broad band``, if asked), ratios, then PAF estimates. Powers, relative
powers and ratios are log10'd if asked, then smoothed by an exponential moving
average with time constant ``smoothing_s`` (per frame:
``a = 1 - exp(-hop / (smoothing_s * sfreq))``; a NaN restarts it), then, if a
baseline is configured, z-scored against the frames of the first
``duration_s`` seconds of samples. Baseline frames are flagged
``Quality.BASELINE`` and their normalised features are NaN; frames flagged
ARTIFACT/FLAT/NONFINITE/EMG/GAP/SATURATION do not enter the baseline statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np

from closedloop.types import Quality

BASELINE_EXCLUDES = int(
    Quality.ARTIFACT | Quality.FLAT | Quality.NONFINITE | Quality.EMG | Quality.GAP | Quality.SATURATION
)


@numba.njit(cache=True, nogil=True)
def _derive_kernel(setup, ema_a, ratio_idx, masks, stats, power, paf, flags, rows, out_flags, k_frames, first_index):
    """Fill ``rows[:k_frames]`` (frames, features) and ``out_flags``; state in ``stats``.

    setup = [n_bands, relative, log10, baseline end, baseline-excluding flags, window, hop];
    ratio_idx = (numerator, denominator) band rows; masks = (smooth, normalise) per feature;
    stats = (EMA, baseline n, mean, M2) per feature. Few arguments: each costs dispatch time.
    """
    n_bands, relative, log10 = setup[0], setup[1] != 0, setup[2] != 0
    bl_end, bl_exclude, window, hop = setup[3], setup[4], setup[5], setup[6]
    ratio_num, ratio_den = ratio_idx[0], ratio_idx[1]
    smooth, bl_mask = masks[0], masks[1]
    ema, bl_n, bl_mean, bl_m2 = stats[0], stats[1], stats[2], stats[3]
    n_ch = power.shape[1]
    n_rat = ratio_num.shape[0]
    n_paf = paf.shape[2]
    n_rel = n_bands if relative else 0
    per = n_bands + n_rel + n_rat + n_paf
    n_feat = rows.shape[1]
    for k in range(k_frames):
        for c in range(n_ch):
            base = c * per
            j = base
            for b in range(n_bands):
                rows[k, j] = power[k, c, b]
                j += 1
            if relative:
                broad = power[k, c, n_bands]
                for b in range(n_bands):
                    rows[k, j] = power[k, c, b] / broad if broad > 0.0 else np.nan
                    j += 1
            for r in range(n_rat):
                den = power[k, c, ratio_den[r]]
                rows[k, j] = power[k, c, ratio_num[r]] / den if den > 0.0 else np.nan
                j += 1
            if log10:
                for jj in range(base, j):
                    v = rows[k, jj]
                    if v > 0.0:
                        rows[k, jj] = np.log10(v)
                    elif v == 0.0:
                        rows[k, jj] = -np.inf
                    else:
                        rows[k, jj] = np.nan
            for p in range(n_paf):
                rows[k, j] = paf[k, c, p]
                j += 1
        if ema_a < 1.0:
            for f in range(n_feat):
                if smooth[f]:
                    if np.isnan(ema[f]):
                        ema[f] = rows[k, f]
                    else:
                        ema[f] += ema_a * (rows[k, f] - ema[f])
                    rows[k, f] = ema[f]
        fl = flags[k]
        if window + (first_index + k) * hop <= bl_end:
            fl |= 64
            usable = (fl & bl_exclude) == 0
            for f in range(n_feat):
                if bl_mask[f]:
                    v = rows[k, f]
                    if usable and np.isfinite(v):
                        bl_n[f] += 1.0
                        d = v - bl_mean[f]
                        bl_mean[f] += d / bl_n[f]
                        bl_m2[f] += d * (v - bl_mean[f])
                    rows[k, f] = np.nan
        elif bl_end >= 0:
            for f in range(n_feat):
                if bl_mask[f]:
                    sd = np.sqrt(bl_m2[f] / (bl_n[f] - 1.0)) if bl_n[f] >= 2.0 else 0.0
                    rows[k, f] = (rows[k, f] - bl_mean[f]) / sd if sd > 0.0 else np.nan
        out_flags[k] = fl


class FeatureDeriver:
    """State and layout of the derived-feature stage for ``n_channels`` (virtual) channels.

    Parameters
    ----------
    bands : list of str
        Band names (power columns 0..n-1; column n is the broad band when ``relative``).
    ratios : dict of str -> (str, str)
        Ratio name -> (numerator band, denominator band).
    relative : bool
        Add ``<band>_rel`` features.
    paf_names : sequence of str
        PAF features appended per channel.
    log10 : bool
        log10 of powers, relative powers and ratios.
    ema_a : float
        EMA coefficient per frame (1 = no smoothing).
    baseline_frames_until : int
        Frames whose sample count is <= this form the baseline (-1 = none).
    baseline_features : list of str or None
        Bare feature names to normalise (default: all powers and ratios).
    window, hop : int
        The frame schedule (samples): frame ``j`` ends at sample count ``window + j * hop``.
    """

    def __init__(
        self,
        n_channels: int,
        bands: list[str],
        ratios: dict[str, tuple[str, str]],
        relative: bool,
        paf_names,
        log10: bool,
        ema_a: float,
        baseline_frames_until: int = -1,
        baseline_features: list[str] | None = None,
        *,
        window: int,
        hop: int,
    ) -> None:
        self.n_bands = len(bands)
        self.relative = bool(relative)
        idx = {b: i for i, b in enumerate(bands)}
        self._ratio_idx = np.array(
            [[idx[n] for n, _ in ratios.values()], [idx[d] for _, d in ratios.values()]], dtype=np.int64
        ).reshape(2, len(ratios))
        self.ratio_num, self.ratio_den = self._ratio_idx
        powers = list(bands) + ([f"{b}_rel" for b in bands] if relative else []) + list(ratios)
        self.base_names = powers + list(paf_names)
        self.n_paf = len(paf_names)
        n_feat = n_channels * len(self.base_names)
        norm = set(powers if baseline_features is None else baseline_features)
        per_smooth = np.array([name in powers for name in self.base_names])
        per_norm = np.array([name in norm for name in self.base_names])
        self._masks = np.zeros((2, n_feat), dtype=np.int64)  # 0/1: packs with the other int64 state
        self.smooth, self.bl_mask = self._masks
        self.smooth[:] = np.tile(per_smooth, n_channels)
        if baseline_frames_until >= 0:
            self.bl_mask[:] = np.tile(per_norm, n_channels)
        self.log10 = bool(log10)
        self.ema_a = float(ema_a)
        self.bl_end = int(baseline_frames_until)
        self._stats = np.zeros((4, n_feat))
        self.ema, self.bl_n, self.bl_mean, self.bl_m2 = self._stats
        self.ema[:] = np.nan
        self._setup = np.array(
            [self.n_bands, self.relative, self.log10, self.bl_end, BASELINE_EXCLUDES, window, hop], dtype=np.int64
        )

    def run(self, k: int, first_index: int, power, paf, flags, rows, out_flags) -> None:
        """Fill ``rows[:k]`` and ``out_flags[:k]`` from ``power[:k]``, ``paf[:k]``, quality ``flags``.

        Frame ``first_index + j`` ends at sample count ``window + (first_index + j) * hop``.
        """
        _derive_kernel(
            self._setup,
            self.ema_a,
            self._ratio_idx,
            self._masks,
            self._stats,
            power,
            paf,
            flags,
            rows,
            out_flags,
            k,
            first_index,
        )

    def bind(self, power, paf, flags, rows, out_flags) -> Callable[[int, int], None]:
        """``run`` with its arrays fixed: the kernel with its state bound, called as ``(k, first_index)``."""
        return functools.partial(
            _derive_kernel,
            self._setup,
            self.ema_a,
            self._ratio_idx,
            self._masks,
            self._stats,
            power,
            paf,
            flags,
            rows,
            out_flags,
        )

    def baseline_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) per feature of the baseline so far (NaN where undefined)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.where(self.bl_n >= 2, np.sqrt(self.bl_m2 / np.maximum(self.bl_n - 1, 1)), np.nan)
        mean = np.where(self.bl_n >= 1, self.bl_mean, np.nan)
        return mean, sd
