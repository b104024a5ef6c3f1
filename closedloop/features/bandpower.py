"""What every band-power method shares: the frame schedule, DFT bins, PSD scaling, buffers.

A frame is produced when ``window`` samples have arrived and then every
``hop`` samples (the sample clock). Band power is the one-sided power spectral
density, scaled like ``scipy.signal.welch(..., scaling="density")``, summed
over the DFT bins with ``low <= f < high`` (half-open: a bin on a shared edge,
e.g. 8 Hz between theta [4, 8) and alpha [8, 12), counts in the upper band
only) times the bin width: units² (µV² for EEG). MNE's ``fmin``/``fmax`` include
both edges: ``fmax`` just under ``high`` selects the same bins. The three
methods (:mod:`~closedloop.features.welch`,
:mod:`~closedloop.features.sliding_dft`, :mod:`~closedloop.features.iir`)
subclass :class:`BandPowerMethod`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from closedloop.preprocess.buffers import Float64Input, as_stamps

Bands = dict[str, tuple[float, float]]


def hann(n: int) -> np.ndarray:
    """Periodic Hann window, as ``scipy.signal.get_window("hann", n)``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def band_bins(bands: Bands, sfreq: float, n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DFT bins the bands need.

    Returns
    -------
    bins : ndarray of int64
        Sorted unique bin numbers (0 .. n_fft // 2).
    band_ptr, band_bin : ndarray of int64
        CSR: band ``b`` sums ``bins[band_bin[band_ptr[b]:band_ptr[b+1]]]``.

    Raises
    ------
    ValueError
        When a band holds no bin at this FFT length.
    """
    freqs = np.arange(n_fft // 2 + 1) * sfreq / n_fft
    per_band = []
    for name, (lo, hi) in bands.items():
        sel = np.flatnonzero((freqs >= lo - 1e-9) & (freqs < hi - 1e-9))  # half-open [lo, hi)
        if sel.size == 0:
            raise ValueError(f"band {name} [{lo}, {hi}] Hz holds no DFT bin at {n_fft} samples")
        per_band.append(sel)
    bins = np.unique(np.concatenate(per_band)).astype(np.int64)
    where = {int(b): i for i, b in enumerate(bins)}
    ptr, members = [0], []
    for sel in per_band:
        members.extend(where[int(b)] for b in sel)
        ptr.append(len(members))
    return bins, np.array(ptr, dtype=np.int64), np.array(members, dtype=np.int64)


def psd_bin_scale(bins: np.ndarray, sfreq: float, window: np.ndarray) -> np.ndarray:
    """Factor turning ``|windowed DFT|²`` at ``bins`` into band power (PSD × bin width)."""
    n = window.shape[0]
    one_sided = np.where((bins == 0) | (2 * bins == n), 1.0, 2.0)
    return one_sided / (sfreq * np.sum(window**2)) * (sfreq / n)


class BandPowerMethod:
    """Streaming band power of ``n_channels`` channels (base class).

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    n_channels : int
        Channels analysed (the first ``n_channels`` columns of the input).
    bands : dict of str -> (low, high)
        Band edges in Hz.
    window, hop : int
        Window length and frame interval, in samples.
    """

    name = "base"

    def __init__(self, sfreq: float, n_channels: int, bands: Bands, window: int, hop: int) -> None:
        if window < 2 or hop < 1 or hop > window:
            raise ValueError(f"need 2 <= window and 1 <= hop <= window, got window={window}, hop={hop}")
        if not bands:
            raise ValueError("at least one band is needed")
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self.bands = {str(k): (float(v[0]), float(v[1])) for k, v in bands.items()}
        self.band_names = tuple(self.bands)
        self.window = int(window)
        self.hop = int(hop)
        self._input = Float64Input(self.n_channels)
        self._power = np.zeros((0, self.n_channels, len(self.bands)))
        self._time = np.zeros(0)
        self._views: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # k -> (power[:k], time[:k])
        self._bound: Callable[[np.ndarray, np.ndarray], int] | None = None  # process into _power, _time

    @property
    def n_bands(self) -> int:
        """Number of bands (the broad band included when asked)."""
        return len(self.band_names)

    def max_frames(self, n_samples: int) -> int:
        """Most frames ``n_samples`` new samples can complete."""
        return n_samples // self.hop + 1

    def process(self, x: np.ndarray, stamps: np.ndarray, out_power: np.ndarray, out_time: np.ndarray) -> int:
        """Feed float64 C-contiguous ``x`` (n, >= n_channels); write frames; return how many."""
        raise NotImplementedError

    def bind(self, out_power: np.ndarray, out_time: np.ndarray) -> Callable[[np.ndarray, np.ndarray], int]:
        """``process`` with its outputs fixed: a callable ``(x, stamps) -> frames written``.

        Subclasses return the kernel itself with its state bound (``functools.partial``), which saves
        the Python method call and attribute look-ups on every chunk.
        """
        return functools.partial(self.process, out_power=out_power, out_time=out_time)

    def step(self, data: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed samples; return (power (k, channels, bands), times (k,)) views valid until the next call."""
        x = self._input(data)
        stamps = as_stamps(timestamps)
        need = self.max_frames(x.shape[0])
        if need > self._time.shape[0]:
            self._power = np.zeros((need, self.n_channels, self.n_bands))
            self._time = np.zeros(need)
            self._views = {}
            self._bound = None
        if self._bound is None:
            self._bound = self.bind(self._power, self._time)
        k = self._bound(x, stamps)
        views = self._views.get(k)
        if views is None:  # the same few views come round every call: make each once
            views = self._views[k] = (self._power[:k], self._time[:k])
        return views

    def _twin_args(self) -> dict:
        """Return constructor arguments of a small copy that compiles the same kernels."""
        return dict(sfreq=self.sfreq, n_channels=1, bands=self.bands, window=self.window, hop=self.hop)

    def warmup(self) -> None:
        """Compile the kernels on a throwaway copy (this object's state is untouched)."""
        twin = type(self)(**self._twin_args())
        twin.step(np.zeros((self.window + self.hop, 1)), np.arange(self.window + self.hop) / self.sfreq)
