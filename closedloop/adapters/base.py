"""The adapter contract: the last step before a stimulator."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from closedloop.types import Command


class LimitViolation(RuntimeError):
    """An adapter refused a command outside the device profile (defence in depth)."""


@runtime_checkable
class Adapter(Protocol):
    """Speaks one stimulator's protocol and re-checks the profile's limits."""

    def connect(self) -> None: ...

    def apply(self, command: Command, now: float) -> None:
        """Send ``command``; refuse (raise :class:`LimitViolation`) if outside the profile."""
        ...

    def stop(self) -> None:
        """Drive the device to its safe state (output off) and disconnect."""
        ...

    def status(self) -> dict[str, object]: ...
