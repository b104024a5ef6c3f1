"""Preallocated buffers for the hot loop: aligned arrays and float64 input staging."""

from __future__ import annotations

import numpy as np

#: float64, compared by identity (``dtype is F64``: a few ns, where ``dtype == np.float64`` takes ~200)
F64 = np.dtype(np.float64)
#: strides of a contiguous float64 vector (a contiguous float64 matrix of n columns has ``(8 * n, 8)``)
STAMP_STRIDES = (8,)


def aligned_zeros(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """Zeroed float64 C-contiguous array whose data start is ``align``-byte aligned.

    BLAS kernels may pick their summation order from the address alignment;
    aligning every buffer that feeds them keeps results independent of where
    the allocator happened to put the array.
    """
    n = int(np.prod(shape))
    raw = np.zeros(n * 8 + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off : off + n * 8].view(np.float64).reshape(shape)


class Float64Input:
    """Hand kernels a C-contiguous float64 view of any chunk, without allocating.

    Float64 C-contiguous data pass through untouched; anything else (float32
    from LSL, a strided slice) is copied into a buffer that grows only when a
    larger chunk arrives.
    """

    def __init__(self, n_channels: int, rows: int = 64) -> None:
        self.n_channels = int(n_channels)
        self.row_strides = (8 * self.n_channels, 8)
        self._buf = np.zeros((rows, self.n_channels))

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """Return ``data`` as C-contiguous float64 (itself, or a copy in the staging buffer)."""
        if data.dtype is F64 and data.strides == self.row_strides and data.shape[1] == self.n_channels:
            return data  # the usual case, checked first and cheaply (the hot loop's chunks)
        if data.ndim != 2 or data.shape[1] != self.n_channels:
            raise ValueError(f"expected data of shape (n_samples, {self.n_channels}), got {data.shape}")
        if data.dtype == np.float64 and data.flags.c_contiguous:
            return data
        n = data.shape[0]
        if n > self._buf.shape[0]:
            self._buf = np.zeros((max(n, 2 * self._buf.shape[0]), self.n_channels))
        out = self._buf[:n]
        np.copyto(out, data, casting="unsafe")
        return out


def as_stamps(timestamps: np.ndarray) -> np.ndarray:
    """Timestamps as a contiguous float64 vector (a copy only when they are not already)."""
    if timestamps.dtype is F64 and timestamps.strides == STAMP_STRIDES:
        return timestamps
    if timestamps.dtype == np.float64 and timestamps.flags.c_contiguous and timestamps.ndim == 1:
        return timestamps
    return np.ascontiguousarray(timestamps, dtype=np.float64).reshape(-1)
