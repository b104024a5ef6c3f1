"""Results kept on disk between sessions: equal to the library's bit for bit, and never trusted blindly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from closedloop import diskcache
from closedloop.preprocess.filters import scipy_design

CALLS = [
    ("butter", (2, 1.0, "highpass"), {"fs": 500.0, "output": "sos"}),
    ("butter", (4, [8.0, 13.0], "bandpass"), {"fs": 1000.0, "output": "sos"}),
    ("ellip", (3, 1.0, 40.0, [30.0, 43.0], "bandpass"), {"fs": 250.0, "output": "sos"}),
    ("iirnotch", (50.0, 30.0), {"fs": 500.0}),
]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(diskcache.CACHE_ENV, str(tmp_path / "cache"))
    diskcache._tables.clear()  # a fresh process: nothing read yet
    yield tmp_path / "cache"
    diskcache._tables.clear()


def _equal(a, b) -> None:
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == np.float64
    else:
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float64


@pytest.mark.parametrize("name,args,kwargs", CALLS, ids=[c[0] + str(c[1][0]) for c in CALLS])
def test_design_equals_scipy_computed_and_read_back(cache, name, args, kwargs):
    expected = getattr(signal, name)(*args, **kwargs)
    _equal(scipy_design(name, *args, **kwargs), expected)  # computed, then written
    assert len(list(cache.glob("scipy-*.json"))) == 1
    diskcache._tables.clear()  # as a new process would: from the file
    _equal(scipy_design(name, *args, **kwargs), expected)


def test_array_arguments_and_zi_round_trip_exactly(cache):
    sos = signal.butter(2, [8.0, 12.0], "bandpass", fs=500.0, output="sos")
    b, a = signal.iirnotch(60.0, 25.0, fs=1000.0)
    for _ in range(2):
        _equal(scipy_design("sosfilt_zi", sos), signal.sosfilt_zi(sos))
        _equal(scipy_design("tf2sos", b, a), signal.tf2sos(b, a))
        diskcache._tables.clear()


def test_malformed_or_wrong_entries_are_computed_anew(cache):
    args = (2, 1.0, "highpass")
    scipy_design("butter", *args, fs=500.0, output="sos")
    path = next(cache.glob("scipy-*.json"))
    table = json.loads(path.read_text())
    (key,) = table
    for bad in ({"array": [[float("nan")] * 6]}, {"array": "zero"}, {"other": 1}, [1, 2]):
        path.write_text(json.dumps({key: bad}))
        diskcache._tables.clear()
        _equal(scipy_design("butter", *args, fs=500.0, output="sos"), signal.butter(*args, fs=500.0, output="sos"))
        assert json.loads(path.read_text())[key] == table[key]  # rewritten with the right value
    path.write_text("{ not json")
    diskcache._tables.clear()
    _equal(scipy_design("butter", *args, fs=500.0, output="sos"), signal.butter(*args, fs=500.0, output="sos"))


def test_off_writes_nothing_and_an_unwritable_folder_is_skipped(tmp_path, monkeypatch):
    diskcache._tables.clear()
    monkeypatch.setenv(diskcache.CACHE_ENV, "off")
    _equal(scipy_design("iirnotch", 50.0, 30.0, fs=500.0), signal.iirnotch(50.0, 30.0, fs=500.0))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder would be")
    monkeypatch.setenv(diskcache.CACHE_ENV, str(blocker / "cache"))
    _equal(scipy_design("iirnotch", 50.0, 30.0, fs=500.0), signal.iirnotch(50.0, 30.0, fs=500.0))
    assert blocker.is_file() and not any(tmp_path.glob("**/scipy-*.json"))
    diskcache._tables.clear()


#: Builds the README pipeline's stages (as the warm-up does) and reports whether scipy.signal was imported.
CHILD = """
import json, sys
from closedloop.config import load_pipeline
from closedloop.pipeline import Pipeline
from closedloop.live.warmup import guess_channels
resolved = load_pipeline(sys.argv[1])
Pipeline(resolved, guess_channels(resolved)).warmup()
print(json.dumps({"scipy.signal": "scipy.signal" in sys.modules}))
"""


def test_a_session_with_the_same_settings_does_not_import_scipy_signal(tmp_path, repo):
    env = {**os.environ, diskcache.CACHE_ENV: str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    runs = []
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-c", CHILD, str(repo / "pipelines" / "alpha_tacs.toml")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert runs == [{"scipy.signal": True}, {"scipy.signal": False}]  # designed once, then read


def test_synthetic_eeg_is_the_same_computed_read_back_or_without_a_cache(cache, monkeypatch):
    from closedloop.synthetic import eeg

    def fresh() -> np.ndarray:
        diskcache._tables.clear()
        eeg._montage_positions.cache_clear()
        return eeg.SyntheticEEG(n_channels=8, sfreq=250.0, seed=2).generate(500)

    computed = fresh()
    assert {p.name.split("-")[0] for p in cache.glob("*.json")} == {"mne", "closedloop"}
    np.testing.assert_array_equal(fresh(), computed)  # montage and pink-noise gain from the files
    monkeypatch.setenv(diskcache.CACHE_ENV, "off")
    np.testing.assert_array_equal(fresh(), computed)
    eeg._montage_positions.cache_clear()


def test_the_library_version_is_looked_up_once_per_process(cache, monkeypatch):
    # importlib.metadata.version reads every installed distribution (several ms): not once per filter design
    import importlib.metadata

    calls = []
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: calls.append(name) or real(name))
    diskcache._library_version.cache_clear()
    try:
        for _ in range(3):
            for name, args, kwargs in CALLS:
                scipy_design(name, *args, **kwargs)
    finally:
        diskcache._library_version.cache_clear()
    assert calls == ["scipy"]
