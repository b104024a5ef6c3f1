"""Reading an envelope dataclass from a pipeline's effective limits."""

from __future__ import annotations

from dataclasses import fields
from typing import cast


def envelope_from_limits(cls, env: dict[str, dict[str, object]], skip: tuple[str, ...] = ()):
    """Build envelope ``cls`` from :meth:`closedloop.config.ResolvedPipeline.envelope`.

    Every dataclass field (but ``sources`` and ``skip``) is read from the
    limit of the same name; ``sources`` collects every limit's source.

    Raises
    ------
    ValueError
        Naming the limits the envelope lacks.
    """
    names = [f.name for f in fields(cls) if f.name != "sources" and f.name not in skip]
    missing = [n for n in names if n not in env]
    if missing:
        raise ValueError(f"the envelope lacks {missing} for {cls.__name__}")
    values = {n: float(cast(float, env[n]["value"])) for n in names}
    return values, {n: str(lim["source"]) for n, lim in env.items()}
