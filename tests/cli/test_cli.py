"""The command line: version, overrides, bare names, init, profile lookup, warnings, features, identity."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import mne
import numpy as np
import pytest

from closedloop import __version__
from closedloop.cli import main
from closedloop.config import load_pipeline
from closedloop.offline.features import detect_line_frequency, extract_features
from closedloop.offline.files import open_recording
from closedloop.offline.replay import replay
from closedloop.synthetic.recording import write_synthetic_xdf


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"closedloop {__version__}"


def test_set_overrides_are_parsed_as_toml_and_checked_like_the_file(capsys):
    code, out, _ = cli(capsys, "check", "alpha_tacs", "--set", "controller.lower=1.4", "-s", 'features.channels=["O1"]')
    assert code == 0
    lines = out.splitlines()
    start = lines.index("{")
    shown = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    assert shown["controller"]["lower"] == 1.4 and shown["features"]["channels"] == ["O1"]
    code, _, err = cli(capsys, "check", "alpha_tacs", "--set", "controller.lower=9")
    assert code == 2 and "controller.lower: 9.0 must be <= controller.upper (1.55)" in err


def test_check_prints_the_resolved_pipeline_without_nulls(capsys):
    code, out, _ = cli(capsys, "check", "alpha_tacs")
    assert code == 0 and "null" not in out and '"highpass_hz": 1.0' in out and "Safety envelope" in out


def test_a_bare_name_finds_a_shipped_pipeline_from_any_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", "alpha_tacs")
    assert code == 0 and "pipeline alpha_tacs" in out
    code, _, err = cli(capsys, "check", "alpha_tac")
    assert code == 2 and "file not found: alpha_tac" in err and "alpha_tacs" in err  # names the shipped ones


def test_init_writes_a_project_whose_pipelines_use_its_own_profiles(capsys, tmp_path):
    proj = tmp_path / "study"
    code, _, _ = cli(capsys, "init", proj)
    assert code == 0 and (proj / "README.md").is_file()
    assert {p.name for p in (proj / "pipelines").glob("*.toml")} >= {"alpha_tacs.toml", "features_file.toml"}
    limits = (proj / "devices" / "sim_tacs.toml").read_text().replace("value = 2.0", "value = 1.8", 1)
    (proj / "devices" / "sim_tacs.toml").write_text(limits)  # the user edits their copy
    resolved = load_pipeline(proj / "pipelines" / "alpha_tacs.toml")
    assert Path(resolved.profile.path).parent == (proj / "devices").resolve()
    assert resolved.profile.limit("max_amplitude_mA") == 1.8
    code, _, err = cli(capsys, "init", proj)
    assert code == 2 and "not empty" in err


def test_devices_prints_the_lookup_order_and_where_each_profile_came_from(capsys, tmp_path, monkeypatch, repo):
    extra = tmp_path / "lab-profiles"
    extra.mkdir()
    text = (repo / "devices" / "sim_tacs.toml").read_text().replace('name = "sim_tacs"', 'name = "lab_tacs"')
    (extra / "lab_tacs.toml").write_text(text)
    (extra / "a_pipeline.toml").write_text((repo / "pipelines" / "alpha_tacs.toml").read_text())
    monkeypatch.setenv("CLOSEDLOOP_DEVICES", str(extra))
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "devices")
    assert code == 0
    order = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.", "4.")]
    assert [line.split("[")[-1].split("]")[0] for line in order] == [
        "project (./devices, or beside a pipeline)",
        "CLOSEDLOOP_DEVICES",
        "user folder",
        "shipped with closedloop",
    ]
    assert f"({extra / 'lab_tacs.toml'})" in out and "a_pipeline" not in out  # a pipeline file is no profile


def test_run_and_replay_refuse_a_features_only_pipeline(capsys, tmp_path):
    for args in (("run", "features_file"), ("replay", tmp_path / "x.edf", "--pipeline", "features_file")):
        code, _, err = cli(capsys, *args)
        assert code == 2 and "has no [controller] and [device]" in err and len(err.strip().splitlines()) == 1


def test_hop_that_is_not_a_multiple_of_the_chunk_is_a_warning_with_its_cost(capsys):
    code, _, err = cli(capsys, "check", "alpha_tacs", "--set", "source.chunk_size=10")
    assert code == 0 and "warning: features.hop_samples: 25 is not a multiple of source.chunk_size (10)" in err
    assert "10.8 ms instead of 1.2 ms" in err
    code, _, err = cli(capsys, "check", "alpha_tacs")  # shipped: chunks of 5, hop 25
    assert code == 0 and "warning" not in err


class FakeSession:
    """Stands in for LiveSession: records what the CLI passes, reports progress, returns a summary."""

    seen: dict = {}

    def __init__(self, resolved, duration_s, out_dir, show_status=True, identity=None, on_progress=None):
        FakeSession.seen = {"identity": identity, "out_dir": Path(out_dir)}
        self.on_progress = on_progress

    def run(self) -> dict:
        self.on_progress("starting: resolving the EEG stream")
        out = FakeSession.seen["out_dir"]
        out.mkdir(parents=True)
        (out / "summary.json").write_text("{}")
        return {"stop_reason": "duration reached", "duration_s": 3.0, "frames": 60, "commands_applied": 60}


class OlderSession(FakeSession):
    def __init__(self, resolved, duration_s, out_dir, show_status=True):
        FakeSession.seen = {"identity": None, "out_dir": Path(out_dir)}
        self.on_progress = lambda line: None


def test_run_names_the_folder_passes_identity_and_prints_progress_and_a_compact_summary(capsys, tmp_path, monkeypatch):
    import closedloop.live.runtime as runtime

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runtime, "LiveSession", FakeSession)
    code, out, err = cli(capsys, "run", "alpha_tacs", "-q", "--participant", "07", "--session", "2")
    assert code == 0, err
    assert FakeSession.seen["identity"] == {"participant": "07", "session": "2"}
    assert FakeSession.seen["out_dir"].name.endswith("-alpha_tacs-sub-07-ses-2")
    assert "starting: resolving the EEG stream" in err
    lines = out.strip().splitlines()
    assert lines[0].split() == ["stop", "reason", "duration", "reached"] and len(lines) < 10
    assert "summary.json" in lines[-1]
    monkeypatch.setattr(runtime, "LiveSession", OlderSession)  # a runtime without identity/on_progress
    code, out, err = cli(capsys, "run", "alpha_tacs", "-q", "--participant", "07")
    assert code == 0 and FakeSession.seen["out_dir"].name.endswith("-alpha_tacs-sub-07")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "synthetic.xdf"
    write_synthetic_xdf(path, 30.0, n_channels=32, sfreq=500.0, seed=5)
    return path


def test_features_equal_the_replay_frames_on_the_same_file(capsys, recording, tmp_path, repo):
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml")
    table = extract_features(recording, resolved)
    trace = replay(recording, resolved, keep="trace").trace
    assert len(table) == len(trace) > 500
    np.testing.assert_array_equal(table.time, trace.time)
    np.testing.assert_array_equal(table.values, trace.values)
    np.testing.assert_array_equal(table.flags, trace.flags)
    out_csv = tmp_path / "features.csv"
    code, out, err = cli(capsys, "features", recording, "--pipeline", "alpha_tacs", "--out", out_csv)
    assert code == 0, err
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(trace)
    np.testing.assert_array_equal([float(r["alpha"]) for r in rows], trace.feature("alpha"))
    assert f"{len(trace)} frames" in out


def test_a_file_source_pipeline_serves_features_with_its_own_path(capsys, recording, tmp_path, repo):
    text = (repo / "pipelines" / "features_file.toml").read_text()
    text = text.replace('# path = "recording.edf"', f'path = "{recording.name}"')
    pipeline = recording.parent / "mine.toml"
    pipeline.write_text(text)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)  # the path is relative to the pipeline's folder, not to the current one
        code, out, err = cli(capsys, "features", "--pipeline", pipeline)
    finally:
        os.chdir(cwd)
    assert code == 0, err
    assert "alpha_O1" in out and "frames" in out


def _raw_with_line(line_hz: float, sfreq: float = 500.0, seconds: float = 30.0) -> mne.io.RawArray:
    rng = np.random.default_rng(0)
    names = ["O1", "O2", "Pz", "Cz", "Fz"]
    t = np.arange(int(seconds * sfreq)) / sfreq
    data = rng.normal(0, 10e-6, (len(names), t.size)) + 20e-6 * np.sin(2 * np.pi * line_hz * t)
    return mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose=False)


@pytest.mark.parametrize("line_hz", [50.0, 60.0])
def test_line_frequency_detected_in_the_spectrum(tmp_path, line_hz):
    path = tmp_path / f"line{line_hz:.0f}_raw.fif"
    _raw_with_line(line_hz).save(path, verbose=False)
    assert detect_line_frequency(open_recording(path)) == line_hz
    clean = tmp_path / "clean_raw.fif"
    raw = _raw_with_line(line_hz)
    raw._data[:] = np.random.default_rng(1).normal(0, 10e-6, raw._data.shape)
    raw.save(clean, verbose=False)
    assert detect_line_frequency(open_recording(clean)) is None


def test_a_notch_that_misses_the_line_frequency_is_a_warning(capsys, tmp_path):
    path = tmp_path / "us_raw.fif"
    _raw_with_line(60.0).save(path, verbose=False)
    code, _, err = cli(capsys, "features", path, "--pipeline", "features_file")
    assert code == 0, err
    assert "warning: preprocess.notch_hz: 50 Hz, but the line frequency of the data is 60 Hz" in err
    code, _, err = cli(capsys, "features", path, "--pipeline", "features_file", "--set", "preprocess.notch_hz=60")
    assert code == 0 and "warning" not in err


def test_messages_keep_their_brackets(capsys, tmp_path):
    """Rich markup must not eat ``[source]`` (the message of a recording at another rate names the key)."""
    path = tmp_path / "slow_raw.fif"
    _raw_with_line(50.0, sfreq=250.0).save(path, verbose=False)
    code, _, err = cli(capsys, "replay", path, "--pipeline", "alpha_tacs", "--out", tmp_path / "out", "-q")
    assert code == 3 and "([source] sfreq in" in err and "set [source] sfreq = 250" in err
