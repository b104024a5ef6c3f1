"""From band powers to feature rows: relative powers, ratios, log10, EMA smoothing, baseline z-score.

Per (virtual) channel the row holds, in order: band powers, relative powers
(``band / broad band``, if asked), ratios, then PAF estimates. Powers, relative
powers and ratios are log10'd if asked, then smoothed by an exponential moving
average with time constant ``smoothing_s`` (per frame:
``a = 1 - exp(-hop / (smoothing_s * sfreq))``; a NaN restarts it), then, if a
baseline is configured, z-scored against the frames of the first
``duration_s`` seconds of samples. Baseline frames are flagged
``Quality.BASELINE`` and their normalised features are NaN; frames flagged
ARTIFACT/FLAT/NONFINITE/EMG/GAP do not enter the baseline statistics.
"""

from __future__ import annotations

import numba
import numpy as np

from closedloop.types import Quality

BASELINE_EXCLUDES = int(Quality.ARTIFACT | Quality.FLAT | Quality.NONFINITE | Quality.EMG | Quality.GAP)


@numba.njit(cache=True, nogil=True)
def _derive_kernel(k_frames, first_index, window, hop, power, paf, flags, n_bands, relative, ratio_num, ratio_den, log10, ema_a,
                   smooth, ema, bl_end, bl_mask, bl_exclude, bl_n, bl_mean, bl_m2, rows, out_flags):
    """Fill ``rows[:k_frames]`` (frames, features) and ``out_flags``; state in ema/bl_* arrays."""
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
    """

    def __init__(self, n_channels: int, bands: list[str], ratios: dict[str, tuple[str, str]], relative: bool,
                 paf_names, log10: bool, ema_a: float, baseline_frames_until: int = -1,
                 baseline_features: list[str] | None = None) -> None:
        self.n_bands = len(bands)
        self.relative = bool(relative)
        idx = {b: i for i, b in enumerate(bands)}
        self.ratio_num = np.array([idx[n] for n, _ in ratios.values()], dtype=np.int64)
        self.ratio_den = np.array([idx[d] for _, d in ratios.values()], dtype=np.int64)
        powers = list(bands) + ([f"{b}_rel" for b in bands] if relative else []) + list(ratios)
        self.base_names = powers + list(paf_names)
        self.n_paf = len(paf_names)
        n_feat = n_channels * len(self.base_names)
        norm = set(powers if baseline_features is None else baseline_features)
        per_smooth = np.array([name in powers for name in self.base_names])
        per_norm = np.array([name in norm for name in self.base_names])
        self.smooth = np.tile(per_smooth, n_channels)
        self.bl_mask = np.tile(per_norm, n_channels) if baseline_frames_until >= 0 else np.zeros(n_feat, bool)
        self.log10 = bool(log10)
        self.ema_a = float(ema_a)
        self.bl_end = int(baseline_frames_until)
        self.ema = np.full(n_feat, np.nan)
        self.bl_n = np.zeros(n_feat)
        self.bl_mean = np.zeros(n_feat)
        self.bl_m2 = np.zeros(n_feat)

    def run(self, k: int, first_index: int, window: int, hop: int, power, paf, flags, rows, out_flags) -> None:
        """Fill ``rows[:k]`` and ``out_flags[:k]`` from ``power[:k]``, ``paf[:k]``, quality ``flags``.

        Frame ``first_index + j`` ends at sample count ``window + (first_index + j) * hop``.
        """
        _derive_kernel(k, first_index, window, hop, power, paf, flags, self.n_bands, self.relative, self.ratio_num, self.ratio_den,
                       self.log10, self.ema_a, self.smooth, self.ema, self.bl_end, self.bl_mask,
                       BASELINE_EXCLUDES, self.bl_n, self.bl_mean, self.bl_m2, rows, out_flags)

    def baseline_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) per feature of the baseline so far (NaN where undefined)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.where(self.bl_n >= 2, np.sqrt(self.bl_m2 / np.maximum(self.bl_n - 1, 1)), np.nan)
        mean = np.where(self.bl_n >= 1, self.bl_mean, np.nan)
        return mean, sd
