"""The project owns its docs: every page the code and the docs point to exists, and nothing cites notes outside it.

Code comments, device profiles, pipelines, the README and the docs point readers to
``docs/<page>.md``; a renamed or missing page fails here. Relative Markdown links in the
README and in ``docs/`` must resolve too, and so must the repository files the docs name.
No file may cite the briefing notes the project was started from, or anything else beside
the repository, except the shared folder of real EEG the tests read
(``conftest.SHARED_DATA``, ``../shared/data``), which they skip without.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

#: Where pages are mentioned (folders searched recursively) and where nothing outside may be cited.
MENTIONS = ("closedloop", "devices", "pipelines", "docs", "README.md")
NO_OUTSIDE_CITATIONS = ("closedloop", "devices", "pipelines", "tests", "docs", "benchmarks", "README.md")
TEXT_SUFFIXES = {".py", ".toml", ".md", ".txt", ".cfg", ".ini", ".yaml", ".yml", ".json"}

_PAGE = re.compile(r"(?<![\w/.-])docs/[\w./-]*?\.md\b")
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# built from pieces so that this file does not match itself
_NOTES = re.compile("|".join(re.escape(n + ".md") for n in ("DESIGN", "DOMAIN")))
_OUTSIDE = re.compile(r"(?:\.\./|/work/)shared(?!/data\b)")


def text_files(roots: tuple[str, ...]) -> list[Path]:
    """Return the text files under ``roots`` (files or folders of the repository), caches left out."""
    out = []
    for root in roots:
        path = REPO / root
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out += [p for p in files if p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return out


def test_the_docs_folder_has_the_pages_the_project_promises():
    for page in ("README", "architecture", "eeg-and-pain", "control", "safety", "devices", "lsl-and-xdf", "quality"):
        assert (REPO / "docs" / f"{page}.md").is_file(), page


def test_the_docs_index_lists_every_page():
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    listed = set(_LINK.findall(index))
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert sorted(pages - listed) == []


def test_every_docs_page_mentioned_exists():
    missing = []
    for path in text_files(MENTIONS):
        for mention in set(_PAGE.findall(path.read_text(encoding="utf-8", errors="replace"))):
            if not (REPO / mention).is_file():
                missing.append(f"{path.relative_to(REPO)}: {mention}")
    assert missing == []


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_resolve(page):
    path = REPO / page
    broken = []
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        if not (path.parent / target).exists():
            broken.append(target)
    assert broken == []


_REPO_PATH = re.compile(r"(?<![\w/.-])((?:closedloop|tests|devices|pipelines|benchmarks)/[\w./*-]*[\w/*])")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


@pytest.mark.parametrize("page", sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")))
def test_files_the_docs_name_exist(page):
    # prose only: code blocks may name files a reader creates (``devices/my_stimulator.toml``)
    text = _FENCE.sub("", (REPO / page).read_text(encoding="utf-8"))
    missing = []
    for mention in set(_REPO_PATH.findall(text)):
        path = mention.split("::")[0]
        if not (list(REPO.glob(path)) if "*" in path else (REPO / path).exists()):
            missing.append(mention)
    assert missing == []


def test_nothing_cites_notes_outside_the_repository():
    found = []
    for path in text_files(NO_OUTSIDE_CITATIONS):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _NOTES.search(line) or _OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []


def test_the_checks_catch_what_they_are_for():
    assert _PAGE.findall("see docs/control.md), and tests/docs/x.py") == ["docs/control.md"]
    assert _NOTES.search("from " + "DOMAIN" + ".md §1") and not _NOTES.search("docs/eeg-and-pain.md")
    assert _OUTSIDE.search("../" + "shared/notes") and _OUTSIDE.search("/work/" + "shared/x")
    assert not _OUTSIDE.search("../shared/data/eegmat_subject00_rest.edf")
    assert _LINK.findall("[a](architecture.md#contracts) [b](https://x.org)") == ["architecture.md", "https://x.org"]
    assert _REPO_PATH.findall("`closedloop/session/driver.py` and tests/adapters/test_*.py.") == [
        "closedloop/session/driver.py",
        "tests/adapters/test_*.py",
    ]
