"""`closedloop play`: a recording published over LSL, consumed by an independent pylsl client."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import mne
import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.offline.play import play  # noqa: E402
from closedloop.recording import XDFReader  # noqa: E402
from closedloop.synthetic.recording import write_synthetic_xdf  # noqa: E402

pytestmark = pytest.mark.lsl
REPO = Path(__file__).resolve().parents[2]


def consume(name: str, n_samples: int, n_markers: int, timeout: float = 30.0):
    """Plain pylsl: connect to the marker stream, then the EEG, pull until ``n_samples`` and ``n_markers`` arrived."""
    [eeg_info] = pylsl.resolve_byprop("name", name, 1, timeout)
    [marker_info] = pylsl.resolve_byprop("name", f"{name}-markers", 1, timeout)
    markers = pylsl.StreamInlet(marker_info, recover=False, processing_flags=0)
    markers.open_stream(timeout=5.0)
    inlet = pylsl.StreamInlet(eeg_info, max_buflen=60, recover=False, processing_flags=0)
    full = inlet.info(timeout=5.0)
    inlet.open_stream(timeout=5.0)  # the player waits for this consumer before it starts
    values, stamps = [], []
    deadline = time.monotonic() + timeout
    while sum(len(s) for s in stamps) < n_samples and time.monotonic() < deadline:
        try:
            v, t = inlet.pull_chunk(timeout=0.2, max_samples=4096)
        except pylsl.util.LostError:  # the player is done; what it sent is in the inlet's buffer
            break
        if t:
            values.append(np.asarray(v, dtype=np.float32 if full.channel_format() == pylsl.cf_float32 else float))
            stamps.append(np.asarray(t))
    labels, marker_stamps = [], []
    while len(labels) < n_markers and time.monotonic() < deadline:  # markers travel on their own stream
        try:
            lab, st = markers.pull_chunk(timeout=0.2)
        except pylsl.util.LostError:  # the player is done and everything it sent has been pulled
            break
        labels += lab
        marker_stamps += st
    got = np.concatenate(values) if values else np.zeros((0, full.channel_count()), np.float32)
    return full, got, np.concatenate(stamps) if stamps else np.zeros(0), labels, np.asarray(marker_stamps)


def test_cli_play_is_consumed_intact_by_pylsl(tmp_path, unique_name):
    path = tmp_path / "rec.xdf"
    info = write_synthetic_xdf(path, 4.0, n_channels=8, sfreq=250.0, seed=3, blink_rate_per_min=40.0)
    values, raw = XDFReader(path).read_stream(1)
    player = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "closedloop",
            "play",
            str(path),
            "--speed",
            "4",
            "--name",
            unique_name,
            "--wait-consumer",
            "30",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        full, got, stamps, labels, marker_stamps = consume(unique_name, len(raw), len(info["markers"]))
        player.wait(timeout=30)
    finally:
        if player.poll() is None:
            player.kill()
    _, err = player.communicate()
    assert player.returncode == 0, err
    assert f"sent {len(raw)} samples" in err
    # every sample intact, in order, with the recording's own spacing
    np.testing.assert_array_equal(got, values)
    np.testing.assert_allclose(np.diff(stamps), np.diff(raw), atol=1e-9)
    assert full.nominal_srate() == 250.0 and full.channel_format() == pylsl.cf_float32
    assert [ch.split("<label>")[1].split("<")[0] for ch in full.as_xml().split("<channel>")[1:]] == info["ch_names"]
    # the markers, at the same place in the data
    assert [lab[0] for lab in labels] == [label for _, label in info["markers"]]
    np.testing.assert_allclose(marker_stamps - stamps[0], [t - raw[0] for t, _ in info["markers"]], atol=1e-6)


def test_play_loops_an_mne_file_with_continuous_timestamps(tmp_path, unique_name):
    data = np.random.default_rng(1).standard_normal((4, 200)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(["Fz", "Cz", "Pz", "Oz"], 100.0, "eeg"), verbose=False)
    raw.set_annotations(mne.Annotations([0.5], [0.0], ["go"]))
    path = tmp_path / "short_raw.fif"
    raw.save(path, fmt="double", verbose=False)
    stop = threading.Event()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            stats=play(path, speed=10.0, loop=True, name=unique_name, wait_consumer_s=30.0, stop=stop)
        )
    )
    thread.start()
    try:
        full, got, stamps, labels, _ = consume(unique_name, 500, 2)
    finally:
        stop.set()
        thread.join(10)
    assert full.channel_format() == pylsl.cf_double64
    expected = np.tile(data.T * 1e6, (3, 1))[: len(got)]  # µV, repeating
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(np.diff(stamps), 0.01, atol=1e-9)  # one period across every loop boundary
    assert [lab[0] for lab in labels][:2] == ["go", "go"]
    assert result["stats"].loops >= 2
