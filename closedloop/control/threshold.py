"""Single threshold with hysteresis (aDBS style, docs/control.md)."""

from __future__ import annotations

import math

from closedloop.config.controllers import ThresholdConfig
from closedloop.control.frame_usability import BAD_FLAGS, usable
from closedloop.types import Command, Frame

__all__ = ["BAD_FLAGS", "ThresholdController"]


class ThresholdController:
    """Switch stimulation on and off with hysteresis, onset/termination counts and blanking.

    With ``direction="below"`` stimulation switches on after ``onset``
    consecutive frames with the feature below ``lower`` and off after
    ``termination`` consecutive frames above ``upper``; ``"above"`` mirrors
    this. After each switch, frames within ``blanking_s`` of frame time are
    ignored. A flagged or non-finite frame changes nothing (``on_bad_frame =
    "hold"``) or switches stimulation off (``"ramp_down"``; the safety layer
    ramps the current down) without counting as a switch.
    """

    def __init__(self, config: ThresholdConfig) -> None:
        self.config = config
        self.on = False
        self._count = 0
        self._blank_until = -math.inf
        self.switches = 0
        self.bad_frames = 0
        self._names: tuple[str, ...] | None = None  # the frames' names the feature's index was found in
        self._index = 0

    def update(self, frame: Frame) -> Command:
        """Return the command this frame calls for."""
        c = self.config
        if frame.names is not self._names:  # found once per names tuple, not per frame
            x = frame[c.feature]  # KeyError naming the feature when it is missing
            self._names, self._index = frame.names, frame.names.index(c.feature)
        else:
            x = float(frame.values[self._index])
        if not usable(frame, x):
            self.bad_frames += 1
            if c.on_bad_frame == "ramp_down":
                self.on = False
                self._count = 0
        elif frame.time >= self._blank_until:
            # wants off / wants on, inline (a method call per frame costs more than the comparison)
            if c.direction == "below":
                crossing = x > c.upper if self.on else x < c.lower
            else:
                crossing = x < c.lower if self.on else x > c.upper
            self._count = self._count + 1 if crossing else 0
            if self._count >= (c.termination if self.on else c.onset):
                self.on = not self.on
                self._count = 0
                self.switches += 1
                self._blank_until = frame.time + c.blanking_s
        on = self.on
        return Command(c.amplitude_mA if on else 0.0, c.frequency_Hz, on, frame.time)

    def state(self) -> dict[str, float]:
        """Return the numbers describing the controller's state (recorded per frame)."""
        return {"on": float(self.on), "count": float(self._count), "switches": float(self.switches)}

    def display_state(self) -> dict[str, float]:
        """Return what the operator may see."""
        return self.state()
