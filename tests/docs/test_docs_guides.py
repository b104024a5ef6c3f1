"""The worked examples of the docs run: each guide's code blocks are executed as one script.

A guide is the sequence of fenced ``python`` blocks that follow an HTML comment
``<!-- guide: NAME -->`` in a page of ``docs/``; its blocks run in order in one
namespace, so the prose may sit between them. A guide that stops working fails here,
so the docs cannot drift from the code they describe.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from conftest import REPO

DOCS = REPO / "docs"
_BLOCK = re.compile(r"<!--\s*guide:\s*([\w-]+)\s*-->\s*\n```python\n(.*?)\n```", re.S)

#: Guides that must exist (deleting one, or its markers, is a failure, not a skip).
REQUIRED = {("architecture.md", "feature"), ("architecture.md", "controller"), ("architecture.md", "adapter")}


def guides() -> dict[tuple[str, str], str]:
    """Return ``{(page, guide name): code}`` with the blocks of each guide joined in order."""
    found: dict[tuple[str, str], list[str]] = {}
    for page in sorted(DOCS.glob("*.md")):
        for name, code in _BLOCK.findall(page.read_text(encoding="utf-8")):
            found.setdefault((page.name, name), []).append(code)
    return {key: "\n\n".join(blocks) + "\n" for key, blocks in found.items()}


def test_the_required_guides_are_there():
    assert REQUIRED <= set(guides()), f"missing guides: {sorted(REQUIRED - set(guides()))}"


@pytest.mark.parametrize("page,name", sorted(guides()))
def test_guide_runs(page, name, tmp_path, monkeypatch):
    # a file of its own (numba caches compiled kernels beside it), run as a script in this process
    script = tmp_path / f"guide_{Path(page).stem}_{name}.py"
    script.write_text(guides()[(page, name)], encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a guide may write files; none may land in the repository
    runpy.run_path(str(script), run_name="__main__")
