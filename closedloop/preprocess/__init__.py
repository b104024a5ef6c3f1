"""Causal, stateful preprocessing: picks, re-reference, Laplacian, ROI means, IIR filters.

One numba kernel per chunk applies the sparse spatial map (see
:mod:`closedloop.preprocess.spatial`) and the filter cascade (see
:mod:`closedloop.preprocess.filters`) sample by sample into a preallocated
buffer. The IIR state carries over between chunks, so the output does not
depend on how samples are chunked (bit for bit).

Non-finite input never poisons the filters: a NaN/Inf output sample leaves the
filter state untouched (the filter skips it) and comes out as NaN; the feature
extractor flags the windows that hold it.
"""

from __future__ import annotations

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.channels import channel_types
from closedloop.preprocess.buffers import Float64Input, as_stamps
from closedloop.preprocess.filters import biquad, design_sos, scipy_design, sosfilt_inplace
from closedloop.preprocess.spatial import SpatialMap, build_spatial_map
from closedloop.types import Chunk

__all__ = ["Preprocessor", "SpatialMap", "build_spatial_map", "design_sos", "sosfilt_inplace"]


@numba.njit(cache=True, nogil=True)
def _preprocess_kernel(x, ptr, idx, weight, rowsum, ref_idx, sos, zi, zi_unit, started, out):
    """Spatial map then SOS cascade, per sample, into ``out`` (n_samples, n_out).

    Two passes: the spatial map of every sample first, then the filters over
    ``out``. The map reads a few scattered channels of each wide input row;
    without the filter recursion between them those loads overlap (a replay
    reads rows that are not in cache: about 30 % faster). Each value goes
    through the same operations in the same order as in one pass. ``x`` is
    always float64 and C-contiguous (one compiled signature).

    Two sections (a high-pass and a notch, the usual cascade) run output by
    output with the filter state in local variables (registers): about 20 %
    less time than the general loop, whose state lives in ``zi``. Same
    operations in the same order: bit-identical outputs.
    """
    n = x.shape[0]
    n_out = out.shape[1]
    n_sec = sos.shape[0]
    n_ref = ref_idx.shape[0]
    for i in range(n):
        r = 0.0
        if n_ref > 0:
            for j in range(n_ref):
                r += x[i, ref_idx[j]]
            r /= n_ref
        for o in range(n_out):
            acc = 0.0
            for k in range(ptr[o], ptr[o + 1]):
                acc += weight[k] * x[i, idx[k]]
            out[i, o] = acc - rowsum[o] * r if rowsum[o] != 0.0 else acc
    if n_sec == 0:
        return
    if n_sec == 2:
        b10, b11, b12, a11, a12 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
        b20, b21, b22, a21, a22 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
        for o in range(n_out):
            st = started[o]
            p0, p1, q0, q1 = zi[0, o, 0], zi[0, o, 1], zi[1, o, 0], zi[1, o, 1]
            for i in range(n):
                v = out[i, o]
                if not np.isfinite(v):
                    out[i, o] = np.nan  # skip: the filter state stays finite
                    continue
                if st == 0:  # start in the steady state for this first value (no step transient)
                    p0, p1 = zi_unit[0, 0] * v, zi_unit[0, 1] * v
                    q0, q1 = zi_unit[1, 0] * v, zi_unit[1, 1] * v
                    st = 1
                y, p0, p1 = biquad(v, b10, b11, b12, a11, a12, p0, p1)
                out[i, o], q0, q1 = biquad(y, b20, b21, b22, a21, a22, q0, q1)
            zi[0, o, 0], zi[0, o, 1], zi[1, o, 0], zi[1, o, 1] = p0, p1, q0, q1
            started[o] = st
        return
    for i in range(n):
        for o in range(n_out):
            v = out[i, o]
            if not np.isfinite(v):
                out[i, o] = np.nan  # skip: the filter state stays finite
                continue
            if started[o] == 0:
                # start in the steady state for this first value (no step transient)
                for s in range(n_sec):
                    zi[s, o, 0] = zi_unit[s, 0] * v
                    zi[s, o, 1] = zi_unit[s, 1] * v
                started[o] = 1
            for s in range(n_sec):
                y = sos[s, 0] * v + zi[s, o, 0]
                zi[s, o, 0] = sos[s, 1] * v - sos[s, 4] * y + zi[s, o, 1]
                zi[s, o, 1] = sos[s, 2] * v - sos[s, 5] * y
                v = y
            out[i, o] = v


@numba.njit(cache=True, nogil=True)
def _gather_kernel(x, cols, out):
    """Copy columns ``cols`` of ``x`` (float32, C-contiguous) into ``out`` as float64 (exact)."""
    for i in range(x.shape[0]):
        for j in range(cols.shape[0]):
            out[i, j] = x[i, cols[j]]


class Preprocessor:
    """Spatial map (picks, reference, Laplacian, ROI means), then causal filters.

    Parameters
    ----------
    ch_names : list of str
        Channels of the incoming stream, in order.
    channels : list of str, optional
        Channels the features use (combined by ``combine``); ignored when ``rois``.
    sfreq : float
        Sampling rate (Hz).
    combine : {"mean", "each"}
        ``"mean"`` averages ``channels`` into one virtual channel (an ROI).
    reference : "none", "average" or list of str
        Common average over the picks, or the mean of the listed channels.
    highpass_hz, notch_hz : float | None
        Butterworth high-pass corner; line frequency notched (Q = ``notch_q``)
        with ``notch_harmonics`` multiples.
    filter_order : int
        Butterworth order of the high-pass and band-pass.
    rois : dict, optional
        ROI name -> list of channels (mean) or {channel: weight}.
    picks : list of str, optional
        Stream channels kept (default: all).
    laplacian : dict of str -> list of str, optional
        Hjorth Laplacian: centre minus the mean of its neighbours.
    bandpass_hz : (float, float), optional
        Butterworth band-pass.
    monitor : bool
        Also output, after the feature signals, every electrode that feeds an
        ROI mean (filtered alike), so quality checks can see single channels.
    ch_types : list of str, optional
        Types of the stream's channels (``EEG``, ``ECG``, ``REF``...), corrected
        by the labels where they say EEG (:func:`closedloop.channels.channel_types`);
        default: from the labels. Only EEG channels enter an average reference
        without ``picks``.
    where : str
        What the channels belong to, for error messages (``"stream 'X'"``).

    Attributes
    ----------
    signal_names : list of str
        The feature signals (first columns of the output).
    monitor_names : list of str
        The monitor electrodes (last columns; empty unless ``monitor``).
    out_names : list of str
        All output columns.
    ch_types : list of str
        The channel types used.
    ref_excluded : list of str
        Channels an average reference left out (not EEG).

    Raises
    ------
    closedloop.channels.ChannelError
        When a channel the pipeline names is not in the stream (one line).
    """

    def __init__(
        self,
        ch_names: list[str],
        channels: list[str] | None = None,
        sfreq: float = 1.0,
        combine: str = "mean",
        reference: str | list[str] = "none",
        highpass_hz: float | None = None,
        notch_hz: float | None = None,
        filter_order: int = 2,
        *,
        rois: dict[str, list[str] | dict[str, float]] | None = None,
        picks: list[str] | None = None,
        laplacian: dict[str, list[str]] | None = None,
        notch_harmonics: int = 1,
        notch_q: float = 30.0,
        bandpass_hz: tuple[float, float] | None = None,
        monitor: bool = False,
        ch_types: list[str] | None = None,
        where: str = "the stream",
    ) -> None:
        self.sfreq = float(sfreq)
        self.ch_names = list(ch_names)
        self.ch_types = channel_types(self.ch_names, ch_types)
        signals = _signals(channels, combine, rois)
        keys = {name: f"features.rois.{name}" if rois else "features.channels" for name in signals}
        members = [ch for w in signals.values() for ch in w]
        self.signal_names = list(signals)
        self.monitor_names: list[str] = []
        if monitor:
            plain = {n for n, w in signals.items() if list(w) == [n]}
            for ch in dict.fromkeys(members):
                if ch not in plain:
                    self.monitor_names.append(ch)
                    signals[f"{ch} (monitor)"] = {ch: 1.0}
                    keys[f"{ch} (monitor)"] = "features.rois" if rois else "features.channels"
        self.map = build_spatial_map(
            self.ch_names,
            signals,
            picks=picks,
            reference=reference,
            laplacian=laplacian,
            ch_types=self.ch_types,
            keys=keys,
            where=where,
        )
        self.ref_excluded = [self.ch_names[i] for i in self.map.ref_excluded]
        self.out_names = self.signal_names + self.monitor_names
        self.sos = design_sos(self.sfreq, highpass_hz, notch_hz, notch_harmonics, notch_q, bandpass_hz, filter_order)
        n_out, n_sec = len(self.out_names), self.sos.shape[0]
        self.zi = np.zeros((n_sec, n_out, 2))
        self._zi_unit = np.ascontiguousarray(scipy_design("sosfilt_zi", self.sos)) if n_sec else np.zeros((0, 2))
        self._started = np.zeros(n_out, dtype=np.int8)
        self._input = Float64Input(len(self.ch_names))
        self._out = np.zeros((64, n_out))
        # float32 chunks (LSL, XDF): only the channels the map reads are converted to float64 (the same
        # exact conversion), and the kernel runs on them with the map's indices into that gather
        m = self.map
        self._cols = np.unique(np.concatenate([m.idx, m.ref_idx])).astype(np.intp)
        where = {int(c): j for j, c in enumerate(self._cols)}
        self._gidx = np.array([where[int(c)] for c in m.idx], dtype=m.idx.dtype)
        self._gref = np.array([where[int(c)] for c in m.ref_idx], dtype=m.ref_idx.dtype)
        self._gathered = np.zeros((64, len(self._cols)))

    @classmethod
    def from_config(
        cls,
        pp,
        features,
        sfreq: float,
        ch_names: list[str],
        monitor: bool = True,
        ch_types: list[str] | None = None,
        where: str = "the stream",
    ) -> Preprocessor:
        """Build from a pipeline's ``[preprocess]`` and ``[features]`` sections."""
        return cls(
            ch_names,
            features.channels,
            sfreq,
            combine=features.combine,
            reference=pp.reference,
            highpass_hz=pp.highpass_hz,
            notch_hz=pp.notch_hz,
            filter_order=pp.filter_order,
            rois=features.rois,
            picks=pp.picks,
            laplacian=pp.laplacian,
            notch_harmonics=pp.notch_harmonics,
            notch_q=pp.notch_q,
            bandpass_hz=pp.bandpass_hz,
            monitor=monitor,
            ch_types=ch_types,
            where=where,
        )

    @property
    def n_out(self) -> int:
        """Return the number of output columns."""
        return len(self.out_names)

    def step(self, chunk: Chunk) -> Chunk:
        """Return the preprocessed chunk (its data is a view valid until the next call)."""
        data = chunk.data
        m = self.map
        idx, ref_idx = m.idx, m.ref_idx
        if (
            data.dtype == np.float32
            and data.flags.c_contiguous
            and data.ndim == 2
            and data.shape[1] == len(self.ch_names)
            and len(self._cols) < data.shape[1]
        ):
            n = data.shape[0]
            if n > self._gathered.shape[0]:
                self._gathered = np.zeros((max(n, 2 * self._gathered.shape[0]), len(self._cols)))
            x = self._gathered[:n]
            _gather_kernel(data, self._cols, x)
            idx, ref_idx = self._gidx, self._gref
        else:
            x = self._input(data)
            n = x.shape[0]
        if n > self._out.shape[0]:
            self._out = np.zeros((max(n, 2 * self._out.shape[0]), self.n_out))
        out = self._out[:n]
        _preprocess_kernel(
            x, m.ptr, idx, m.weight, m.rowsum, ref_idx, self.sos, self.zi, self._zi_unit, self._started, out
        )
        return Chunk(out, as_stamps(chunk.timestamps))

    def warmup(self) -> None:
        """Compile the numba kernels before the session clock starts (state untouched)."""
        twin = Preprocessor(["a"], ["a"], 100.0, highpass_hz=1.0)
        twin.step(Chunk(np.zeros((4, 1)), np.zeros(4)))
        pair = Preprocessor(["a", "b"], ["a"], 100.0, highpass_hz=1.0)
        pair.step(Chunk(np.zeros((4, 2), dtype=np.float32), np.zeros(4)))  # float32 (LSL, XDF): the gather
        sosfilt_inplace(np.zeros((1, 6)), np.zeros((1, 1, 2)), np.zeros((2, 1)))


def _signals(channels, combine, rois) -> dict[str, dict[str, float]]:
    """Signal name -> {channel: weight} from ``channels``/``combine`` or ``rois``."""
    if rois:
        out = {}
        for name, members in rois.items():
            if isinstance(members, dict):
                out[name] = {ch: float(w) for ch, w in members.items()}
            else:
                out[name] = {ch: 1.0 / len(members) for ch in members}
        return out
    if not channels:
        raise ValueError("give channels or rois")
    if combine == "mean":
        return {"+".join(channels): {ch: 1.0 / len(channels) for ch in channels}}
    if combine == "each":
        return {ch: {ch: 1.0} for ch in channels}
    raise ValueError(f"combine must be 'mean' or 'each', got {combine!r}")
