"""Shared by the recording tests: a session fed from the generator the way the live loop feeds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from closedloop.pipeline import Pipeline
from closedloop.recording import SessionRecording
from closedloop.safety import SafetyEvent
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.types import Chunk

OFFSET = 12.345678901234567  # a clock offset with every bit significant
#: threshold overrides that switch stimulation on from the first frames (a threshold pair far above any alpha)
STIMULATE_AT_ONCE = {
    "controller.lower": 9.0,
    "controller.upper": 9.5,
    "controller.onset": 1,
    "controller.blanking_s": 0.0,
    "recording.report": False,
}


def sim_tacs_copy(repo: Path, folder: Path, name: str, limits: dict[str, float]) -> Path:
    """Write a copy of the simulated tACS profile, renamed ``name``, whose only changes are these limits' values."""
    text = (repo / "devices" / "sim_tacs.toml").read_text()
    for key, value in limits.items():
        head = f"[limits.{key}]\nvalue = "
        start = text.index(head) + len(head)
        text = text[:start] + repr(value) + text[text.index("\n", start) :]
    path = folder / f"{name}.toml"
    path.write_text(text.replace('name = "sim_tacs"', f'name = "{name}"'))
    return path


def eeg_desc(gen, fmt="float32"):
    return {
        "name": "EEG-test",
        "type": "EEG",
        "source_id": "eeg-test-1",
        "sfreq": gen.sfreq,
        "channel_format": fmt,
        "ch_names": gen.ch_names,
        "units": "microvolts",
        "pipeline_offset": OFFSET,
        "header_xml": "<info><name>EEG-test</name><desc><manufacturer>acme &amp; co</manufacturer></desc></info>",
        "offset_measured": True,  # as from a live source: record_session gives the offset measurements
    }


def record_session(folder, resolved, seconds=6.0, chunk=37, report=False):
    """Feed a pipeline from the generator the way the live loop does; record everything."""
    gen = SyntheticEEG(n_channels=32, sfreq=500.0, seed=4)
    pipe = Pipeline(resolved, gen.ch_names)
    rec = SessionRecording(
        folder,
        resolved,
        eeg_desc(gen),
        pipe.feature_names,
        list(pipe.controller.state()),
        [{"name": "ratings", "type": "Ratings", "channel_format": "double64", "ch_names": ["pain"]}],
        min_free_bytes=0,
        report=report,
    )
    pipe.safety.on_event = rec.on_event
    raw_all, steps_all = [], []
    rec.applied_truth = []
    n = int(seconds * 500)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        data = gen.generate(m)
        raw = 5000.0 + (i + np.arange(m)) / 500.0
        rec.on_chunk(data, raw)
        steps = pipe.process(Chunk(data, raw + OFFSET))
        rec.on_steps(steps)
        steps_all += steps
        raw_all.append((data.copy(), raw))
        if steps:
            rec.on_applied(steps[-1].allowed, raw[-1] + OFFSET + 0.001, 0.001)
            rec.applied_truth.append((raw[-1] + OFFSET + 0.001, steps[-1].allowed.amplitude_mA, steps[-1].frame.time))
    rec.on_clock_offset(5001.0, -OFFSET)
    rec.on_marker("task", ["start", "stop"], [5000.5, 5003.25])  # an undeclared marker stream
    rec.on_marker("ratings", np.array([[3.5], [7.0]]), [5001.0, 5002.0])
    rec.on_event(SafetyEvent(5002.0 + OFFSET, "clamp", "2 mA clamped to 1.5 mA", 2.0, 1.5))
    return rec, raw_all, steps_all
