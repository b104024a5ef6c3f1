"""Protocol emulators of real stimulators, for tests and demos.

Each emulator plays the *device* side of a link — a pseudo-terminal or a TCP
socket on 127.0.0.1 — on a background thread, keeps the device's state
(armed, amplitude, trains fired …) for assertions, and can inject faults:
``"no_reply"``, ``"bad_crc"`` (a garbled reply), ``"error"`` (the device
refuses) and ``"disconnect"``.

Run one for a demo session, e.g.::

    python -m closedloop.adapters.emulators.nic2 --port 1235
    python -m closedloop.adapters.emulators.magstim --tcp 5001
    python -m closedloop.adapters.emulators.magpro --tcp 5002
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "FAULT_KINDS": "base",
    "StreamEmulator": "base",
    "MagProEmulator": "magpro",
    "MagstimEmulator": "magstim",
    "NIC2Emulator": "nic2",
}


def __getattr__(name: str) -> Any:  # imported on first use, so that `python -m ...nic2` runs cleanly
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
