"""Single threshold with hysteresis (aDBS style, docs/control.md)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from closedloop.control.base import ControllerConfigBase, OnBadFrame
from closedloop.control.frame_usability import BAD_FLAGS, usable
from closedloop.types import Command, Frame

__all__ = ["BAD_FLAGS", "ThresholdConfig", "ThresholdController"]


class ThresholdConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "threshold"``."""

    kind: Literal["threshold"] = "threshold"
    feature: str = Field(description="name of the feature the thresholds apply to")
    lower: float = Field(description="stimulation switches on below this (direction='below')")
    upper: float = Field(description="stimulation switches off above this (direction='below')")
    direction: Literal["below", "above"] = Field(
        "below", description="'below': stimulate while the feature is low; 'above': while high"
    )
    amplitude_mA: float = Field(gt=0, description="amplitude requested while on")
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    onset: int = Field(1, ge=1, description="consecutive frames past the on-threshold to switch on")
    termination: int = Field(1, ge=1, description="consecutive frames past the off-threshold to switch off")
    blanking_s: float = Field(0.0, ge=0, description="frames ignored after each state change (s)")
    on_bad_frame: OnBadFrame = Field("hold", description="'hold' the state, or 'ramp_down' (switch off)")

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdConfig:
        if not self.lower <= self.upper:
            raise ValueError(f"controller.lower ({self.lower}) must be <= controller.upper ({self.upper})")
        return self


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

    def _wants_on(self, x: float) -> bool:
        c = self.config
        return x < c.lower if c.direction == "below" else x > c.upper

    def _wants_off(self, x: float) -> bool:
        c = self.config
        return x > c.upper if c.direction == "below" else x < c.lower

    def update(self, frame: Frame) -> Command:
        c = self.config
        x = frame[c.feature]
        if not usable(frame, x):
            self.bad_frames += 1
            if c.on_bad_frame == "ramp_down":
                self.on = False
                self._count = 0
        elif frame.time >= self._blank_until:
            crossing = self._wants_off(x) if self.on else self._wants_on(x)
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
        return {"on": float(self.on), "count": float(self._count), "switches": float(self.switches)}

    def display_state(self) -> dict[str, float]:
        return self.state()
