"""The summary survives: atomic writes, with a real ENOSPC from the kernel (/dev/full) and fallback folders."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from closedloop.recording.atomic import AtomicWriteError, rescue_dirs, temp_path, write_json_atomic

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux) for a real ENOSPC")

SUMMARY = {"stop_reason": "disk full", "charge_C": np.float64(0.0123), "frames": np.int64(42), "x": np.arange(3)}


def fill_disk(folder: Path, name: str = "summary.json") -> None:
    """Make writes of ``name`` in ``folder`` fail with ENOSPC: its temporary file is /dev/full."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(FULL, temp_path(folder / name))


def test_writes_whole_json_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "session" / "summary.json"
    path.parent.mkdir()
    got = write_json_atomic(path, SUMMARY)
    assert got == path
    assert json.loads(path.read_text()) == {
        "stop_reason": "disk full",
        "charge_C": 0.0123,
        "frames": 42,
        "x": [0, 1, 2],
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]
    write_json_atomic(path, {"again": True})  # replaces
    assert json.loads(path.read_text()) == {"again": True}


@needs_dev_full
def test_enospc_leaves_the_old_file_whole_and_lands_in_the_fallback(tmp_path, caplog):
    folder = tmp_path / "run-01"
    path = folder / "summary.json"
    folder.mkdir()
    path.write_text('{"old": 1}')
    fill_disk(folder)
    fd = os.open(temp_path(path), os.O_WRONLY)
    try:
        with pytest.raises(OSError) as err:  # the kernel's own error
            os.write(fd, b"x")
    finally:
        os.close(fd)
    assert err.value.errno == errno.ENOSPC
    caplog.set_level(logging.WARNING, logger="closedloop.recording.atomic")
    rescued = tmp_path / "state" / "run-01"
    got = write_json_atomic(path, SUMMARY, fallback_dirs=[rescued])
    assert got == rescued / "summary.json"
    assert json.loads(got.read_text())["frames"] == 42
    assert path.read_text() == '{"old": 1}'  # never truncated
    assert not temp_path(path).exists() and not temp_path(path).is_symlink()
    assert "No space left on device" in caplog.text and str(got) in caplog.text


@needs_dev_full
def test_every_folder_failing_raises_one_error_naming_each(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for folder in folders:
        fill_disk(folder)
    with pytest.raises(AtomicWriteError) as err:
        write_json_atomic(folders[0] / "summary.json", SUMMARY, fallback_dirs=folders[1:])
    assert err.value.errno == errno.ENOSPC and len(err.value.attempts) == 3
    message = str(err.value)
    assert message.count("No space left on device") == 3 and all(str(f) in message for f in folders)
    assert "\n" not in message
    assert not any((f / "summary.json").exists() for f in folders)


def test_a_vanished_folder_falls_back_to_the_per_user_state_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    path = tmp_path / "gone" / "summary.json"  # the session folder was removed
    got = write_json_atomic(path, {"a": 1})
    assert got == tmp_path / "state" / "closedloop" / "rescued" / "gone" / "summary.json"
    assert json.loads(got.read_text()) == {"a": 1}
    again = write_json_atomic(path, {"a": 2})  # a later session of the same folder name never overwrites it
    assert again.parent.name == "gone-2" and json.loads(got.read_text()) == {"a": 1}
    dirs = rescue_dirs("gone")
    assert dirs[0] == tmp_path / "state" / "closedloop" / "rescued" / "gone"
    assert dirs[1].name == "gone" and dirs[1].parent.name == "rescued"


def test_unserialisable_data_raises_before_anything_is_written(tmp_path):
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        write_json_atomic(tmp_path / "summary.json", loop, fallback_dirs=[])
    assert list(tmp_path.iterdir()) == []
