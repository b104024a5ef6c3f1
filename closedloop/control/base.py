"""The controller contract: frames in, a desired command out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from closedloop.types import Command, Frame


@runtime_checkable
class Controller(Protocol):
    """A controller maps each frame to the command it wants.

    Controllers are plain, deterministic objects driven by frame time (the
    sample clock), so a replay reproduces a live session exactly. They never
    talk to a device: the safety layer decides what is applied.
    """

    def update(self, frame: Frame) -> Command:
        """Return the desired command after seeing ``frame``."""
        ...

    def state(self) -> dict[str, float]:
        """Numbers describing the controller's internal state (recorded per frame)."""
        ...
