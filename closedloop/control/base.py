"""The controller contract: frames in, a desired command out (settings: :mod:`closedloop.config.controllers`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from closedloop.types import Command, Frame


@runtime_checkable
class Controller(Protocol):
    """A controller maps each frame to the command it wants.

    Controllers are plain, deterministic objects driven by frame time (the
    sample clock), so a replay reproduces a live session exactly. They never
    talk to a device: the safety layer decides what is applied.

    Controllers may also offer ``display_state() -> dict[str, float]``: what
    the operator may see (in a blinded session it does not reveal the arm);
    see :func:`display_state`.
    """

    def update(self, frame: Frame) -> Command:
        """Return the desired command after seeing ``frame``."""
        ...

    def state(self) -> dict[str, float]:
        """Numbers describing the controller's internal state (recorded per frame).

        The keys are the same from construction to the end of a session (a
        recording declares them before the first frame).
        """
        ...


def display_state(controller: Controller) -> dict[str, float]:
    """What the operator may see of ``controller`` (its ``display_state()``, else its ``state()``)."""
    fn = getattr(controller, "display_state", None)
    return fn() if callable(fn) else controller.state()
