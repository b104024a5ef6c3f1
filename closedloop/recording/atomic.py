"""Write small result files so that they survive: atomically, with a fallback folder."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def write_json_atomic(path: str | os.PathLike, obj: object, fallback_dirs: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temp file, fsync, rename); return where it landed.

    On any write error the document goes to ``path.name`` in the first
    fallback folder that takes it. Raises the last error if none does.
    """
    text = json.dumps(obj, indent=2, default=str)
    target = Path(path)
    last: OSError | None = None
    for folder in [target.parent, *map(Path, fallback_dirs)]:
        try:
            if folder != target.parent:  # a session folder that went away is not made again
                folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{target.name}.partial"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            final = folder / target.name
            os.replace(tmp, final)
            return final
        except OSError as err:
            last = err
    raise last if last is not None else OSError(f"cannot write {target}")


def rescue_dirs(folder_name: str) -> list[Path]:
    """Return the fallback folders for a session's files: a per-user state folder, then the temp folder."""
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return [
        state / "closedloop" / "rescued" / folder_name,
        Path(tempfile.gettempdir()) / "closedloop-rescued" / folder_name,
    ]
