"""Rule controller: stimulation on and off from conditions over several features (docs/pain-modelling.md).

``on_when`` and ``off_when`` (:mod:`closedloop.config.conditions`) combine
features, expressions and the ``pain_index`` with and/or/not; distinct
conditions give hysteresis, the onset and termination counts and blanking
work as in :class:`~closedloop.control.threshold.ThresholdController`.
"""

from __future__ import annotations

import math

from closedloop.config.controllers import RuleConfig
from closedloop.control.frame_usability import BAD_FLAGS
from closedloop.types import Command, Frame


class RuleController:
    """Switch stimulation on after ``onset`` frames of ``on_when``, off after ``termination`` frames of ``off_when``.

    A frame is unusable when it is flagged bad or a condition's answer
    depends on a NaN (a missing rating, a NaN ``pain_index``): it changes
    nothing (``on_bad_frame = "hold"``) or switches stimulation off
    (``"ramp_down"``, the safety layer ramping the current), and it resets
    the running count, so only *consecutive usable* frames count.
    """

    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self._on_cond = config.on_condition
        self._off_cond = config.off_condition
        self.on = False
        self._count = 0
        self._blank_until = -math.inf
        self.switches = 0
        self.bad_frames = 0
        self._idx: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._names: tuple[str, ...] | None = None

    def _values(self, frame: Frame, names: tuple[str, ...]) -> list[float]:
        if frame.names is not self._names:  # frames of one pipeline share one names tuple
            self._names = frame.names
            self._idx = {}
        idx = self._idx.get(names)
        if idx is None:
            idx = tuple(frame.names.index(n) for n in names)
            self._idx[names] = idx
        v = frame.values
        return [float(v[i]) for i in idx]

    def _decide(self, frame: Frame) -> bool | None:
        """Return whether the condition for a switch holds on this frame (None: it cannot be known)."""
        if self.on:
            if self._off_cond is not None:
                return self._off_cond.evaluate(self._values(frame, self._off_cond.names))
            held = self._on_cond.evaluate(self._values(frame, self._on_cond.names))
            return None if held is None else not held
        return self._on_cond.evaluate(self._values(frame, self._on_cond.names))

    def update(self, frame: Frame) -> Command:
        """Return the command this frame calls for."""
        c = self.config
        crossing = None if frame.flags & BAD_FLAGS else self._decide(frame)
        if crossing is None:
            self.bad_frames += 1
            self._count = 0
            if c.on_bad_frame == "ramp_down":
                self.on = False
        elif frame.time >= self._blank_until:
            self._count = self._count + 1 if crossing else 0
            if self._count >= (c.termination if self.on else c.onset):
                self.on = not self.on
                self._count = 0
                self.switches += 1
                self._blank_until = frame.time + c.blanking_s
        return Command(
            amplitude_mA=c.amplitude_mA if self.on else 0.0,
            frequency_Hz=c.frequency_Hz,
            on=self.on,
            time=frame.time,
        )

    def state(self) -> dict[str, float]:
        """Return the numbers describing the controller's state (recorded per frame)."""
        return {
            "on": float(self.on),
            "count": float(self._count),
            "switches": float(self.switches),
            "bad_frames": float(self.bad_frames),
        }

    def display_state(self) -> dict[str, float]:
        """Return what the operator may see."""
        return self.state()
