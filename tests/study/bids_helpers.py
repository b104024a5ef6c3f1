"""Checks shared by the BIDS export tests: the validator, and the events read back with mne-bids."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

VALIDATOR = "bids-validator-deno"


def validate(root: Path) -> dict:
    """Run the BIDS validator (offline; the Python package bids-validator-deno); return its JSON report."""
    exe = shutil.which(VALIDATOR)
    if exe is None:
        pytest.skip(f"{VALIDATOR} not installed (pip install 'closedloop[test]')")
    r = subprocess.run([exe, "--format", "json", str(root)], capture_output=True, text=True, timeout=300)
    report = json.loads(r.stdout)
    issues = report["issues"]["issues"]
    errors = [i for i in issues if i.get("severity") == "error"]
    assert not errors, [(i["code"], i.get("location")) for i in errors]
    assert r.returncode == 0, r.stderr
    return report


def read_back(root: Path, subject: str, session: str | None, task: str = "closedloop"):
    """Read the exported EEG back with mne-bids; return the raw (annotations from events.tsv)."""
    from mne_bids import BIDSPath, read_raw_bids

    bp = BIDSPath(subject=subject, session=session, task=task, datatype="eeg", root=root)
    return read_raw_bids(bp, verbose="error")


def assert_events_intact(raw, events) -> None:
    """The annotations read back are the events written: same types, onsets to a sample, same amplitudes."""
    ann = raw.annotations
    assert list(ann.description) == [e.trial_type for e in events]
    np.testing.assert_allclose(ann.onset, [e.onset for e in events], atol=1.0 / raw.info["sfreq"])
    for a, e in zip(ann.extras, events):
        if "stimulus_intensity" in e.extras and e.trial_type.startswith("stim/"):
            assert float(a["stimulus_intensity"]) == pytest.approx(e.extras["stimulus_intensity"], abs=1e-6)
