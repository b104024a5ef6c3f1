"""BIDS export of a replay of real EEG: validated offline, read back with mne-bids, events intact."""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from bids_helpers import assert_events_intact, read_back, validate
from conftest import SHARED_DATA

from closedloop.config import load_pipeline
from closedloop.offline.replay import replay
from closedloop.recording.reader import XDFReader
from closedloop.study.bids import BidsExportError, export_sessions, session_events

pytest.importorskip("mne_bids")

REPO = Path(__file__).resolve().parents[2]
EDF = SHARED_DATA / "eegmat_subject00_rest.edf"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    if not EDF.exists():
        pytest.skip(f"shared real EEG not present ({EDF})")
    resolved = load_pipeline(
        REPO / "pipelines" / "alpha_tacs.toml", {"controller.lower": 1.45, "controller.upper": 1.6}
    )
    folder = tmp_path_factory.mktemp("replay") / "sub-01-ses-1"
    replay(EDF, resolved, folder, duration_s=40.0, identity={"participant": "01", "session": "1"}, report=False)
    return folder


def _applied_transitions(xdf: Path) -> tuple[int, int]:
    reader = XDFReader(xdf)
    (stream,) = [s for s in reader.streams.values() if s.desc("closedloop/role") == "applied"]
    values, _ = reader.read_stream(stream.stream_id)
    on = values[:, 2] > 0.5
    ons = int(on[0]) + int(np.count_nonzero(on[1:] & ~on[:-1]))
    offs = int(np.count_nonzero(~on[1:] & on[:-1]))
    return ons, offs


def test_real_eeg_replay_exports_to_valid_bids_with_events_intact(replayed, tmp_path):
    root = tmp_path / "bids"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (item,) = export_sessions([replayed], root)
    assert not [str(w.message) for w in caught if "unit" in str(w.message)]  # pybv: "non-voltage units: n/a"
    assert (item.subject, item.session) == ("01", "1") and item.eeg.suffix == ".vhdr"
    validate(root)

    raw = read_back(root, "01", "1")
    reader = XDFReader(replayed / "session.xdf")
    (eeg,) = [s for s in reader.streams.values() if s.desc("closedloop/role") == "eeg"]
    values, stamps = reader.read_stream(eeg.stream_id)
    # the EEG as received: same samples, in volts (closedloop records µV)
    assert raw.n_times == values.shape[0] and raw.info["sfreq"] == eeg.nominal_srate
    o1 = eeg.ch_names.index("EEG O1")
    np.testing.assert_allclose(raw.get_data(picks=[o1])[0], values[:, o1] * 1e-6, atol=1e-9)
    # the recording's reference channel (type REF, a voltage: MISC in BIDS) keeps its unit, in both files
    ref = eeg.ch_names.index("EEG A2-A1")
    assert eeg.ch_types[ref] == "REF"
    np.testing.assert_allclose(raw.get_data(picks=[ref])[0], values[:, ref] * 1e-6, atol=1e-9)
    ses_eeg = root / "sub-01" / "ses-1" / "eeg"
    with open(ses_eeg / "sub-01_ses-1_task-closedloop_channels.tsv", encoding="utf-8") as f:
        units = {r["name"]: r["units"] for r in csv.DictReader(f, delimiter="\t")}
    assert set(units.values()) == {"µV"}
    vhdr = (ses_eeg / "sub-01_ses-1_task-closedloop_eeg.vhdr").read_text(encoding="utf-8")
    assert re.search(r"^Ch\d+=EEG A2-A1,,[0-9.]+,µV$", vhdr, re.M)

    t0 = float(stamps[0]) + float(eeg.desc("closedloop/pipeline_offset") or 0.0)
    events = session_events(reader, t0, (raw.n_times - 1) / raw.info["sfreq"], "tes")
    assert_events_intact(raw, events)
    kinds = [e.trial_type for e in events]
    ons, offs = _applied_transitions(replayed / "session.xdf")
    assert ons > 0 and kinds.count("stim/on") == ons and kinds.count("stim/off") == offs
    assert kinds.count("stim/amplitude") > 0 and any(k.startswith("safety/") for k in kinds)

    # the sidecars: BIDS's ElectricalStimulation fields, NIBS-BIDS files, derivatives, the original XDF
    ses = root / "sub-01" / "ses-1"
    eeg_json = json.loads((ses / "eeg" / "sub-01_ses-1_task-closedloop_eeg.json").read_text())
    assert eeg_json["ElectricalStimulation"] is True and "controller" in eeg_json["ElectricalStimulationParameters"]
    with open(ses / "nibs" / "sub-01_ses-1_task-closedloop_nibs.tsv") as f:
        (row,) = list(csv.DictReader(f, delimiter="\t"))
    assert row["nibs_type"] == "tES" and row["stimulus_shape"] == "Sinusoid" and float(row["frequency"]) == 10.0
    nibs = json.loads((ses / "nibs" / "sub-01_ses-1_task-closedloop_nibs.json").read_text())
    assert nibs["IntendedFor"] == "bids::sub-01/ses-1/eeg/sub-01_ses-1_task-closedloop_events.tsv"
    limits = nibs["ClosedLoopParameters"]["SafetyLimits"]
    assert limits["max_amplitude_mA"]["Value"] == 1.5 and "Bikson" in limits["max_charge_C"]["Source"]
    with open(ses / "eeg" / "sub-01_ses-1_task-closedloop_events.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert {r["nibs_event_id"] for r in rows if r["trial_type"].startswith("stim/")} == {"closedloop_tes"}
    deriv = root / "derivatives" / "closedloop" / "sub-01" / "ses-1" / "eeg"
    summary = json.loads((deriv / "sub-01_ses-1_task-closedloop_summary.json").read_text())
    assert summary["identity"] == {"participant": "01", "session": "1"}
    assert "[controller]" in (deriv / "sub-01_ses-1_task-closedloop_pipeline.toml").read_text()
    assert (root / "sourcedata" / "sub-01" / "ses-1" / "sub-01_ses-1_task-closedloop_session.xdf").is_file()
    assert "**/nibs" in (root / ".bidsignore").read_text().splitlines()


def test_two_recordings_of_one_session_become_runs_and_edf_works(replayed, tmp_path):
    root = tmp_path / "bids"
    items = export_sessions([replayed, replayed], root, task="rest", eeg_format="EDF")
    assert [i.eeg.name for i in items] == [
        "sub-01_ses-1_task-rest_run-1_eeg.edf",
        "sub-01_ses-1_task-rest_run-2_eeg.edf",
    ]
    validate(root)


def test_a_folder_without_a_recording_or_a_participant_is_refused(tmp_path, replayed):
    with pytest.raises(BidsExportError, match="no session.xdf"):
        export_sessions([tmp_path], tmp_path / "bids")
