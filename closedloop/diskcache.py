"""Small results that cost a slow import, kept on disk between sessions.

Designing a filter needs :mod:`scipy.signal`, whose import (it pulls in
:mod:`scipy.stats`) takes 0.7-1.2 s; the synthetic EEG's electrode positions
need MNE's montage files (0.3 s). Both are pure functions of their arguments
and of the library's version, so the first session stores what it computed in
a JSON file per library version in the user's cache folder, and the next
session with the same settings reads it instead of importing the library
(docs/architecture.md, start-up). Floats are written with :func:`repr`, which
reads back bit for bit, so a cached design equals a computed one exactly.

A missing, unreadable or malformed file is computed anew (and rewritten); a
folder that cannot be written is skipped silently. ``CLOSEDLOOP_CACHE_DIR``
chooses the folder; ``CLOSEDLOOP_CACHE_DIR=off`` never reads or writes one.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Environment variable: the cache folder, or ``off``.
CACHE_ENV = "CLOSEDLOOP_CACHE_DIR"

_lock = threading.Lock()
_tables: dict[Path, dict[str, Any]] = {}


def cache_folder() -> Path | None:
    """Return the cache folder (``$CLOSEDLOOP_CACHE_DIR``, else the OS's user cache), or None when off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen)
    try:
        from platformdirs import user_cache_path
    except ImportError:  # platformdirs is optional: fall back to the XDG default
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "closedloop"
    return user_cache_path("closedloop", appauthor=False)


@functools.cache  # once per library and process: a lookup reads every installed distribution (~7 ms)
def _library_version(library: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(library)
    except PackageNotFoundError:
        return "unknown"


def _read(path: Path) -> dict[str, Any]:
    """Return the entries in ``path`` (empty when absent, unreadable or malformed)."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _table(path: Path) -> dict[str, Any]:
    """Return the entries of ``path``, read once per process."""
    if path not in _tables:
        _tables[path] = _read(path)
    return _tables[path]


def _write(path: Path, table: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(table, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError:
        pass  # a read-only or full disk: the result is still returned, just not kept


def cached(library: str, key: list, compute: Callable[[], Any], check: Callable[[Any], bool]) -> Any:
    """Return ``compute()``, from the cache of ``library``'s current version when it holds ``key``.

    Parameters
    ----------
    library : str
        The distribution whose functions ``compute`` calls (``"scipy"``,
        ``"mne"``); its installed version names the cache file.
    key : list
        JSON-serialisable description of the call (function name and arguments).
    compute : callable
        Return the result: JSON-serialisable (nested lists and dicts of floats,
        ints and strings).
    check : callable
        Return whether a value read from the file has the shape ``compute``
        returns; a value that fails it is computed anew.
    """
    folder = cache_folder()
    if folder is None:
        return compute()
    path = folder / f"{library}-{_library_version(library)}.json"
    text = json.dumps(key, separators=(",", ":"))
    with _lock:
        table = _table(path)
        if text in table and check(table[text]):
            return table[text]
    value = compute()
    with _lock:
        # what another process may have added since this one read the file, then this entry
        table = _tables[path] = {**_table(path), **_read(path), text: value}
        _write(path, table)
    return value
