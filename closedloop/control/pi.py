"""PI(D) control of a feature toward a target (docs/control.md).

``e = r − y`` (sign flipped with ``direction = "lower"``, when stimulation
lowers the feature). Every ``update_interval_s`` of frame time the output
target is ``u = bias + kp·e + I + D``, clipped to the amplitude range; the
command follows it at ``slew_mA_per_s``. The integrator ``I += ki·e·Δt``

- is frozen on flagged frames, during ramps (while the command is further
  from ``u`` than it can move in one update interval: the start, large
  steps) and for ``blanking_s`` after each ramp ends;
- integrates only toward the inside of the output range (conditional
  integration) and is clamped to what the output range can use (anti-windup).

The derivative acts on the measurement (no kick when the target changes);
``kd = 0`` (the default) makes it a PI controller.
"""

from __future__ import annotations

import math

from closedloop.config.controllers import PIConfig
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame


class PIController:
    """PI(D) toward ``target`` with anti-windup, a frozen integrator and a slew-limited output."""

    #: ``frozen`` codes in ``state()``.
    FROZEN_BAD, FROZEN_RAMP, FROZEN_BLANK, FROZEN_SATURATED = 1.0, 2.0, 3.0, 4.0

    def __init__(self, config: PIConfig) -> None:
        self.config = config
        c = config
        self.integral = 0.0
        self.u = c.bias_mA  # unconstrained target of the command (after clipping)
        self.amplitude_mA = 0.0  # the slew-limited command
        self.error = math.nan
        self.frozen = 0.0  # why the integrator did not move on the last update (0 = it moved)
        self._t: float | None = None
        self._t_update: float | None = None
        self._y_prev = math.nan
        self._blank_until = -math.inf
        self._ramping = False
        self._bad = False

    def update(self, frame: Frame) -> Command:
        c = self.config
        t = frame.time
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t if self._t is None else max(self._t, t)
        y = frame[c.feature]
        self._bad = not usable(frame, y)
        if self._bad:
            self.frozen = self.FROZEN_BAD
            target = 0.0 if c.on_bad_frame == "ramp_down" else self.amplitude_mA
            self._slew(target, dt, t)
        else:
            if self._t_update is None or t - self._t_update >= c.update_interval_s:
                self._pi(y, t)
            self._slew(self.u, dt, t)
        a = self.amplitude_mA
        return Command(amplitude_mA=a, frequency_Hz=c.frequency_Hz, on=a > 0.0, time=t)

    def _pi(self, y: float, t: float) -> None:
        c = self.config
        sign = 1.0 if c.direction == "raise" else -1.0
        e = sign * (c.target - y)
        h = 0.0 if self._t_update is None else t - self._t_update
        u_free = c.bias_mA + c.kp * e + self.integral
        if self._ramping:
            self.frozen = self.FROZEN_RAMP
        elif t < self._blank_until:
            self.frozen = self.FROZEN_BLANK
        elif (u_free >= c.amplitude_max_mA and e > 0) or (u_free <= c.amplitude_min_mA and e < 0):
            self.frozen = self.FROZEN_SATURATED  # conditional integration
        else:
            self.frozen = 0.0
            self.integral += c.ki * e * h
            lo, hi = c.amplitude_min_mA - c.bias_mA, c.amplitude_max_mA - c.bias_mA
            self.integral = min(hi, max(lo, self.integral))
        d = 0.0
        if c.kd > 0 and h > 0 and math.isfinite(self._y_prev):
            d = -sign * c.kd * (y - self._y_prev) / h
        self.u = min(c.amplitude_max_mA, max(c.amplitude_min_mA, c.bias_mA + c.kp * e + self.integral + d))
        self.error = e
        self._y_prev = y
        self._t_update = t

    def _slew(self, target: float, dt: float, t: float) -> None:
        c = self.config
        a = self.amplitude_mA
        step = c.slew_mA_per_s * dt
        a = min(target, a + step) if target > a else max(target, a - step)
        # a ramp: the command is further from its target than it can move in one update interval
        ramping = abs(target - a) > max(1e-12, c.slew_mA_per_s * c.update_interval_s)
        if self._ramping and not ramping:
            self._blank_until = t + self.config.blanking_s
        self._ramping = ramping
        self.amplitude_mA = a

    def state(self) -> dict[str, float]:
        return {
            "amplitude_mA": self.amplitude_mA,
            "u_mA": self.u,
            "error": self.error,
            "integral_mA": self.integral,
            "frozen": self.frozen,
            "ramping": float(self._ramping),
            "bad": float(self._bad),
        }

    def display_state(self) -> dict[str, float]:
        return self.state()
