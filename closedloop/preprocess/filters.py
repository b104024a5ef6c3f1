"""Causal IIR filters as second-order sections, with state carried across chunks.

The kernels are direct form II transposed, the structure of
:func:`scipy.signal.sosfilt`, so the output equals scipy's (with the same
``zi``) to rounding. Designs come from :mod:`scipy.signal` through
:func:`scipy_design`, which keeps them on disk so that a session with the same
settings does not import scipy.signal again (closedloop.diskcache).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.diskcache import cached


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON-serialisable data (arrays and tuples as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _arrays(value: Any) -> np.ndarray | tuple[np.ndarray, ...]:
    """Return the arrays a cached design holds (raises ValueError or TypeError on anything else)."""
    parts = value["tuple"] if "tuple" in value else [value["array"]]
    arrays = tuple(np.asarray(p, dtype=np.float64) for p in parts)
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError("non-finite coefficient")
    return arrays if "tuple" in value else arrays[0]


def _readable(value: Any) -> bool:
    try:
        _arrays(value)
    except (KeyError, TypeError, ValueError):
        return False
    return True


def scipy_design(name: str, *args: Any, **kwargs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
    """Return ``scipy.signal.<name>(*args, **kwargs)`` (a filter design), read from disk when cached.

    The result equals scipy's bit for bit (float64, written with ``repr``);
    scipy.signal is imported only when the cache does not hold the call.
    """
    key = [name, _plain(args), {k: _plain(v) for k, v in sorted(kwargs.items())}]

    def compute() -> dict:
        from scipy import signal

        out = getattr(signal, name)(*args, **kwargs)
        if isinstance(out, tuple):
            return {"tuple": [np.asarray(o, dtype=np.float64).tolist() for o in out]}
        return {"array": np.asarray(out, dtype=np.float64).tolist()}

    return _arrays(cached("scipy", key, compute, _readable))


@numba.njit(cache=True, nogil=True, inline="always")
def biquad(u, b0, b1, b2, a1, a2, z0, z1):
    """One second-order section, direct form II transposed: return ``(y, z0, z1)`` after input ``u``.

    The operations and their order are those of :func:`scipy.signal.sosfilt`
    (and of every kernel here that filters), so results are the same bits;
    inlined, the states stay in registers across a caller's samples.
    """
    y = b0 * u + z0
    return y, b1 * u - a1 * y + z1, b2 * u - a2 * y


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
        parts.append(scipy_design("butter", order, highpass_hz, "highpass", fs=sfreq, output="sos"))
    if notch_hz:
        for h in range(1, notch_harmonics + 1):
            f0 = notch_hz * h
            if f0 >= nyq:
                raise ValueError(f"notch harmonic {h} at {f0} Hz is not below Nyquist ({nyq} Hz)")
            b, a = scipy_design("iirnotch", f0, notch_q, fs=sfreq)
            parts.append(scipy_design("tf2sos", b, a))
    if bandpass_hz is not None:
        parts.append(scipy_design("butter", order, list(bandpass_hz), "bandpass", fs=sfreq, output="sos"))
    if not parts:
        return np.zeros((0, 6))
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float64)
