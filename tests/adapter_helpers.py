"""Helpers shared by the adapter tests: polling, a trigger-box sink, and an adapter factory that cleans up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from closedloop.adapters import build_adapter
from closedloop.adapters.emulators.base import StreamEmulator
from closedloop.config.profile import load_profile


def wait_for(pred: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``pred`` every 10 ms until it holds or ``timeout`` s pass; return its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class ByteSink(StreamEmulator):
    """A USB trigger box: records every byte it receives (one TTL pulse each), answers nothing."""

    def parse(self, buf: bytearray) -> list[bytes]:
        out = [bytes([b]) for b in buf]
        buf.clear()
        return out

    def execute(self, msg: bytes) -> bytes | None:
        return None


@contextmanager
def adapter_maker(
    profile_path: Path, defaults: Mapping[str, Any] | Callable[[], Mapping[str, Any]], **build_kwargs: Any
) -> Iterator[Callable[..., Any]]:
    """Yield ``make(**options)``: an adapter for the profile, its options overridden; stop them all at the end.

    Options are the profile's ``[adapter_options]``, then ``defaults`` (a
    mapping, or a callable giving a fresh one for each adapter), then
    ``options``; ``build_kwargs`` go to :func:`build_adapter`.
    """
    made = []

    def make(**options: Any) -> Any:
        prof = load_profile(profile_path)
        fixed = defaults() if callable(defaults) else defaults
        opts = {**prof.adapter_options, **fixed, **options}
        adapter = build_adapter(prof.model_copy(update={"adapter_options": opts}), **build_kwargs)
        made.append(adapter)
        return adapter

    try:
        yield make
    finally:
        for a in made:
            a.stop()
