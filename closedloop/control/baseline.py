"""Thresholds or targets from a calibration block at the start of a session.

For ``duration_s`` of frame time from the first frame the controller only
listens (stimulation off) and collects the feature from usable frames. Then
it sets the ``inner`` controller's thresholds/target from that baseline and
hands every later frame to it. Specifications (the 25th/75th percentiles are
closedloop's starting point, not a literature rule: docs/control.md)::

    "p25"    25th percentile (numpy's linear interpolation)
    "median" 50th percentile
    "z+1.5"  mean + 1.5 standard deviations (population SD)
    "mean"   mean (= "z0")

In a pipeline::

    [controller]
    kind = "baseline"
    duration_s = 120.0
    derive = { lower = "p25", upper = "p75" }

    [controller.inner]          # any controller; the derived keys are left out
    kind = "dual_threshold"
    feature = "theta_alpha"
    ...
"""

from __future__ import annotations

import math

import numpy as np

from closedloop.config.controllers import BaselineControllerConfig, baseline_value, validate_inner
from closedloop.control.base import Controller, display_state
from closedloop.control.dual_threshold import DualThresholdController
from closedloop.control.frame_usability import usable
from closedloop.control.pi import PIController
from closedloop.control.schedule import ScheduleController
from closedloop.control.threshold import ThresholdController
from closedloop.types import Command, Frame

#: The controllers a baseline may wrap, by kind.
INNER_CONTROLLERS = {
    "threshold": ThresholdController,
    "dual_threshold": DualThresholdController,
    "pi": PIController,
    "schedule": ScheduleController,
}


def _build_inner(config) -> Controller:
    return INNER_CONTROLLERS[config.kind](config)


class BaselineController:
    """Listen for ``duration_s``, derive the inner controller's thresholds, then delegate to it.

    If the derived values are invalid for the inner controller (e.g. a
    ``lower`` above ``upper`` from mixed statistics) stimulation stays off for
    the session and ``state()["baseline_failed"]`` is 1.
    """

    def __init__(self, config: BaselineControllerConfig) -> None:
        self.config = config
        self.feature = config.baseline_feature()
        self.inner = _build_inner(config.placeholder)
        self._inner_keys = list(self.inner.state())
        self._values: list[float] = []
        self._t0: float | None = None
        self.calibrated = False
        self.failure = ""
        self.derived = {k: math.nan for k in config.derive}
        freqs = config.placeholder.frequencies_Hz()
        self._frequency = freqs[0] if freqs else 0.0

    def update(self, frame: Frame) -> Command:
        """Return the command this frame calls for."""
        if self.calibrated and not self.failure:
            return self.inner.update(frame)
        if not self.calibrated:
            if self._t0 is None:
                self._t0 = frame.time
            x = frame[self.feature]
            if usable(frame, x):
                self._values.append(x)
            if frame.time - self._t0 >= self.config.duration_s and len(self._values) >= self.config.min_frames:
                self._finish()
        return Command(0.0, self._frequency, False, frame.time)

    def _finish(self) -> None:
        values = np.asarray(self._values, dtype=float)
        self.derived = {k: baseline_value(values, s) for k, s in self.config.derive.items()}
        self.calibrated = True
        try:
            cfg = validate_inner({**self.config.inner, **self.derived})
        except ValueError as e:
            self.failure = f"derived values {self.derived} are invalid: {e}"
            return
        self.inner = _build_inner(cfg)

    def state(self) -> dict[str, float]:
        """Return the numbers describing the controller's state (recorded per frame)."""
        out = {
            "calibrating": float(not self.calibrated),
            "baseline_n": float(len(self._values)),
            "baseline_failed": float(bool(self.failure)),
        }
        out.update({f"baseline_{k}": v for k, v in self.derived.items()})
        running = self.calibrated and not self.failure
        inner = self.inner.state() if running else {}
        out.update({f"inner_{k}": inner.get(k, math.nan) for k in self._inner_keys})
        return out

    def display_state(self) -> dict[str, float]:
        """Return what the operator may see."""
        out = {
            "calibrating": float(not self.calibrated),
            "baseline_n": float(len(self._values)),
            "baseline_failed": float(bool(self.failure)),
        }
        if self.calibrated and not self.failure:
            out.update({f"inner_{k}": v for k, v in display_state(self.inner).items()})
        return out
