"""Causal IIR filters as second-order sections, with state carried across chunks.

The kernels are direct form II transposed, the structure of
:func:`scipy.signal.sosfilt`, so the output equals scipy's (with the same
``zi``) to rounding.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import signal


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


def design_sos(
    sfreq: float,
    highpass_hz: float | None = None,
    notch_hz: float | None = None,
    notch_harmonics: int = 1,
    notch_q: float = 30.0,
    bandpass_hz: tuple[float, float] | None = None,
    order: int = 2,
) -> np.ndarray:
    """Cascade of second-order sections: high-pass, notches, band-pass (in that order).

    Returns
    -------
    sos : ndarray, shape (n_sections, 6)
        Empty (0, 6) when no filter is asked for. Notch harmonics at or above
        Nyquist are an error (``check_features`` reports them by key).
    """
    parts = []
    nyq = sfreq / 2
    if highpass_hz:
        parts.append(signal.butter(order, highpass_hz, "highpass", fs=sfreq, output="sos"))
    if notch_hz:
        for h in range(1, notch_harmonics + 1):
            f0 = notch_hz * h
            if f0 >= nyq:
                raise ValueError(f"notch harmonic {h} at {f0} Hz is not below Nyquist ({nyq} Hz)")
            b, a = signal.iirnotch(f0, notch_q, fs=sfreq)
            parts.append(signal.tf2sos(b, a))
    if bandpass_hz is not None:
        parts.append(signal.butter(order, list(bandpass_hz), "bandpass", fs=sfreq, output="sos"))
    if not parts:
        return np.zeros((0, 6))
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float64)
