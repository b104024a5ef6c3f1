"""One channel-name matcher, label checks and channel types (closedloop/channels.py)."""

from __future__ import annotations

import pytest

from closedloop.channels import ChannelError, channel_types, check_labels, label_type, match, normalise

EDF_LABELS = ["EEG Fp1", "EEG O1", "EEG O2", "EEG Pz", "EEG A2-A1", "ECG ECG"]


@pytest.mark.parametrize(
    "wanted, available, index",
    [
        ("O1", ["EEG O1", "O2"], 0),  # type prefix
        ("O1", ["EEG-O1", "O2"], 0),
        ("O1", ["eeg_o1", "O2"], 0),
        ("Oz", ["Fz..", "Oz..", "Cz.."], 1),  # PhysioNet EEGMMI's trailing dots
        ("O1", ["O1-REF", "O2-REF"], 0),  # reference suffixes
        ("O1", ["EEG O1-Ref", "O2"], 0),
        ("O1", ["O1-LE", "O2-LE"], 0),
        ("O1", ["O1-A2", "O2-A1"], 0),
        ("O1", ["O1-M1"], 0),
        ("O1", ["O1-AVG"], 0),
        ("o1", ["O1", "O2"], 0),  # case
        ("EEG O1", ["O1", "O2"], 0),  # the pipeline may use the longer name too
        ("Cz", ["CZ", "Cz"], 1),  # exact first, before case-insensitive
    ],
)
def test_matcher_finds_real_world_spellings(wanted, available, index):
    assert match([wanted], available) == [index]


def test_matcher_keeps_order_and_names_missing_channels_with_what_the_stream_has():
    assert match(["Pz", "O1"], EDF_LABELS) == [3, 1]
    with pytest.raises(ChannelError) as err:
        match(["O1", "Oz", "T7"], EDF_LABELS, "features.rois.occipital", "stream 'amp'")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("features.rois.occipital: channel(s) ['Oz', 'T7'] not in stream 'amp'")
    assert "it has 6 channels" in msg and "'ECG ECG'" in msg


def test_ambiguous_match_is_an_error_naming_the_candidates():
    with pytest.raises(ChannelError, match=r"'O1' could be any of \['O1-A1', 'O1-A2'\]"):
        match(["O1"], ["O1-A1", "O1-A2"], "preprocess.picks")
    with pytest.raises(ChannelError, match="could be any of"):
        match(["cz"], ["Cz", "CZ"])
    with pytest.raises(ChannelError, match="'O1' and 'EEG O1' both name channel 'O1'"):
        match(["O1", "EEG O1"], ["O1", "O2"])


def test_unlabelled_stream_explains_why_names_are_not_found():
    with pytest.raises(ChannelError, match=r"declares no channel labels .* ch0\.\.ch3"):
        match(["O1"], ["ch0", "ch1", "ch2", "ch3"], unlabeled=True)
    assert match(["ch2"], ["ch0", "ch1", "ch2"], unlabeled=True) == [2]


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["O1", "O\x012"], r"label of channel 1 \('O\\x012'\) contains a control character"),
        (["O1", "O2\n"], "control character"),
        (["O1", "O2\x7f"], "control character"),
        (["O1", "", "O2"], r"channel\(s\) \[1\] have an empty label"),
        (["O1", " "], "empty label"),
        (["O1", "O2", "O1"], "label 'O1' is used by channels 0 and 2"),
    ],
)
def test_unusable_labels_are_one_line_errors(labels, expected):
    with pytest.raises(ChannelError, match=expected) as err:
        check_labels(labels, "stream 'amp'")
    assert "\n" not in str(err.value) and str(err.value).startswith("stream 'amp': ")


def test_normalise():
    assert normalise("EEG O1-REF") == normalise(" o1 ") == normalise("EEG-O1-A2") == "o1"
    assert normalise("Oz..") == "oz" and normalise("EEG A2-A1") == "a2"


def test_types_from_labels_correct_what_edf_declares():
    # MNE reads every EDF channel as EEG; the labels tell ECG and the ear reference apart
    assert channel_types(EDF_LABELS, ["eeg"] * 6) == ["EEG", "EEG", "EEG", "EEG", "REF", "ECG"]
    assert [label_type(x) for x in ("EKG", "VEOG", "EOG left", "EMG1", "M1", "A2", "EEG M2-REF", "Cz", "TP9")] == [
        "ECG",
        "EOG",
        "EOG",
        "EMG",
        "REF",
        "REF",
        "REF",
        None,
        None,
    ]


def test_declared_types_win_over_labels_unless_they_say_eeg():
    # a stream that types its channels (any case) is believed; a label only corrects "EEG"
    assert channel_types(["X1", "ECG", "Pz", "Trig"], ["ecg", "misc", "eeg", "stim"]) == ["ECG", "MISC", "EEG", "STIM"]
    assert channel_types(["Fz", "ECG"], None, "eeg") == ["EEG", "ECG"]  # the stream's type for untyped channels
    assert channel_types(["Fz", "ECG"], ["", ""], "EEG") == ["EEG", "ECG"]
