"""Causal, stateful preprocessing: picks, re-reference, Laplacian, ROI means, IIR filters.

One numba kernel per chunk applies the reference and the sparse spatial map
(see :mod:`closedloop.preprocess.spatial`), then the filter cascade (see
:mod:`closedloop.preprocess.filters`), stage by stage over the chunk into a
preallocated buffer; each value sees the operations of a plain per-sample
loop, in its order. The IIR state carries over between chunks, so the output
does not depend on how samples are chunked (bit for bit).

Non-finite input never poisons the filters: a NaN/Inf output sample leaves the
filter state untouched (the filter skips it) and comes out as NaN; the feature
extractor flags the windows that hold it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.channels import channel_types
from closedloop.compiled import entry_point
from closedloop.preprocess.buffers import Float64Input, as_stamps
from closedloop.preprocess.filters import biquad, design_sos, scipy_design, sosfilt_inplace
from closedloop.preprocess.spatial import SpatialMap, build_spatial_map
from closedloop.types import Chunk

__all__ = ["Preprocessor", "SpatialMap", "build_spatial_map", "design_sos", "sosfilt_inplace"]

_F32 = np.dtype(np.float32)


@numba.njit(cache=True, nogil=True, inline="always")
def _reference(x, ref_idx, ref):
    """``ref[i]`` = mean of ``x[i, ref_idx]``, summed in ``ref_idx`` order.

    Four samples are summed side by side: four independent chains of adds
    instead of one, each in the same order as alone (about 3x faster at
    256 channels; the same bits).
    """
    n, n_ref = x.shape[0], ref_idx.shape[0]
    i = 0
    while i + 4 <= n:
        r0 = r1 = r2 = r3 = 0.0
        a, b, c, d = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(n_ref):
            k = ref_idx[j]
            r0 += a[k]
            r1 += b[k]
            r2 += c[k]
            r3 += d[k]
        ref[i], ref[i + 1], ref[i + 2], ref[i + 3] = r0 / n_ref, r1 / n_ref, r2 / n_ref, r3 / n_ref
        i += 4
    while i < n:
        r0 = 0.0
        a = x[i]
        for j in range(n_ref):
            r0 += a[ref_idx[j]]
        ref[i] = r0 / n_ref
        i += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _spatial_map(x, ptr, idx, weight, rowsum, ref, has_ref, single, out):
    """``out[i, o]`` = the weighted sum of output ``o``'s channels minus ``rowsum[o]`` times the reference.

    ``single``: every output reads one channel (``ptr`` is ``0, 1, 2...``), the common per-channel
    case; that loop has no inner loop over terms and vectorises. Returns whether every output is finite.
    """
    n, n_out = out.shape
    bad = 0
    for i in range(n):
        r = ref[i] if has_ref else 0.0
        row, orow = x[i], out[i]
        if single:
            for o in range(n_out):
                acc = 0.0 + weight[o] * row[idx[o]]
                rs = rowsum[o]
                v = acc - rs * r if rs != 0.0 else acc
                orow[o] = v
                bad += not np.isfinite(v)
        else:
            for o in range(n_out):
                acc = 0.0
                for k in range(ptr[o], ptr[o + 1]):
                    acc += weight[k] * row[idx[k]]
                v = acc - rowsum[o] * r if rowsum[o] != 0.0 else acc
                orow[o] = v
                bad += not np.isfinite(v)
    return bad == 0


@numba.njit(cache=True, nogil=True, inline="always")
def _start_filters(out, zi, zi_unit, started):
    """Start each output's filters not yet started in the steady state for its first finite value.

    Non-finite values before it leave the state alone (they are skipped), so starting here, before
    the chunk is filtered, gives the state the filters would have set on reaching that value.
    """
    n, n_out = out.shape
    for o in range(n_out):
        if started[o] == 0:
            for i in range(n):
                v = out[i, o]
                if np.isfinite(v):
                    for s in range(zi.shape[0]):
                        zi[s, 0, o] = zi_unit[s, 0] * v
                        zi[s, 1, o] = zi_unit[s, 1] * v
                    started[o] = 1
                    break


@numba.njit(cache=True, nogil=True, inline="always")
def _two_sections(out, sos, zi):
    """Filter an all-finite chunk in place with two sections (a high-pass and a notch: the usual cascade).

    Sample by sample, every output side by side: the recursions of different outputs are independent,
    so the loop over outputs vectorises (no branch and no masked store in it, which AVX2 CPUs
    without fast masked stores pay dearly). Same operations in the same order per value as the
    general loop: the same bits.
    """
    b10, b11, b12, a11, a12 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b20, b21, b22, a21, a22 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    p0, p1, q0, q1 = zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1]
    for i in range(out.shape[0]):
        row = out[i]
        for o in range(row.shape[0]):
            y, p0[o], p1[o] = biquad(row[o], b10, b11, b12, a11, a12, p0[o], p1[o])
            row[o], q0[o], q1[o] = biquad(y, b20, b21, b22, a21, a22, q0[o], q1[o])


@numba.njit(cache=True, nogil=True, inline="always")
def _sections(out, sos, zi):
    """Filter in place with any cascade, skipping non-finite values (NaN out, state untouched)."""
    n, n_out = out.shape
    for i in range(n):
        for o in range(n_out):
            v = out[i, o]
            if not np.isfinite(v):
                out[i, o] = np.nan  # skip: the filter state stays finite
                continue
            for s in range(sos.shape[0]):
                v, zi[s, 0, o], zi[s, 1, o] = biquad(
                    v, sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5], zi[s, 0, o], zi[s, 1, o]
                )
            out[i, o] = v


@numba.njit(cache=True, nogil=True)
def _preprocess_kernel(ptr, idx, weight, rowsum, ref_idx, single, sos, zi, zi_unit, started, ref, x, out):
    """Apply the reference, the spatial map, then the SOS cascade, into ``out`` (n_samples, n_out).

    Stage by stage over the whole chunk, each stage's loop over outputs (or
    over samples, for the reference) free of dependencies between its
    iterations, so they overlap or vectorise. Every value goes through the
    operations of the plain per-sample loop in the same order: the output does
    not depend on the chunking, bit for bit. ``x`` is always float64 and
    C-contiguous (one compiled signature); ``ref`` holds at least as many
    samples as ``x``. ``zi`` is (sections, 2, outputs).
    """
    has_ref = ref_idx.shape[0] > 0
    if has_ref:
        _reference(x, ref_idx, ref)
    finite = _spatial_map(x, ptr, idx, weight, rowsum, ref, has_ref, single, out)
    if sos.shape[0] == 0:
        return
    _start_filters(out, zi, zi_unit, started)
    if finite and sos.shape[0] == 2:
        _two_sections(out, sos, zi)
    else:
        _sections(out, sos, zi)


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
        self.zi = np.zeros((n_sec, 2, n_out))  # per section: both states of every output, side by side
        self._zi_unit = np.ascontiguousarray(scipy_design("sosfilt_zi", self.sos)) if n_sec else np.zeros((0, 2))
        self._started = np.zeros(n_out, dtype=np.int8)
        self._input = Float64Input(len(self.ch_names))
        self._out = np.zeros((64, n_out))
        self._ref = np.zeros(64)  # the reference per sample of a chunk
        # float32 chunks (LSL, XDF): only the channels the map reads are converted to float64 (the same
        # exact conversion), and the kernel runs on them with the map's indices into that gather
        m = self.map
        self._cols = np.unique(np.concatenate([m.idx, m.ref_idx])).astype(np.intp)
        where = {int(c): j for j, c in enumerate(self._cols)}
        self._gidx = np.array([where[int(c)] for c in m.idx], dtype=m.idx.dtype)
        self._gref = np.array([where[int(c)] for c in m.ref_idx], dtype=m.ref_idx.dtype)
        self._gathered = np.zeros((64, len(self._cols)))
        self._single = bool(np.array_equal(m.ptr, np.arange(len(m.ptr))))  # every output reads one channel
        self._gathers = len(self._cols) < len(self.ch_names)  # float32 input: convert fewer channels than all
        self._kernels: list = [None, None]  # the bound kernel (float64 input, float32 gather), once called

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
        gather = (
            data.dtype is _F32  # LSL and XDF: only the channels the map reads are converted
            and self._gathers
            and data.ndim == 2
            and data.shape[1] == self._input.n_channels
            and data.flags.c_contiguous
        )
        if gather:
            n = data.shape[0]
            if n > self._gathered.shape[0]:
                self._gathered = np.zeros((max(n, 2 * self._gathered.shape[0]), len(self._cols)))
            x = self._gathered[:n]
            _gather_kernel(data, self._cols, x)
        else:
            x = self._input(data)  # float64 C-contiguous data as they are (synthetic sources, replays in memory)
        n = x.shape[0]
        if n > self._out.shape[0]:
            self._out = np.zeros((max(n, 2 * self._out.shape[0]), self.n_out))
            self._ref = np.zeros(self._out.shape[0])
            self._kernels = [None, None]
        out = self._out[:n]
        kernel = self._kernels[gather]
        if kernel is None:
            kernel = self._bind(gather)
            kernel(x, out)
            self._kernels[gather] = entry_point(kernel, x, out)  # compiled now: past the dispatcher from here on
        else:
            kernel(x, out)
        return Chunk(out, as_stamps(chunk.timestamps))

    def _bind(self, gather: bool) -> functools.partial:
        """Return the kernel bound to the map (indices into the float32 gather if ``gather``) and the state."""
        m = self.map
        return functools.partial(
            _preprocess_kernel,
            m.ptr,
            self._gidx if gather else m.idx,
            m.weight,
            m.rowsum,
            self._gref if gather else m.ref_idx,
            self._single,
            self.sos,
            self.zi,
            self._zi_unit,
            self._started,
            self._ref,
        )

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
