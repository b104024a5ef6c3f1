"""From band powers to feature rows: ratios, extras, expressions, log10, EMA smoothing, baseline normalisation.

Per (virtual) channel the row holds, in order: band powers, relative powers
(``band / broad band``, if asked), ratios, then the extras (PAF estimates,
the spectrum stage's aperiodic and IAF features); after every channel come the
global features (cross-channel ratios and expressions), computed by compiled
expressions (:mod:`~closedloop.features.expressions`) from every feature's
*linear* value (before log10). Powers, relative powers, ratios and IAF band
powers are log10'd if asked, then powers and expressions are smoothed by an
exponential moving average with time constant ``smoothing_s`` (per frame:
``a = 1 - exp(-hop / (smoothing_s * sfreq))``; a NaN restarts it), then, if a
baseline is configured, z-scored against (or, for ``baseline.difference``,
reported as the difference from the mean of) the frames of the first
``duration_s`` seconds of samples. Baseline frames are flagged
``Quality.BASELINE`` and their normalised features are NaN; frames flagged
ARTIFACT/FLAT/NONFINITE/EMG/GAP/SATURATION do not enter the baseline statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.expressions import compile_expressions
from closedloop.features.expressions import pack_programs, run_programs
from closedloop.features.vectorlog import log10_where
from closedloop.types import Quality

BASELINE_EXCLUDES = int(
    Quality.ARTIFACT | Quality.FLAT | Quality.NONFINITE | Quality.EMG | Quality.GAP | Quality.SATURATION
)


#: Entries of the deriver's int64 ``setup`` before the expressions' code.
_HEADER = 9


@numba.njit(cache=True, nogil=True)
def _derive_kernel(setup, fconst, ratio_idx, masks, stats, power, extra, flags, rows, out_flags, k_frames, first_index):
    """Fill ``rows[:k_frames]`` (frames, features) and ``out_flags``; state in ``stats``.

    setup = [n_bands, relative, stack size, baseline end, baseline-excluding flags, window, hop, expressions,
    columns per channel x channels] then the expressions' code; fconst = [EMA coefficient, stack (stack size),
    expression constants]; ratio_idx = (numerator, denominator) band rows; masks = (smooth, baseline mode
    (1 z-score, 2 difference), log10) per feature; stats = (EMA, baseline n, mean, M2, linear values) per
    feature. Few arguments: each costs dispatch time.
    """
    n_bands, relative, n_stack = setup[0], setup[1] != 0, setup[2]
    bl_end, bl_exclude, window, hop = setup[3], setup[4], setup[5], setup[6]
    n_expr, n_chan_cols = setup[7], setup[8]
    ema_a = fconst[0]
    stack, consts = fconst[1 : 1 + n_stack], fconst[1 + n_stack :]
    ratio_num, ratio_den = ratio_idx[0], ratio_idx[1]
    smooth, bl_mode, logm = masks[0], masks[1], masks[2]
    ema, bl_n, bl_mean, bl_m2, lin = stats[0], stats[1], stats[2], stats[3], stats[4]
    n_ch = power.shape[1]
    n_rat = ratio_num.shape[0]
    n_extra = extra.shape[2]
    n_rel = n_bands if relative else 0
    per = n_bands + n_rel + n_rat + n_extra
    n_feat = rows.shape[1]
    for k in range(k_frames):
        row = rows[k]
        for c in range(n_ch):
            j = c * per
            for b in range(n_bands):
                row[j] = power[k, c, b]
                j += 1
            if relative:
                broad = power[k, c, n_bands]
                for b in range(n_bands):
                    row[j] = power[k, c, b] / broad if broad > 0.0 else np.nan
                    j += 1
            for r in range(n_rat):
                den = power[k, c, ratio_den[r]]
                row[j] = power[k, c, ratio_num[r]] / den if den > 0.0 else np.nan
                j += 1
            for e in range(n_extra):
                row[j] = extra[k, c, e]
                j += 1
        for f in range(n_chan_cols):
            lin[f] = row[f]
        log10_where(lin[:n_chan_cols], logm, row)  # vectorised; the expressions below read the linear values
        if n_expr > 0:
            run_programs(setup, _HEADER, n_expr, consts, stack, lin)
            for f in range(n_chan_cols, n_feat):
                row[f] = lin[f]
        if ema_a < 1.0:
            for f in range(n_feat):
                if smooth[f]:
                    if np.isnan(ema[f]):
                        ema[f] = row[f]
                    else:
                        ema[f] += ema_a * (row[f] - ema[f])
                    row[f] = ema[f]
        fl = flags[k]
        if window + (first_index + k) * hop <= bl_end:
            fl |= 64
            usable = (fl & bl_exclude) == 0
            for f in range(n_feat):
                if bl_mode[f]:
                    v = row[f]
                    if usable and np.isfinite(v):
                        bl_n[f] += 1.0
                        d = v - bl_mean[f]
                        bl_mean[f] += d / bl_n[f]
                        bl_m2[f] += d * (v - bl_mean[f])
                    row[f] = np.nan
        elif bl_end >= 0:
            for f in range(n_feat):
                mode = bl_mode[f]
                if mode == 1:
                    sd = np.sqrt(bl_m2[f] / (bl_n[f] - 1.0)) if bl_n[f] >= 2.0 else 0.0
                    row[f] = (row[f] - bl_mean[f]) / sd if sd > 0.0 else np.nan
                elif mode == 2:
                    row[f] = row[f] - bl_mean[f] if bl_n[f] >= 1.0 else np.nan
        out_flags[k] = fl


class FeatureDeriver:
    """State and layout of the derived-feature stage for ``n_channels`` (virtual) channels.

    Parameters
    ----------
    bands : list of str
        Band names (power columns 0..n-1; column n is the broad band when ``relative``).
    ratios : dict of str -> (str, str)
        Ratio name -> (numerator band, denominator band), per channel.
    relative : bool
        Add ``<band>_rel`` features.
    extra_names : sequence of str
        Per-channel features copied from the extra stages (PAF, spectrum), in order.
    log10 : bool
        log10 of powers, relative powers, ratios (and of the extras in ``extra_log``).
    ema_a : float
        EMA coefficient per frame (1 = no smoothing).
    baseline_frames_until : int
        Frames whose sample count is <= this form the baseline (-1 = none).
    baseline_features : list of str or None
        Bare feature names to z-score (default: all powers and ratios, cross-channel ratios included).
    window, hop : int
        The frame schedule (samples): frame ``j`` ends at sample count ``window + j * hop``.
    channel_names : list of str or None
        Suffixes of the per-channel names (``<feature>_<channel>``); None: bare names (one channel).
    extra_log, extra_smooth : collections of str
        Extras that are powers (log10'd like bands, and smoothed) and extras that are only smoothed.
    expressions : dict of str -> str
        Global features computed from the others' linear values (cross-channel ratios included).
    baseline_difference : list of str
        Bare names reported as the difference from their baseline mean instead.
    global_normalised : collection of str
        Global features z-scored by default.
    """

    def __init__(
        self,
        n_channels: int,
        bands: list[str],
        ratios: dict[str, tuple[str, str]],
        relative: bool,
        extra_names,
        log10: bool,
        ema_a: float,
        baseline_frames_until: int = -1,
        baseline_features: list[str] | None = None,
        *,
        window: int,
        hop: int,
        channel_names: list[str] | None = None,
        extra_log=(),
        extra_smooth=(),
        expressions: dict[str, str] | None = None,
        baseline_difference=(),
        global_normalised=(),
    ) -> None:
        self.n_bands = len(bands)
        self.relative = bool(relative)
        idx = {b: i for i, b in enumerate(bands)}
        self._ratio_idx = np.array(
            [[idx[n] for n, _ in ratios.values()], [idx[d] for _, d in ratios.values()]], dtype=np.int64
        ).reshape(2, len(ratios))
        self.ratio_num, self.ratio_den = self._ratio_idx
        powers = list(bands) + ([f"{b}_rel" for b in bands] if relative else []) + list(ratios)
        self.base_names = powers + list(extra_names)
        self.n_extra = len(extra_names)
        self.n_paf = self.n_extra  # the extras' count under its historical name
        if channel_names is None:
            if n_channels != 1:
                raise ValueError("without channel names, features need exactly one (virtual) channel")
            chan_cols = list(self.base_names)
        else:
            chan_cols = [f"{f}_{ch}" for ch in channel_names for f in self.base_names]
        expressions = dict(expressions or {})
        programs, problems = compile_expressions(expressions, chan_cols)
        if problems:
            raise ValueError(problems[0])
        self.names = tuple(chan_cols + list(expressions))
        n_chan_cols = len(chan_cols)
        n_feat = len(self.names)
        code, consts, n_stack = pack_programs(programs)
        diff = set(baseline_difference)
        norm = set(powers) | set(global_normalised) if baseline_features is None else set(baseline_features)
        norm -= diff
        log_set = set(powers) | set(extra_log) if log10 else set()
        smooth_set = set(powers) | set(extra_log) | set(extra_smooth)
        per_smooth = [name in smooth_set for name in self.base_names] * n_channels + [True] * len(expressions)
        per_log = [name in log_set for name in self.base_names] * n_channels + [False] * len(expressions)
        bare = list(self.base_names) * n_channels + list(expressions)
        per_mode = [2 if name in diff else 1 if name in norm else 0 for name in bare]
        self._masks = np.zeros((3, n_feat), dtype=np.int64)  # 0/1(/2): packs with the other int64 state
        self.smooth, self.bl_mask, self.logm = self._masks
        self.smooth[:] = per_smooth
        self.logm[:] = per_log
        if baseline_frames_until >= 0:
            self.bl_mask[:] = per_mode
        self.log10 = bool(log10)
        self.ema_a = float(ema_a)
        self.bl_end = int(baseline_frames_until)
        self._stats = np.zeros((5, n_feat))
        self.ema, self.bl_n, self.bl_mean, self.bl_m2, self.lin = self._stats
        self.ema[:] = np.nan
        header = [self.n_bands, self.relative, n_stack, self.bl_end, BASELINE_EXCLUDES, window, hop]
        self._setup = np.concatenate([np.array([*header, len(programs), n_chan_cols], dtype=np.int64), code]).astype(
            np.int64
        )
        self._fconst = np.concatenate([[self.ema_a], np.zeros(n_stack), consts]).astype(np.float64)

    def _args(self, power, extra, flags, rows, out_flags) -> tuple:
        return (
            self._setup,
            self._fconst,
            self._ratio_idx,
            self._masks,
            self._stats,
            power,
            extra,
            flags,
            rows,
            out_flags,
        )

    def run(self, k: int, first_index: int, power, extra, flags, rows, out_flags) -> None:
        """Fill ``rows[:k]`` and ``out_flags[:k]`` from ``power[:k]``, ``extra[:k]``, quality ``flags``.

        Frame ``first_index + j`` ends at sample count ``window + (first_index + j) * hop``.
        """
        _derive_kernel(*self._args(power, extra, flags, rows, out_flags), k, first_index)

    def bind(self, power, extra, flags, rows, out_flags) -> Callable[[int, int], None]:
        """``run`` with its arrays fixed: the kernel with its state bound, called as ``(k, first_index)``."""
        return functools.partial(_derive_kernel, *self._args(power, extra, flags, rows, out_flags))

    def baseline_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) per feature of the baseline so far (NaN where undefined)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.where(self.bl_n >= 2, np.sqrt(self.bl_m2 / np.maximum(self.bl_n - 1, 1)), np.nan)
        mean = np.where(self.bl_n >= 1, self.bl_mean, np.nan)
        return mean, sd
