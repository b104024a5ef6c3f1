"""The data that flows along the one-way path: chunks, frames and commands.

Every stage of the pipeline exchanges these small containers and nothing else,
so that each stage can be built and tested on its own (see docs/architecture.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the schema imports Command without loading numpy (closedloop check)
    import numpy as np


@dataclass(slots=True)
class Chunk:
    """A block of consecutive EEG samples.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Sample values (float32 or float64), in the units of the stream (µV for
        EEG in closedloop).
    timestamps : ndarray of float64, shape (n_samples,)
        Sample times in the LSL clock (``pylsl.local_clock()`` domain, s),
        after clock correction.
    """

    data: np.ndarray
    timestamps: np.ndarray

    @property
    def n_samples(self) -> int:
        """Number of samples in the chunk."""
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels in the chunk."""
        return int(self.data.shape[1])


class Quality(enum.IntFlag):
    """Quality flags a frame can carry; a flagged frame is still produced."""

    OK = 0
    ARTIFACT = 1  # amplitude over threshold
    FLAT = 2  # a flat channel
    NONFINITE = 4  # NaN or Inf in the input
    EMG = 8  # high-frequency (muscle) power
    GAP = 16  # a gap or jump in the timestamps
    SATURATION = 32  # amplifier saturation
    BASELINE = 64  # baseline/calibration block still running


#: Frames carrying any of these hold no usable data at all (NaN/Inf or values no amplifier
#: produces): if they persist past the profile's ``bad_data_timeout_s`` the session treats the
#: data as stale and ramps stimulation down, as it does when frames stop coming.
BAD_DATA_FLAGS = Quality.NONFINITE | Quality.SATURATION


@dataclass(slots=True)
class Frame:
    """One value per named feature, computed on the sample clock.

    Parameters
    ----------
    time : float
        Sample time of the newest sample the frame used (LSL clock, s).
    values : ndarray of float64, shape (n_features,)
        Feature values, in the order of ``names``.
    names : tuple of str
        Feature names.
    flags : Quality
        Quality flags of the window the frame was computed on.
    index : int
        Running frame number since the start of the session.
    """

    time: float
    values: np.ndarray
    names: tuple[str, ...]
    flags: Quality = Quality.OK
    index: int = 0

    def __getitem__(self, name: str) -> float:
        try:
            return float(self.values[self.names.index(name)])
        except ValueError:
            raise KeyError(f"no feature {name!r}; this frame has {list(self.names)}") from None

    def as_dict(self) -> dict[str, float]:
        """Return the features as ``{name: value}``."""
        return {n: float(v) for n, v in zip(self.names, self.values)}


#: ``Command.extra`` keys starting with this are annotations of a fire (e.g. the phase a phase trigger
#: aimed at): no safety layer or device reads them; the pipeline copies them from the desired to the
#: allowed command when that fires, so the recording keeps them with the applied command.
NOTE_PREFIX = "note_"


@dataclass(slots=True)
class Command:
    """Stimulation parameters (desired by a controller or allowed by safety).

    Attributes
    ----------
    amplitude_mA : float
        Stimulation amplitude (tES: peak current in mA; rTMS: intensity in
        %MT is carried in ``extra``; see the device profile).
    frequency_Hz : float
        Stimulation frequency (tES), train rate (rTMS) or pulse repetition
        frequency (TUS); 0 for tDCS.
    on : bool
        Whether stimulation is wanted (desired) or delivered (allowed) now.
    time : float
        Frame time the command is based on (LSL clock, s).
    fire : bool
        rTMS/TUS: deliver a train or start a sonication now. Every command
        with ``fire`` (or ``abort``) reaches the device: none is dropped or
        replaced by a newer one.
    abort : bool
        rTMS/TUS: a safety ramp or stop cut a running train or sonication.
    extra : dict
        Further modality-specific parameters with units in the key name
        (rTMS ``intensity_pct``, ``pulses``, ``train_duration_s``; TUS
        ``pnp_MPa``, ``isppa_W_per_cm2``, ...; tACS ``phase_deg``); keys
        starting with :data:`NOTE_PREFIX` annotate a fire and are never read.
    """

    amplitude_mA: float = 0.0
    frequency_Hz: float = 0.0
    on: bool = False
    time: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    fire: bool = False
    abort: bool = False

    def copy(self) -> Command:
        """Return an independent copy (``extra`` copied too)."""
        return Command(
            self.amplitude_mA, self.frequency_Hz, self.on, self.time, dict(self.extra), self.fire, self.abort
        )

    @property
    def must_reach_device(self) -> bool:
        """Whether this command may never be dropped in favour of a newer one (a fire or an abort)."""
        return self.fire or self.abort
