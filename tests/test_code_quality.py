"""The code stays as the project's rules say: ruff-clean, ruff-formatted, and the safety path type-checks.

The rules live in pyproject.toml (``[tool.ruff]``, ``[tool.mypy]``); the
tools come with the test extra, pinned to a minor version so that a new
release's style cannot fail an unchanged tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(exe).exists():
        pytest.fail(f"{name} is not installed: pip install '.[test]' installs it")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_ruff_finds_nothing():
    r = _tool("ruff", "check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_tree_is_ruff_formatted():
    r = _tool("ruff", "format", "--check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_types_safety_and_control_type_check():
    r = _tool("mypy", "--cache-dir", "/dev/null" if sys.platform != "win32" else "nul", timeout=600)
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout + r.stderr
