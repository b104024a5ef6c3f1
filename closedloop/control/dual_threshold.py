"""Dual threshold (adaptive-DBS style, as on the Summit RC+S / Percept; docs/control.md).

With ``direction = "below"``: feature below ``lower`` → ramp toward
``amplitude_max_mA``; above ``upper`` → ramp toward ``amplitude_min_mA``;
between → hold the amplitude. ``direction = "above"`` swaps the roles (more
stimulation while the feature is high). RC+S example values (Front Neurosci
2021;15:732499, Table 1): ramp up 0.03 mA/s, down 0.12 mA/s, blanking 15 s.
"""

from __future__ import annotations

import math

from closedloop.config.controllers import DualThresholdConfig
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame

#: Ramp direction codes in ``state()``.
UP, HOLD, DOWN = 1.0, 0.0, -1.0


class DualThresholdController:
    """Ramp the amplitude up, down or hold it, from which side of two thresholds the feature is on.

    The amplitude is integrated on frame time: over the interval since the
    previous frame it moves at the rate of the direction then in force; the
    new frame then (after ``onset`` frames in a zone, outside blanking) sets
    the direction for the next interval.
    """

    def __init__(self, config: DualThresholdConfig) -> None:
        c = config
        self.config = c
        self.amplitude_mA = c.amplitude_min_mA if c.start_mA is None else c.start_mA
        self.direction = HOLD
        self._zone = HOLD
        self._count = 0
        self._blank_until = -math.inf
        self._t: float | None = None
        self._bad = False
        self.changes = 0

    def _zone_of(self, x: float) -> float:
        c = self.config
        low, high = x < c.lower, x > c.upper
        if c.direction == "below":
            return UP if low else DOWN if high else HOLD
        return UP if high else DOWN if low else HOLD

    def _integrate(self, dt: float) -> None:
        c = self.config
        a = self.amplitude_mA
        if self._bad:
            if c.on_bad_frame == "ramp_down":
                self.amplitude_mA = _toward(a, 0.0, c.ramp_up_mA_per_s, c.ramp_down_mA_per_s, dt)
        elif self.direction == UP:
            self.amplitude_mA = _toward(a, c.amplitude_max_mA, c.ramp_up_mA_per_s, c.ramp_down_mA_per_s, dt)
        elif self.direction == DOWN:
            self.amplitude_mA = _toward(a, c.amplitude_min_mA, c.ramp_up_mA_per_s, c.ramp_down_mA_per_s, dt)

    def update(self, frame: Frame) -> Command:
        c = self.config
        dt = 0.0 if self._t is None else max(0.0, frame.time - self._t)
        self._t = frame.time if self._t is None else max(self._t, frame.time)
        self._integrate(dt)
        x = frame[c.feature]
        self._bad = not usable(frame, x)
        if not self._bad and frame.time >= self._blank_until:
            zone = self._zone_of(x)
            self._count = self._count + 1 if zone == self._zone else 1
            self._zone = zone
            if zone != self.direction and self._count >= c.onset:
                self.direction = zone
                self.changes += 1
                self._blank_until = frame.time + c.blanking_s
        a = self.amplitude_mA
        return Command(amplitude_mA=a, frequency_Hz=c.frequency_Hz, on=a > 0.0, time=frame.time)

    def state(self) -> dict[str, float]:
        return {
            "amplitude_mA": self.amplitude_mA,
            "direction": self.direction,
            "zone": self._zone,
            "count": float(self._count),
            "changes": float(self.changes),
            "bad": float(self._bad),
        }

    def display_state(self) -> dict[str, float]:
        return self.state()


def _toward(a: float, target: float, up: float, down: float, dt: float) -> float:
    """Move ``a`` toward ``target`` by at most ``up·dt`` (rising) or ``down·dt`` (falling)."""
    return min(target, a + up * dt) if target > a else max(target, a - down * dt)
