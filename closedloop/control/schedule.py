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

from closedloop.config.controllers import ScheduleConfig
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame


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
        """Return the command this frame calls for."""
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
        if c.on_bad_frame == "ramp_down" and c.feature is not None and not usable(frame, frame[c.feature]):
            self.amplitude_mA = 0.0
        return Command(
            amplitude_mA=self.amplitude_mA, frequency_Hz=c.frequency_Hz, on=self.in_on_block, time=frame.time
        )

    def state(self) -> dict[str, float]:
        """Return the recorded state: the arm (1 = active, 0 = sham), block timing and the requested amplitude."""
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
