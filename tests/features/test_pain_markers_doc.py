"""Every TOML snippet of docs/pain-markers.md is a [features] section that `closedloop check` accepts."""

from __future__ import annotations

import re

import pytest
from conftest import REPO
from typer.testing import CliRunner

from closedloop.cli import app

DOC = REPO / "docs" / "pain-markers.md"
HEADER = """
[pipeline]
name = "doc_snippet"

[source]
kind = "file"
sfreq = 500.0

[preprocess]
highpass_hz = 1.0
"""


def snippets() -> list[str]:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)
    return [b for b in blocks if b.lstrip().startswith("[features]")]


def test_the_doc_has_snippets():
    assert len(snippets()) >= 5


@pytest.mark.parametrize("i", range(len(snippets())))
def test_doc_snippet_passes_check(tmp_path, i):
    path = tmp_path / f"snippet{i}.toml"
    path.write_text(HEADER + "\n" + snippets()[i])
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
