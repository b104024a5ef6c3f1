"""Units as streams declare them, scaled to µV by one function (closedloop/units.py)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from closedloop.units import (
    UnitError,
    microvolts_per,
    scale_factors,
    to_microvolts,
    units_as_received,
    voltage_channels,
)


@pytest.mark.parametrize(
    "spellings, per",
    [
        (["V", "v", "volt", "Volts", "VOLTS", "0"], 1e6),
        (["mV", "MV", "millivolt", "Millivolts", "-3"], 1e3),
        (["µV", "μV", "uV", "UV", "microvolt", "microvolts", "Microvolts", " µV ", "-6"], 1.0),
        (["nV", "nanovolt", "nanovolts", "-9"], 1e-3),
    ],
)
def test_every_spelling_of_a_voltage(spellings, per):
    # "µ" is U+00B5 (micro sign), "μ" U+03BC (Greek mu); "0", "-3"... are mne-lsl's FIFF multipliers
    assert {microvolts_per(s) for s in spellings} == {per}


def test_unknown_and_missing_units():
    assert microvolts_per("") is None and microvolts_per(None) is None
    for bad in ("furlong", "uS", "mmHg", "1", "kV"):
        with pytest.raises(UnitError, match="unknown unit"):
            microvolts_per(bad)


def test_factors_per_channel_type_with_notes_and_override():
    labels = ["Fz", "Cz", "ECG", "Trig", "Temp"]
    types = ["EEG", "EEG", "ECG", "STIM", "MISC"]
    f, notes = scale_factors(["V", "mV", "0", "V", "degC"], types, labels)
    np.testing.assert_array_equal(f, [1e6, 1e3, 1e6, 1.0, 1.0])  # stim untouched, a non-voltage misc left alone
    assert notes == []
    f, notes = scale_factors(["", "µV", "", "", ""], types, labels, where="stream 'amp'")
    np.testing.assert_array_equal(f, 1.0)
    assert len(notes) == 1 and "stream 'amp' declares no unit for Fz, ECG: taken as µV" in notes[0]
    with pytest.raises(UnitError, match=r"stream 'amp': channel 'Cz' declares unit 'furlong'") as err:
        scale_factors(["V", "furlong", "V", "", ""], types, labels, where="stream 'amp'")
    assert "\n" not in str(err.value)
    # [source] units replaces what the stream says (or omits) on every voltage channel
    f, notes = scale_factors(["µV", "furlong", "", "V", ""], types, labels, override="V")
    np.testing.assert_array_equal(f, [1e6, 1e6, 1e6, 1.0, 1.0])
    assert notes == []


def test_a_recording_names_the_units_its_values_are_in():
    types = ["EEG", "", "ECG", "STIM", "MISC", "MISC", "MISC"]
    declared = ["µV", "", "furlong", "counts", "degC", "mV", ""]
    # as received: the override wherever scale_factors applies it, the declared unit elsewhere
    assert units_as_received(declared, types) == declared
    assert units_as_received(declared, types, "V") == ["V", "V", "V", "counts", "degC", "mV", ""]
    assert units_as_received(None, types, "V") == ["V", "V", "V", "", "", "", ""]
    assert units_as_received(["µV", None], ["EEG", "EEG"]) == ["µV", ""]  # a missing entry is no unit, not "None"
    assert units_as_received(["µV"], ["EEG", "EEG"]) == ["", ""]  # a count that does not match: none declared
    # voltages: the voltage types (or none), and a MISC channel only when it declares a voltage unit
    volts = voltage_channels(declared, types)
    assert volts == [True, True, True, False, False, True, False]
    f, _ = scale_factors(["µV", "", "V", "counts", "degC", "mV", ""], types, [str(i) for i in range(7)])
    assert [bool(x != 1.0) for x in f] == [False, False, True, False, False, True, False]


def test_to_microvolts_scales_in_place_or_into_a_buffer_without_allocating():
    rng = np.random.default_rng(0)
    raw = (rng.standard_normal((256, 4)) * 1e-5).astype(np.float32)
    factors = np.array([1e6, 1e3, 1.0, 1e-3]).astype(np.float32)
    out = np.empty_like(raw)
    to_microvolts(raw, factors, out=out)  # warm up
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            to_microvolts(raw, factors, out=out)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1000
    np.testing.assert_array_equal(out, raw * factors)  # float32 products, the same in every caller
    copy = raw.astype(np.float64)
    assert to_microvolts(copy, factors.astype(np.float64)) is copy
    np.testing.assert_allclose(copy[:, 0], raw[:, 0].astype(np.float64) * 1e6, rtol=1e-6)
