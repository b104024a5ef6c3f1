"""Write a small file so that it survives: whole or not at all, and somewhere even when its folder fails.

A session's ``summary.json`` holds the stop reason and the dose; written
with a plain ``write_text`` on a full disk it is left at 0 bytes. Here the
text goes to a temporary file in the same folder, is flushed to disk
(``fsync``) and renamed over the target (``os.replace``, atomic on POSIX
and Windows): the target is either the complete new file or untouched. On
any ``OSError`` (no space, I/O error, permission, folder gone) the same is
tried in fallback folders, and the path where the file landed is returned.

The temporary file's name is fixed (``.NAME.tmp`` beside ``NAME``), so a
stale one from a crash is simply reused, and a test can place a symbolic
link to ``/dev/full`` there to get a real ``ENOSPC`` from the kernel.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["AtomicWriteError", "rescue_dirs", "temp_path", "write_bytes_atomic", "write_json_atomic"]

log = logging.getLogger(__name__)


class AtomicWriteError(OSError):
    """The file could be written neither to its folder nor to any fallback folder.

    Attributes
    ----------
    attempts : list of (Path, OSError)
        Each folder tried, with its error.
    """

    def __init__(self, name: str, attempts: list[tuple[Path, OSError]]) -> None:
        tried = "; ".join(f"{folder}: {err.strerror or err}" for folder, err in attempts)
        first = attempts[0][1].errno if attempts else None
        super().__init__(first, f"could not write {name} anywhere ({tried})")
        self.attempts = attempts


def temp_path(path: str | os.PathLike) -> Path:
    """Return the temporary file :func:`write_bytes_atomic` writes before renaming: ``.NAME.tmp`` beside ``NAME``."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp")


def rescue_dirs(folder_name: str) -> list[Path]:
    """Return the default fallback folders for a file of the session folder ``folder_name``.

    First the per-user state folder (``$XDG_STATE_HOME`` or
    ``~/.local/state``; ``%LOCALAPPDATA%`` on Windows) under
    ``closedloop/rescued/<folder_name>``, then the system temporary folder
    under ``closedloop-<user>/rescued/<folder_name>`` (a private folder:
    other users cannot plant links in it).
    """
    name = folder_name or "session"
    out: list[Path] = []
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_STATE_HOME")
    try:
        state = Path(base) if base else Path.home() / ".local" / "state"
        out.append(state / "closedloop" / "rescued" / name)
    except RuntimeError:  # no home folder
        pass
    user = str(os.getuid()) if hasattr(os, "getuid") else (os.environ.get("USERNAME") or "user")
    out.append(Path(tempfile.gettempdir()) / f"closedloop-{user}" / "rescued" / name)
    return out


def write_json_atomic(
    path: str | os.PathLike, obj: object, fallback_dirs: Sequence[str | os.PathLike] | None = None, *, indent: int = 2
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically, or to a fallback folder if that fails.

    Parameters
    ----------
    path : str or Path
        The file to write (e.g. ``<session folder>/summary.json``).
    obj : object
        JSON-serialisable data; numpy scalars and arrays become numbers and
        lists, other unknown objects their ``str``.
    fallback_dirs : list of str or Path, optional
        Folders to try, in order, when writing to ``path``'s folder fails;
        by default :func:`rescue_dirs` of the folder's name.
    indent : int
        JSON indentation.

    Returns
    -------
    Path
        Where the file is: ``path``, or the same name in a fallback folder
        (tell the operator).

    Raises
    ------
    AtomicWriteError
        (an ``OSError``) if every folder failed, naming each with its error.
    ValueError
        If ``obj`` cannot be serialised (a circular reference): nothing is written.
    """
    text = json.dumps(obj, indent=indent, default=_jsonable) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"), fallback_dirs)


def write_bytes_atomic(
    path: str | os.PathLike, data: bytes, fallback_dirs: Sequence[str | os.PathLike] | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically, or to a fallback folder if that fails (see :func:`write_json_atomic`)."""
    target = Path(path)
    folders = [target.parent] + (
        [Path(d) for d in fallback_dirs] if fallback_dirs is not None else rescue_dirs(target.parent.name)
    )
    attempts: list[tuple[Path, OSError]] = []
    for k, folder in enumerate(folders):
        try:
            if k:
                folder = _fallback_folder(folder, target.name)
            dest = folder / target.name
            _write_replace(dest, data)
        except OSError as err:
            attempts.append((folder, err))
            log.warning("could not write %s in %s: %s", target.name, folder, err.strerror or err)
            continue
        if k:
            log.warning("%s written to %s instead of %s", target.name, dest, target.parent)
        return dest
    raise AtomicWriteError(target.name, attempts)


def _write_replace(dest: Path, data: bytes) -> None:
    tmp = temp_path(dest)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError:
        try:
            os.unlink(tmp)  # a partial temporary file (or a link someone placed there), never the target
        except OSError:
            pass
        raise
    _sync_dir(dest.parent)


def _fallback_folder(folder: Path, name: str) -> Path:
    """Create a fallback folder (a private one in the shared temporary folder); never reuse a taken name."""
    tmp_root = Path(tempfile.gettempdir())
    if tmp_root in folder.parents:  # shared with other users: our own private folder only
        private = tmp_root / folder.relative_to(tmp_root).parts[0]
        private.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(private)
        if (
            stat.S_ISLNK(st.st_mode)
            or not stat.S_ISDIR(st.st_mode)
            or (hasattr(os, "getuid") and st.st_uid != os.getuid())
        ):
            raise OSError(errno.EPERM, f"{private} is not a private folder of this user")
    candidate, n = folder, 1
    while (candidate / name).exists():  # an earlier session rescued a file of the same folder name
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def _sync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable(value: object) -> object:
    """Return a JSON-friendly stand-in for what :mod:`json` does not know (numpy values, paths, sets)."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)
