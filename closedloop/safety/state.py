"""The stimulation state machine: idle → armed → stimulating → ramping down → stopped."""

from __future__ import annotations

import enum


class StimState(enum.StrEnum):
    """Where a stimulation session stands.

    ``IDLE``: nothing may be applied until the layer is armed.
    ``ARMED``: stimulation may start; nothing is being applied.
    ``STIMULATING``: something is being applied (current, a train, a sonication).
    ``RAMPING_DOWN``: a stop was latched; the output goes to zero and cannot rise.
    ``STOPPED``: terminal; nothing is applied any more.
    """

    IDLE = "idle"
    ARMED = "armed"
    STIMULATING = "stimulating"
    RAMPING_DOWN = "ramping_down"
    STOPPED = "stopped"


#: Allowed transitions; anything else is a programming error.
TRANSITIONS: dict[StimState, frozenset[StimState]] = {
    StimState.IDLE: frozenset({StimState.ARMED, StimState.STOPPED}),
    StimState.ARMED: frozenset({StimState.STIMULATING, StimState.RAMPING_DOWN, StimState.STOPPED}),
    StimState.STIMULATING: frozenset({StimState.ARMED, StimState.RAMPING_DOWN, StimState.STOPPED}),
    StimState.RAMPING_DOWN: frozenset({StimState.STOPPED}),
    StimState.STOPPED: frozenset(),
}


# the members as plain module names: ``StimState.X`` is an enum-class lookup (~0.15 µs), on every frame
IDLE, ARMED, STIMULATING, RAMPING_DOWN, STOPPED = (
    StimState.IDLE,
    StimState.ARMED,
    StimState.STIMULATING,
    StimState.RAMPING_DOWN,
    StimState.STOPPED,
)


class IllegalTransition(RuntimeError):
    """A transition the state machine does not allow was attempted."""


class StateMachine:
    """Hold the current :class:`StimState` and allow only the transitions in :data:`TRANSITIONS`."""

    def __init__(self) -> None:
        self.state = StimState.IDLE

    @property
    def may_stimulate(self) -> bool:
        """Whether output may rise (armed or stimulating)."""
        s = self.state
        return s is ARMED or s is STIMULATING

    @property
    def latched(self) -> bool:
        """Whether a stop has been latched (ramping down or stopped)."""
        s = self.state
        return s is RAMPING_DOWN or s is STOPPED

    def go(self, new: StimState) -> bool:
        """Move to ``new``; return whether the state changed.

        Raises
        ------
        IllegalTransition
            If the move is not in :data:`TRANSITIONS`.
        """
        if new == self.state:
            return False
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.value} → {new.value} is not allowed")
        self.state = new
        return True
