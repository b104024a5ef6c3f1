"""Voltage units as streams and files declare them, and their scaling to µV (the pipeline's unit).

One function, :func:`to_microvolts`, scales live chunks (:class:`~closedloop.sources.LSLSource`),
replayed recordings and files (:mod:`closedloop.offline.files`) alike, with factors
from :func:`scale_factors`, so that a replay of a recording reproduces what the live
loop computed bit for bit.

Recognised spellings (case-insensitive): ``V``, ``volt(s)``; ``mV``, ``millivolt(s)``;
``µV`` (micro sign or Greek mu), ``uV``, ``microvolt(s)``; ``nV``, ``nanovolt(s)``; and
the power-of-ten codes mne-lsl writes (``0`` = V, ``-3`` = mV, ``-6`` = µV, ``-9`` = nV:
FIFF unit multipliers of the SI unit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: the pipeline schema (closedloop check) loads none
    import numpy as np

__all__ = [
    "UnitError",
    "microvolts_per",
    "scale_factors",
    "to_microvolts",
    "unit_name",
    "units_as_received",
    "voltage_channels",
    "VOLTAGE_TYPES",
    "KNOWN_UNITS",
]

_PER_UNIT = {
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
    "0": 1e6,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "-3": 1e3,
    "µv": 1.0,  # U+00B5 MICRO SIGN
    "μv": 1.0,  # U+03BC GREEK SMALL LETTER MU
    "uv": 1.0,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "-6": 1.0,
    "nv": 1e-3,
    "nanovolt": 1e-3,
    "nanovolts": 1e-3,
    "-9": 1e-3,
}

#: The spellings a pipeline's ``[source] units`` may use (and a stream may declare).
KNOWN_UNITS = ("V", "volts", "mV", "millivolts", "µV", "uV", "microvolts", "nV", "nanovolts")

#: Channel types whose values are voltages: an unknown unit on them is an error.
VOLTAGE_TYPES = frozenset({"EEG", "EOG", "ECG", "EMG", "REF", "SEEG", "ECOG", "DBS", "BIO", "EXG"})


class UnitError(ValueError):
    """A declared unit is not a voltage closedloop knows."""


def microvolts_per(unit: str | None) -> float | None:
    """Return how many µV one ``unit`` is, or None when no unit is given.

    Raises
    ------
    UnitError
        For a unit that is not one of the known voltage spellings.
    """
    if unit is None:
        return None
    key = "".join(str(unit).split()).lower()
    if not key:
        return None
    if key in _PER_UNIT:
        return _PER_UNIT[key]
    raise UnitError(f"unknown unit {unit!r}; known: {', '.join(KNOWN_UNITS)} (or mne-lsl's 0, -3, -6, -9)")


def scale_factors(
    units: Sequence[str] | None,
    types: Sequence[str],
    labels: Sequence[str],
    override: str | None = None,
    where: str = "the stream",
) -> tuple[np.ndarray, list[str]]:
    """Return per-channel factors to µV and notes about channels that declare no unit.

    Parameters
    ----------
    units : list of str or None
        Units as declared, one per channel ("" or None: not declared).
    types : list of str
        Channel types (see :func:`closedloop.channels.channel_types`); only
        voltage channels (and ``MISC`` with a voltage unit) are scaled.
    labels : list of str
        Channel labels, for messages.
    override : str, optional
        One unit for every voltage channel (a pipeline's ``[source] units``),
        replacing what the stream declares.
    where : str
        What the channels belong to, for messages.

    Returns
    -------
    factors : ndarray of float64
        Multiply raw values by these to get µV (1 for non-voltage channels).
    notes : list of str
        One note when voltage channels declare no unit (taken as µV).

    Raises
    ------
    UnitError
        One line naming the channel and its unit, when a voltage channel
        declares a unit that is not a known voltage.
    """
    import numpy as np

    declared = _declared(units, len(labels))
    factors = np.ones(len(labels))
    forced = microvolts_per(override) if override else None
    missing = []
    for i, (unit, kind) in enumerate(zip(declared, types)):
        if not _is_voltage(unit, kind):
            continue  # a trigger, a counter, a misc channel in some other unit: left as it is
        if forced is not None and _voltage_type(kind):
            factors[i] = forced
            continue
        try:
            per = microvolts_per(unit)
        except UnitError:  # a voltage type in an unknown unit (a misc channel's unit is known here)
            raise UnitError(
                f"{where}: channel {labels[i]!r} declares unit {unit!r}, which is not a voltage closedloop knows "
                f"(known: {', '.join(KNOWN_UNITS)}, or mne-lsl's 0, -3, -6, -9); "
                f"set [source] units if the stream's unit is mislabelled"
            ) from None
        if per is None:  # a voltage type that declares no unit
            missing.append(labels[i])
            continue
        factors[i] = per
    notes = []
    if missing:
        shown = missing if len(missing) <= 6 else [*missing[:6], f"... ({len(missing)} channels)"]
        notes.append(
            f"{where} declares no unit for {', '.join(shown)}: taken as µV "
            f"(set [source] units if they are not microvolts)"
        )
    return factors, notes


def _voltage_type(kind: str) -> bool:
    """Whether channels of type ``kind`` carry voltages (no declared type counts as EEG)."""
    return kind in VOLTAGE_TYPES or kind == ""


def _declared(units: Sequence[str] | None, n: int) -> list[str]:
    """Return the declared unit of each of ``n`` channels ("" for none); none at all when the count differs."""
    if units is None or len(units) != n:
        return [""] * n
    return ["" if unit is None else str(unit) for unit in units]


def _is_voltage(unit: str, kind: str) -> bool:
    """Whether a channel's values are voltages: a voltage type (or none), or ``MISC`` in a known voltage unit."""
    if _voltage_type(kind):
        return True
    if kind != "MISC":
        return False
    try:
        return microvolts_per(unit) is not None
    except UnitError:
        return False


def units_as_received(units: Sequence[str] | None, types: Sequence[str], override: str | None = None) -> list[str]:
    """Return the unit of each channel's values as received, for a recording's header.

    ``override`` (a pipeline's ``[source] units``) replaces what the stream
    declares on the channels :func:`scale_factors` applies it to, so that a
    recording says what its values are: a replay, the dashboard or a BIDS
    export reads them right without the pipeline file. Elsewhere the unit
    is the declared one ("" where the stream declares none).
    """
    declared = _declared(units, len(types))
    if not override:
        return declared
    return [override if _voltage_type(kind) else unit for unit, kind in zip(declared, types)]


def voltage_channels(units: Sequence[str] | None, types: Sequence[str]) -> list[bool]:
    """Return whether each channel's values are voltages, as :func:`scale_factors` takes them.

    A voltage type (or none), or a ``MISC`` channel that declares a voltage
    unit. Other channels (``STIM``, a ``MISC`` channel in counts) are left
    as they are.
    """
    return [_is_voltage(unit, kind) for unit, kind in zip(_declared(units, len(types)), types)]


def unit_name(factor: float) -> str:
    """Return the usual name of a unit from its factor to µV (``1e6`` -> ``"V"``)."""
    return {1e6: "V", 1e3: "mV", 1.0: "µV", 1e-3: "nV"}.get(float(factor), f"{factor:g} µV")


def to_microvolts(data: np.ndarray, factors: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Scale ``data`` (n_samples, n_channels) to µV in one multiply, in place or into ``out``.

    ``factors`` should have ``data``'s dtype (cast them once, not per chunk):
    the product is then computed in that dtype, the same in every caller.
    Nothing is allocated.
    """
    import numpy as np  # already loaded (data is an array): a dictionary look-up

    target = data if out is None else out
    np.multiply(data, factors, out=target)
    return target
