"""Interoperability with mne-lsl, the LSL toolkit many labs use.

mne-lsl bundles its own liblsl, which reads its configuration independently of
pylsl's: :func:`closedloop.lslconfig.configure_mne_lsl` gives it the same
machine-only configuration, so its traffic stays on this computer too.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from closedloop.lslconfig import configure_lsl, configure_mne_lsl

configure_lsl()
mne_lsl = pytest.importorskip("mne_lsl", reason="mne-lsl (the `test` extra) is not installed")
configure_mne_lsl()

import mne  # noqa: E402
import pylsl  # noqa: E402
from mne_lsl.player import PlayerLSL  # noqa: E402
from mne_lsl.stream import StreamLSL  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.files import open_recording  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402
from closedloop.pipeline import Pipeline  # noqa: E402
from closedloop.recording import XDFReader  # noqa: E402
from closedloop.types import Chunk, Quality  # noqa: E402

pytestmark = [
    pytest.mark.lsl,
    pytest.mark.skipif(not (SHARED_DATA / "eegmat_subject00_rest.edf").exists(), reason="shared real EEG absent"),
]

REPO = Path(__file__).resolve().parents[2]
EEGMAT = SHARED_DATA / "eegmat_subject00_rest.edf"


def fingerprint(steps) -> list[tuple]:
    return [(s.frame.time, s.frame.values.tobytes(), int(s.frame.flags), s.allowed.amplitude_mA) for s in steps]


def first_row_in(rows: np.ndarray, table: np.ndarray) -> int:
    """Index of ``rows[0]`` in ``table`` (n, ch), checking that the following rows match too."""
    hits = np.flatnonzero(np.all(table == rows[0], axis=1))
    assert hits.size == 1, hits
    k = int(hits[0])
    np.testing.assert_array_equal(rows, table[k : k + rows.shape[0]])
    return k


def test_player_lsl_volts_stream_drives_a_live_session_like_a_replay_of_the_file(tmp_path):
    """mne-lsl's PlayerLSL publishes volts (unit "0") typed "eeg"; the session must see µV, not FLAT."""
    from closedloop.live.runtime import LiveSession

    name = f"cltest-player-{uuid.uuid4().hex[:8]}"
    over = {
        "source.name": name,
        "preprocess.reference": "average",
        "features.smoothing_s": 0.0,
        "controller.lower": 0.5,
        "controller.upper": 0.9,
    }
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs_lsl.toml", over)
    player = PlayerLSL(EEGMAT, chunk_size=10, name=name, source_id=name)
    player.start()
    seen = []
    try:
        summary = LiveSession(resolved, 3.0, tmp_path, show_status=False, on_step=seen.append).run()
    finally:
        player.stop()
    assert summary["stop_reason"] == "duration reached" and len(seen) > 20
    assert not any(s.frame.flags & Quality.FLAT for s in seen)
    # the recording keeps the volts as received, with mne-lsl's unit and the corrected types in its header
    reader = XDFReader(tmp_path / "session.xdf")
    eeg = next(s for s in reader.streams.values() if s.desc("closedloop/role") == "eeg")
    assert set(eeg.units) == {"0"} and eeg.type == "eeg"
    types = dict(zip(eeg.ch_names, eeg.ch_types))
    assert types["ECG ECG"] == "ECG" and types["EEG A2-A1"] == "REF" and types["EEG O1"] == "EEG"
    assert eeg.desc("closedloop/average_reference_excludes") == "EEG A2-A1, ECG ECG"
    received = np.concatenate([v for v, _ in reader.iter_samples(eeg.stream_id)])
    assert np.abs(received).max() < 0.01  # volts
    # a replay of the recording scales with the same function: bit for bit what ran live
    again = replay(tmp_path / "session.xdf", resolved, keep="steps")
    assert fingerprint(again.steps) == fingerprint(seen)
    # and the same as the pipeline run on the file itself (MNE's reading, µV) from the first sample received
    raw = mne.io.read_raw_edf(EEGMAT, preload=True, verbose=False)
    k0 = first_row_in(received[:50], raw.get_data().T)
    rec = open_recording(EEGMAT)
    file_uv = raw.get_data().T[k0 : k0 + received.shape[0]] * 1e6
    direct = Pipeline(resolved, rec.ch_names, ch_types=rec.ch_types).process(
        Chunk(np.ascontiguousarray(file_uv), np.arange(file_uv.shape[0]) / 500.0)
    )
    n = min(len(direct), len(seen))
    assert n >= len(seen) - 1
    live_values = np.array([s.frame.values for s in seen[:n]])
    np.testing.assert_allclose(live_values, [s.frame.values for s in direct[:n]], rtol=1e-9)
    assert 0.0 < np.median(live_values[:, 1]) < 3.0  # log10 alpha in µV², not about -10


def play_in_thread(path, name):
    from closedloop.offline.play import play

    stop = threading.Event()
    started = threading.Event()
    thread = threading.Thread(
        target=play, args=(path,), kwargs=dict(name=name, stop=stop, on_start=lambda s: started.set()), daemon=True
    )
    thread.start()
    assert started.wait(30)
    return stop, thread


def read_with_stream_lsl(name, n_samples, timeout=15.0):
    stream = StreamLSL(bufsize=5.0, name=name).connect(acquisition_delay=0.001, timeout=5)
    try:
        end = pylsl.local_clock() + timeout
        while stream.n_new_samples < n_samples and pylsl.local_clock() < end:
            time.sleep(0.02)  # poll the condition, bounded by the deadline
        info = stream.info
        data, _ = stream.get_data()
        return info, stream.get_channel_types(), data
    finally:
        stream.disconnect()


def test_stream_lsl_reads_closedloop_play_with_labels_types_units_and_values():
    from mne.io.constants import FIFF

    name = f"cltest-play-{uuid.uuid4().hex[:8]}"
    stop, thread = play_in_thread(EEGMAT, name)
    try:
        info, types, data = read_with_stream_lsl(name, 500)
    finally:
        stop.set()
        thread.join(10)
    rec = open_recording(EEGMAT)
    assert info["ch_names"] == rec.ch_names and info["sfreq"] == 500.0
    assert types[rec.ch_names.index("ECG ECG")] == "ecg" and types.count("eeg") == 20  # A2-A1 "REF": eeg to MNE
    assert {ch["unit_mul"] for ch in info["chs"]} == {FIFF.FIFF_UNITM_MU}  # microvolts
    filled = data[:, np.any(data != 0, axis=0)].T  # the buffer's filled part, (n, ch)
    assert filled.shape[0] >= 400
    raw = mne.io.read_raw_edf(EEGMAT, preload=True, verbose=False)
    first_row_in(filled, raw.get_data().T * 1e6)  # the file's values in µV, exactly


def test_stream_lsl_reads_closedloop_synth():
    from mne.io.constants import FIFF

    from closedloop.synthetic.eeg import SyntheticEEG
    from closedloop.synthetic.outlet import SynthPublisher

    name = f"cltest-synth-{uuid.uuid4().hex[:8]}"
    pub = SynthPublisher(SyntheticEEG(n_channels=8, sfreq=250.0, seed=2), name=name, chunk_size=5, markers=False)
    pub.start()
    try:
        info, types, data = read_with_stream_lsl(name, 250)
    finally:
        pub.stop()
    assert info["ch_names"] == SyntheticEEG(8).ch_names and set(types) == {"eeg"}
    assert {ch["unit_mul"] for ch in info["chs"]} == {FIFF.FIFF_UNITM_MU}
    filled = data[:, np.any(data != 0, axis=0)].T
    twin = SyntheticEEG(n_channels=8, sfreq=250.0, seed=2).generate(pub.samples_pushed)
    first_row_in(filled, twin.astype(filled.dtype))
