"""Causal, stateful preprocessing: re-reference, channel picks, ROI mean, IIR filters.

Each chunk is processed in place in preallocated buffers; the IIR state carries
over between chunks, so the output does not depend on how samples are chunked.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import signal

from closedloop.types import Chunk


@numba.njit(cache=True, nogil=True)
def sosfilt_inplace(sos: np.ndarray, zi: np.ndarray, x: np.ndarray) -> None:
    """Filter ``x`` (n_samples, n_channels) in place with second-order sections.

    Direct form II transposed, like :func:`scipy.signal.sosfilt`; ``zi`` has
    shape (n_sections, n_channels, 2) and carries the state between calls.
    """
    n, nch = x.shape
    for i in range(n):
        for c in range(nch):
            v = x[i, c]
            for s in range(sos.shape[0]):
                y = sos[s, 0] * v + zi[s, c, 0]
                zi[s, c, 0] = sos[s, 1] * v - sos[s, 4] * y + zi[s, c, 1]
                zi[s, c, 1] = sos[s, 2] * v - sos[s, 5] * y
                v = y
            x[i, c] = v


class Preprocessor:
    """Re-reference, pick the feature channels (or their mean), then filter.

    Parameters
    ----------
    ch_names : list of str
        Channels of the incoming stream, in order.
    picks : list of str
        Channels the features use.
    sfreq : float
        Sampling rate (Hz).
    combine : {"mean", "each"}
        ``"mean"`` averages the picks into one virtual channel (an ROI).
    reference : {"none", "average"}
        Common average reference over all incoming channels.
    highpass_hz, notch_hz : float | None
        Causal Butterworth high-pass corner and line-noise notch (Q = 30).
    filter_order : int
        Order of the high-pass.
    """

    def __init__(
        self,
        ch_names: list[str],
        picks: list[str],
        sfreq: float,
        combine: str = "mean",
        reference: str = "none",
        highpass_hz: float | None = None,
        notch_hz: float | None = None,
        filter_order: int = 2,
    ) -> None:
        missing = [p for p in picks if p not in ch_names]
        if missing:
            raise ValueError(f"channels {missing} not in the stream's channels {ch_names}")
        self.sfreq = float(sfreq)
        self.reference = reference
        self.pick_idx = np.array([ch_names.index(p) for p in picks], dtype=np.intp)
        self.combine = combine
        self.out_names = ["+".join(picks)] if combine == "mean" else list(picks)
        sections = []
        if highpass_hz:
            sections.append(signal.butter(filter_order, highpass_hz, "highpass", fs=sfreq, output="sos"))
        if notch_hz:
            b, a = signal.iirnotch(notch_hz, 30.0, fs=sfreq)
            sections.append(signal.tf2sos(b, a))
        self.sos = np.ascontiguousarray(np.vstack(sections)) if sections else np.zeros((0, 6))
        self.zi = np.zeros((self.sos.shape[0], len(self.out_names), 2))
        self._zi_unit = signal.sosfilt_zi(self.sos) if sections else None
        self._started = False
        self._out = np.zeros((0, len(self.out_names)))

    @property
    def n_out(self) -> int:
        return len(self.out_names)

    def _buffer(self, n: int) -> np.ndarray:
        if self._out.shape[0] < n:
            self._out = np.zeros((max(n, 2 * self._out.shape[0]), self.n_out))
        return self._out[:n]

    def step(self, chunk: Chunk) -> Chunk:
        """Return the preprocessed chunk (a view valid until the next call)."""
        data = chunk.data
        out = self._buffer(data.shape[0])
        sel = data[:, self.pick_idx]
        if self.combine == "mean":
            np.mean(sel, axis=1, out=out[:, 0])
        else:
            out[:] = sel
        if self.reference == "average":
            out -= data.mean(axis=1, keepdims=True)
        if self.sos.shape[0]:
            if not self._started and out.shape[0]:
                # start the filter in its steady state for the first sample's offset
                self.zi[:] = self._zi_unit[:, None, :] * out[0][None, :, None]
                self._started = True
            sosfilt_inplace(self.sos, self.zi, out)
        return Chunk(out, chunk.timestamps)

    def warmup(self) -> None:
        """Compile the numba kernel before the session clock starts."""
        sosfilt_inplace(np.zeros((1, 6)), np.zeros((1, 1, 2)), np.zeros((2, 1)))
