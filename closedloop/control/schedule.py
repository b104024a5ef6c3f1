"""Open-loop blocks and sham: the comparison arms of a closed-loop study (docs/control.md).

Time runs on the frame clock from the first frame: after ``start_s``,
on-blocks of ``on_s`` alternate with off-blocks of ``off_s`` (``cycles``
times, or until the session ends).

- ``arm = "active"``: each on-block ramps up over ``ramp_s``, holds
  ``amplitude_mA`` and ramps down over ``ramp_s`` at its end.
- ``arm = "sham"``: each on-block ramps up over ``ramp_s``, holds
  ``sham_hold_s``, ramps down — then nothing; with ``sham_end_ramp`` the same
  short ramp up and down is repeated at the end of the block, where the
  active arm ramps down, so both arms feel alike at both ends.

Both arms report ``on`` for the whole on-block. With ``blinded = true``,
:meth:`ScheduleController.display_state` shows only the block timing, never
the arm or the amplitude; :meth:`ScheduleController.state` (recorded) has both.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from closedloop.control.base import ControllerConfigBase, OnBadFrame
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame


class ScheduleConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "schedule"``."""

    kind: Literal["schedule"] = "schedule"
    arm: Literal["active", "sham"] = Field("active", description="'active' (open-loop) or 'sham'")
    blinded: bool = Field(False, description="hide the arm from the operator display and console")
    amplitude_mA: float = Field(gt=0, description="amplitude of the active arm (and peak of the sham ramps)")
    frequency_Hz: float = Field(ge=0, description="stimulation frequency (0 = tDCS)")
    start_s: float = Field(0.0, ge=0, description="delay from the first frame to the first on-block (s)")
    on_s: float = Field(gt=0, description="length of each on-block, ramps included (s)")
    off_s: float = Field(0.0, ge=0, description="length of each off-block (s)")
    cycles: int | None = Field(None, ge=1, description="number of on/off cycles (default: until the session ends)")
    ramp_s: float = Field(10.0, ge=0, description="ramp up at the start and down at the end of each on-block (s)")
    sham_hold_s: float = Field(0.0, ge=0, description="sham: time at full amplitude between its ramps (s)")
    sham_end_ramp: bool = Field(True, description="sham: repeat the ramps at the end of each on-block")
    feature: str | None = Field(None, description="feature whose quality flags count (on_bad_frame = 'ramp_down')")
    on_bad_frame: OnBadFrame = Field("hold", description="'hold': ignore frame quality; 'ramp_down': 0 on bad frames")

    @model_validator(mode="after")
    def _fits(self) -> ScheduleConfig:
        if 2 * self.ramp_s > self.on_s:
            raise ValueError(f"controller.ramp_s: two ramps of {self.ramp_s} s do not fit an on-block of {self.on_s} s")
        sham = (2 * self.ramp_s + self.sham_hold_s) * (2 if self.sham_end_ramp else 1)
        if self.arm == "sham" and sham > self.on_s:
            raise ValueError(
                f"controller.sham_hold_s: the sham ramps ({sham} s) do not fit an on-block of {self.on_s} s"
            )
        if self.on_bad_frame == "ramp_down" and self.feature is None:
            raise ValueError("controller.feature: on_bad_frame = 'ramp_down' needs the feature whose quality counts")
        return self

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        return {"ramp_s": self.amplitude_mA / self.ramp_s if self.ramp_s > 0 else math.inf}


class ScheduleController:
    """Follow an on/off block schedule (active or sham arm) on frame time."""

    def __init__(self, config: ScheduleConfig) -> None:
        self.config = config
        self._t0: float | None = None
        self.block = -1  # index of the current on/off cycle (-1 before the first)
        self.in_on_block = False
        self.block_elapsed_s = 0.0
        self.amplitude_mA = 0.0
        self.finished = False

    def _profile(self, tau: float) -> float:
        """Amplitude ``tau`` seconds into an on-block."""
        c = self.config
        a, r = c.amplitude_mA, c.ramp_s
        if c.arm == "active":
            return a if r == 0 else a * max(0.0, min(1.0, tau / r, (c.on_s - tau) / r))
        burst = 2 * r + c.sham_hold_s

        def bump(x: float) -> float:  # ramp up, hold, ramp down over `burst` seconds
            if not 0.0 <= x < burst:
                return 0.0
            return a if r == 0 else a * max(0.0, min(1.0, x / r, (burst - x) / r))

        level = bump(tau)
        if c.sham_end_ramp:
            level = max(level, bump(tau - (c.on_s - burst)))
        return level

    def update(self, frame: Frame) -> Command:
        c = self.config
        if self._t0 is None:
            self._t0 = frame.time
        t = frame.time - self._t0 - c.start_s
        period = c.on_s + c.off_s
        self.in_on_block = False
        self.amplitude_mA = 0.0
        if t >= 0:
            k = int(t // period)
            if c.cycles is not None and k >= c.cycles:
                self.finished = True
                self.block = c.cycles - 1
                self.block_elapsed_s = t - self.block * period
            else:
                self.block = k
                self.block_elapsed_s = t - k * period
                if self.block_elapsed_s < c.on_s:
                    self.in_on_block = True
                    self.amplitude_mA = self._profile(self.block_elapsed_s)
        if c.on_bad_frame == "ramp_down" and not usable(frame, frame[c.feature]):
            self.amplitude_mA = 0.0
        return Command(
            amplitude_mA=self.amplitude_mA, frequency_Hz=c.frequency_Hz, on=self.in_on_block, time=frame.time
        )

    def state(self) -> dict[str, float]:
        """Recorded: the arm (1 = active, 0 = sham), block timing and the requested amplitude."""
        return {
            "arm_active": 1.0 if self.config.arm == "active" else 0.0,
            "block": float(self.block),
            "in_on_block": float(self.in_on_block),
            "block_elapsed_s": self.block_elapsed_s,
            "amplitude_mA": self.amplitude_mA,
            "finished": float(self.finished),
        }

    def display_state(self) -> dict[str, float]:
        """For the operator: in a blinded session only the block timing (identical for both arms)."""
        if not self.config.blinded:
            return self.state()
        return {
            "block": float(self.block),
            "in_on_block": float(self.in_on_block),
            "block_elapsed_s": self.block_elapsed_s,
            "finished": float(self.finished),
        }
