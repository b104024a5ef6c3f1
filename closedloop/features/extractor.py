"""From preprocessed chunks to frames: band powers, derived features, PAF, spectrum features, phase, quality flags.

One :meth:`FeatureExtractor.step` runs, each as one numba call over the whole
chunk, the band-power method, the quality monitor, the PAF estimator (if any),
the spectrum stage (aperiodic fit and IAF bands, if any;
:mod:`~closedloop.features.spectrum`), the phase estimators (if any;
:mod:`~closedloop.features.phase`) and the derived-feature stage (ratios,
expressions, smoothing, baseline), all on the sample clock: frames fall at sample
counts ``window + j * hop`` whatever the chunking, and every kernel walks the
samples in order, so frames are bit-identical for any chunk sizes.

Memory: all state and output buffers are allocated up front (and grown only
if a larger chunk than ever before arrives); frames come from a
:class:`~closedloop.features.framepool.FramePool`, so steady-state steps
allocate nothing but the returned list.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from closedloop.compiled import entry_point
from closedloop.config.features import (
    AperiodicConfig,
    FeatureBaselineConfig,
    FeaturesConfig,
    IAFConfig,
    IIRConfig,
    PafConfig,
    PhaseConfig,
    QualityConfig,
    SpectrumConfig,
    WelchConfig,
)
from closedloop.features import packed
from closedloop.features.bandpower import BandPowerMethod, Bands
from closedloop.features.derived import FeatureDeriver
from closedloop.features.framepool import QUALITY_FLAGS, FramePool
from closedloop.features.iir import IIRBandPower
from closedloop.features.paf import PeakAlphaFrequency
from closedloop.features.phase import PhaseEstimator
from closedloop.features.quality import QualityMonitor
from closedloop.features.sliding_dft import SlidingDFTBandPower
from closedloop.features.spectrum import SpectrumStage
from closedloop.features.welch import WelchBandPower
from closedloop.preprocess.buffers import F64, STAMP_STRIDES, Float64Input, as_stamps
from closedloop.types import Chunk, Frame

_NO_ROW = np.zeros(0)  # "no frame buffer to fill" for the fused kernel

METHODS = {
    "welch": WelchBandPower,
    "periodogram": WelchBandPower,
    "sliding_dft": SlidingDFTBandPower,
    "iir": IIRBandPower,
}
_BROAD = "__broad__"


def _method_kwargs(options: WelchConfig | IIRConfig | None) -> dict:
    """Return the constructor keywords of a band-power method from its settings object."""
    if isinstance(options, WelchConfig):
        return {"segment": options.segment_samples, "overlap": options.overlap}
    if isinstance(options, IIRConfig):
        return {"order": options.order, "smoothing": options.smoothing, "tau_s": options.tau_s}
    if options is None:
        return {}
    raise TypeError(f"method_options must be a WelchConfig or IIRConfig, got {type(options).__name__}")


def make_bandpower(
    method: str, sfreq: float, n_channels: int, bands: Bands, window: int, hop: int, **options
) -> BandPowerMethod:
    """Return a band-power method by name.

    ``welch`` (``segment``, ``overlap``), ``sliding_dft``, ``iir`` (``order``, ``smoothing``, ``tau_s``).
    """
    try:
        cls = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown band-power method {method!r}; choose from {sorted(METHODS)}") from None
    return cls(sfreq, n_channels, bands, window, hop, **options)


class FeatureExtractor:
    """Turn preprocessed chunks into :class:`~closedloop.types.Frame` objects.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    ch_names : list of str
        Names of the (virtual) channels the features are computed on (the first
        columns of each chunk).
    bands : dict of str -> (low, high)
        Frequency bands (Hz).
    ratios : dict of str -> (numerator, denominator), optional
        Ratios of band powers (per channel), or of two features (one cross-channel ratio).
    window, hop : int
        Window and hop in samples.
    log10 : bool
        Report log10 of powers and ratios.
    smoothing_s : float
        EMA time constant of the features (0 = off).
    per_channel : bool
        Name features ``{feature}_{channel}``; otherwise exactly one channel is
        expected and features carry bare names.
    method : {"welch", "sliding_dft", "iir", "periodogram"}
        Band-power method. ``welch`` with one segment (the default) and ``periodogram`` compute the window's
        periodogram, which runs as the sliding DFT (the same numbers to rounding, a fraction of the cost).
    method_options : WelchConfig or IIRConfig, optional
        Settings of the ``welch`` or ``iir`` method (their defaults otherwise).
    relative_to : (float, float), optional
        Broad band; adds ``<band>_rel`` features.
    paf : PafConfig, optional
        Peak alpha frequency settings; adds ``paf_cog`` / ``paf_peak``.
    baseline : FeatureBaselineConfig, optional
        Baseline block: z-score its features against it.
    quality : QualityConfig, optional
        Quality thresholds (the calibrated defaults otherwise, docs/quality.md).
    phase : dict of str -> PhaseConfig, optional
        Rhythms whose phase, amplitude, frequency and SNR each frame carries
        (``<rhythm>_phase`` ... after the PAF estimates; docs/phase.md).
    monitor_names : list of str
        Extra trailing columns of each chunk used only by the quality checks.
    spectrum : SpectrumConfig, optional
        Welch settings of the spectrum stage (its defaults otherwise).
    aperiodic : AperiodicConfig, optional
        Aperiodic fit; adds ``ap_offset``, ``ap_exponent`` (``ap_knee``) and ``<band>_ap``.
    iaf : IAFConfig, optional
        IAF-anchored bands; adds ``iaf`` and the IAF bands' powers.
    expressions : dict of str -> str, optional
        Global features computed from the others (see :mod:`closedloop.config.expressions`).
    """

    def __init__(
        self,
        sfreq: float,
        ch_names: list[str],
        bands: Bands,
        ratios: dict[str, tuple[str, str]] | None = None,
        window: int = 500,
        hop: int = 25,
        log10: bool = True,
        smoothing_s: float = 0.0,
        per_channel: bool = False,
        *,
        method: str = "welch",
        method_options: WelchConfig | IIRConfig | None = None,
        relative_to: tuple[float, float] | None = None,
        paf: PafConfig | None = None,
        baseline: FeatureBaselineConfig | None = None,
        quality: QualityConfig | None = None,
        phase: dict[str, PhaseConfig] | None = None,
        monitor_names: list[str] | tuple[str, ...] = (),
        spectrum: SpectrumConfig | None = None,
        aperiodic: AperiodicConfig | None = None,
        iaf: IAFConfig | None = None,
        expressions: dict[str, str] | None = None,
    ) -> None:
        self.sfreq = float(sfreq)
        self.ch_names = list(ch_names)
        self.monitor_names = list(monitor_names)
        self.window, self.hop = int(window), int(hop)
        self.method = method
        n_sig = len(self.ch_names)
        self.n_columns = n_sig + len(self.monitor_names)
        self.ratios = dict(ratios or {})
        band_ratios = {k: v for k, v in self.ratios.items() if v[0] in bands and v[1] in bands}
        globals_ = {  # a ratio of two features is one global feature: an expression
            k: (f"log10({num} / {den})" if log10 else f"{num} / {den}")
            for k, (num, den) in self.ratios.items()
            if k not in band_ratios
        }
        globals_.update(expressions or {})
        all_bands = dict(bands)
        if relative_to is not None:
            all_bands[_BROAD] = tuple(relative_to)
        kwargs = _method_kwargs(method_options)
        if method in ("welch", "periodogram") and (kwargs.get("segment") or self.window) == self.window:
            # one segment: the window's periodogram, which the sliding DFT keeps at O(bins) per sample and
            # packs into the fused step. The same numbers to rounding: < 1e-9 relative (typically 1e-14), as
            # accurate as the BLAS path against scipy under large DC offsets; a sample g leaves a rounding
            # residue ~1e-16 g for up to a window (< 1e-9 relative up to g = 1e8 µV, 1000x SATURATION's default)
            method, kwargs = "sliding_dft", {}
        self.bandpower = make_bandpower(method, self.sfreq, n_sig, all_bands, self.window, self.hop, **kwargs)
        self.paf = PeakAlphaFrequency.from_config(self.sfreq, n_sig, self.window, self.hop, paf) if paf else None
        self.quality = QualityMonitor(self.sfreq, self.n_columns, self.window, self.hop, quality)
        ema_a = 1.0 - math.exp(-self.hop / (smoothing_s * self.sfreq)) if smoothing_s > 0 else 1.0
        bl_end = int(round(baseline.duration_s * self.sfreq)) if baseline is not None else -1
        self.spectral = None
        if aperiodic is not None or iaf is not None:
            self.spectral = SpectrumStage(
                self.sfreq,
                n_sig,
                self.window,
                self.hop,
                dict(bands),
                spectrum or SpectrumConfig(),
                aperiodic,
                iaf,
                bl_end,
                self.ch_names,
            )
        self.n_paf = len(self.paf.names) if self.paf else 0
        spec_names = self.spectral.names if self.spectral else ()
        # each rhythm's estimator writes its 4 outputs per channel after the PAF and spectrum columns of the extras
        self.phases = [
            PhaseEstimator(name, cfg, self.sfreq, n_sig, self.window, self.hop) for name, cfg in (phase or {}).items()
        ]
        extras = [*(self.paf.names if self.paf else ()), *spec_names]
        self._phase_cols = []
        for est in self.phases:
            self._phase_cols.append(len(extras))
            extras += est.names
        iaf_bands = set(iaf.bands) if iaf is not None else set()
        if not per_channel and n_sig != 1:
            raise ValueError("without per_channel, features need exactly one (virtual) channel")
        self.deriver = FeatureDeriver(
            n_sig,
            list(bands),
            band_ratios,
            relative_to is not None,
            extras,
            log10,
            ema_a,
            bl_end,
            baseline.features if baseline is not None else None,
            window=self.window,
            hop=self.hop,
            channel_names=self.ch_names if per_channel else None,
            extra_log=iaf_bands,
            extra_smooth=[n for n in spec_names if n.endswith("_ap")],
            expressions=globals_,
            baseline_difference=baseline.difference if baseline is not None else (),
            global_normalised=[k for k in self.ratios if k not in band_ratios],
        )
        self.names = self.deriver.names
        self._input = Float64Input(self.n_columns)
        self._row_strides = self._input.row_strides  # step's lean path reads it without a second lookup
        self._samples = 0  # samples seen
        self._next_end = self.window  # sample count at which the next frame falls
        self._pool = FramePool(self.names)
        self.frames = 0
        self._alloc(64)

    @classmethod
    def from_config(
        cls,
        features: FeaturesConfig,
        sfreq: float,
        signal_names: list[str],
        monitor_names: list[str] | tuple[str, ...] = (),
    ) -> FeatureExtractor:
        """Build from a ``[features]`` section, for the preprocessor's signal and monitor columns."""
        method = features.band_method
        options = {"welch": features.welch, "iir": features.iir}.get(method)
        return cls(
            sfreq,
            signal_names,
            features.bands,
            features.ratios,
            features.window_samples,
            features.hop_samples,
            log10=features.log10,
            smoothing_s=features.smoothing_s,
            per_channel=features.rois is not None or features.combine == "each",
            method=method,
            method_options=options,
            relative_to=features.relative_to,
            paf=features.paf,
            baseline=features.baseline,
            quality=features.quality,
            phase=features.phase,
            monitor_names=monitor_names,
            spectrum=features.spectrum,
            aperiodic=features.aperiodic,
            iaf=features.iaf,
            expressions=features.expressions,
        )

    def _alloc(self, max_frames: int) -> None:
        n_sig = len(self.ch_names)
        self._power = np.zeros((max_frames, n_sig, self.bandpower.n_bands))
        self._times = np.zeros(max_frames)
        self._qflags = np.zeros(max_frames, dtype=np.int64)
        self._flags = np.zeros(max_frames, dtype=np.int64)
        self._extra = np.full((max_frames, n_sig, self.deriver.n_paf), np.nan)  # PAF, spectrum, phase columns
        self._rows = np.zeros((max_frames, len(self.names)))
        self._pool.ensure(_pool_slots(max_frames))
        self._bind()

    def _bind(self) -> None:
        """Bind the kernels to their state and these buffers: one fused call per chunk where possible.

        With the ``sliding_dft`` or ``iir`` method and no PAF, spectrum stage or phase, the state of all
        three kernels is packed into two buffers (:mod:`~closedloop.features.packed`) and one numba call
        runs them; otherwise each kernel is called with its state bound (PAF, spectrum stage and phase
        estimators between band power and derivation, each writing its columns of the extras).
        """
        self._kernels = (
            self.bandpower.bind(self._power, self._times),
            self.quality.bind(self._qflags),
            self.deriver.bind(self._power, self._extra, self._qflags, self._rows, self._flags),
        )
        self._spectral_kernel = (
            self.spectral.bind(self._extra[:, :, self.n_paf :]) if self.spectral is not None else None
        )
        self._direct = False
        self._fused = None
        self._one = None  # the fused kernel's compiled entry point, once bound (step's lean path)
        plain = self.paf is None and self.spectral is None and not self.phases
        fused = packed.FUSED.get(self.bandpower.name) if plain else None
        if fused is not None:
            args = [a for kernel in self._kernels for a in kernel.args]
            F, I, L = packed.pack(args, [self, self.bandpower, self.quality, self.deriver])  # noqa: E741
            self._fused = functools.partial(fused, F, I, L)
            self._kernels = ()  # their bound arrays are stale now

    def _bind_direct(self, x: np.ndarray, stamps: np.ndarray) -> None:
        """Call the kernels' compiled entry points from now on (once each has run with these argument types).

        numba's dispatcher types every argument on every call (~65 ns each, ~27 arguments per step); the
        arguments of a bound kernel never change type (``x`` and ``stamps`` are always float64 and
        C-contiguous, see :class:`~closedloop.preprocess.buffers.Float64Input`), so the compiled entry
        point for the types seen once serves every later call.
        """
        if self._fused is not None:
            self._fused = entry_point(self._fused, x, stamps, 0, _NO_ROW)
            self._one = self._fused
        else:
            bandpower, quality, derive = self._kernels
            self._kernels = (
                entry_point(bandpower, x, stamps),
                entry_point(quality, x, stamps),
                entry_point(derive, 1, 0),
            )
            if self._spectral_kernel is not None:
                self._spectral_kernel = entry_point(self._spectral_kernel, x)
        self._direct = True

    @property
    def baseline_done(self) -> bool:
        """Whether the baseline block (if any) is over."""
        return self.window + max(self.frames - 1, 0) * self.hop > self.deriver.bl_end

    def step(self, chunk: Chunk) -> list[Frame]:
        """Feed a chunk; return the frames completed by it (possibly none).

        The frames' ``values`` are read-only; keep them as long as you like
        (see :mod:`~closedloop.features.framepool`).
        """
        x, stamps = chunk.data, chunk.timestamps
        one = self._one
        # the live loop's case, kept lean: float64 C-contiguous chunks of at most a hop, so at most one frame
        if (
            one is not None
            and x.dtype is F64
            and stamps.dtype is F64
            and x.strides == self._row_strides
            and stamps.strides == STAMP_STRIDES
            and x.shape[1] == self.n_columns
        ):
            n = len(x)
            if len(stamps) == n and n <= self.hop:
                samples = self._samples + n
                self._samples = samples
                if samples < self._next_end:
                    one(x, stamps, self.frames, _NO_ROW)
                    return []
                frame, buffer = self._pool.claim()  # the kernel writes the row into the frame's own buffer
                index = self.frames
                if one(x, stamps, index, buffer) != 1:
                    raise RuntimeError("the extractor's frame schedule is out of step")  # never: see _next_end
                frame.time = self._times.item(0)
                frame.flags = QUALITY_FLAGS[self._flags.item(0)]
                frame.index = index
                self.frames = index + 1
                self._next_end += self.hop
                return [frame]
        return self._step(chunk)

    def _step(self, chunk: Chunk) -> list[Frame]:
        """Feed any chunk (other dtypes and layouts, several frames, kernels not yet bound directly)."""
        # float64 C-contiguous data and stamps (as sources and the preprocessor deliver them) pass as they are
        x, stamps = self._input(chunk.data), as_stamps(chunk.timestamps)
        n = x.shape[0]
        if stamps.shape[0] != n:
            raise ValueError(f"{n} samples but {stamps.shape[0]} timestamps")
        if n // self.hop + 1 > self._times.shape[0]:  # bandpower.max_frames(n)
            self._alloc(n // self.hop + 1)
        samples = self._samples + n
        self._samples = samples
        if self._fused is not None:
            if samples >= self._next_end and samples - self._next_end < self.hop:  # exactly one frame is due
                frame, buffer = self._pool.claim()  # the kernel writes the row into the frame's own buffer
                k = self._fused(x, stamps, self.frames, buffer)
                if k == 1:
                    frame.time = self._times.item(0)
                    frame.flags = QUALITY_FLAGS[self._flags.item(0)]
                    frame.index = self.frames
                    self.frames += 1
                    self._next_end += self.hop
                    if not self._direct:
                        self._bind_direct(x, stamps)
                    return [frame]
            else:
                k = self._fused(x, stamps, self.frames, _NO_ROW)
        else:
            bandpower, quality, derive = self._kernels
            k = bandpower(x, stamps)
            quality(x, stamps)
            if self.paf is not None:
                self.paf.process(x, self._extra[:, :, : self.n_paf])
            if self._spectral_kernel is not None:
                self._spectral_kernel(x)
            for est, col in zip(self.phases, self._phase_cols):
                est.process(x, self._extra, col)
            if k > 0:
                derive(k, self.frames)
        if k == 0:
            return []
        frames = self._pool.emit(k, self._rows, self._times, self._flags, self.frames)
        self.frames += k
        self._next_end += k * self.hop
        if not self._direct:  # every kernel has run (and compiled) for these types
            self._bind_direct(x, stamps)
        return frames

    def warmup(self) -> None:
        """Compile every kernel this extractor uses, on a throwaway twin (own state untouched)."""
        twin = FeatureExtractor.__new__(FeatureExtractor)
        twin.__dict__.update(_twin_state(self))
        twin._bind()
        n = self.window + self.hop
        twin.step(Chunk(np.zeros((n, self.n_columns)), np.arange(n) / self.sfreq))
        twin.step(Chunk(np.zeros((n, self.n_columns), dtype=np.float32), (n + np.arange(n)) / self.sfreq))


def _twin_state(ext: FeatureExtractor) -> dict:
    """Return a deep copy of an extractor's state, cheap enough to run the kernels once."""
    import copy

    # the bound kernels are bound again by the twin; the frame pool's slots hold no state the kernels read, and
    # copying them (130 frames, ~4 ms) was a quarter of a replay's fixed cost: the twin gets empty ones
    skip = ("_kernels", "_direct", "_fused", "_one", "_spectral_kernel", "_pool")
    state = copy.deepcopy({key: value for key, value in ext.__dict__.items() if key not in skip})
    pool = state["_pool"] = FramePool(ext.names)
    pool.ensure(_pool_slots(ext._times.shape[0]))
    return state


def _pool_slots(max_frames: int) -> int:
    """Frame pool slots for steps of up to ``max_frames`` frames (at least twice those: :meth:`FramePool.ensure`)."""
    return 2 * max_frames + 2
