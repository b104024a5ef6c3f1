"""Triggered stimulation: fire one rTMS train or start one TUS sonication when a feature crosses a threshold.

The controller is deterministic on frame time (the sample clock): after
``onset`` consecutive usable frames past ``threshold`` it emits exactly one
command with ``fire=True`` carrying the configured train or
sonication, then waits ``refractory_s`` (frame time, from that fire) before
it may fire again, up to ``max_count`` fires. The safety layer still decides
whether each request is allowed (train table, inter-train interval, pause,
dose).

Command conventions (see :mod:`closedloop.adapters.command_checks`):

- rTMS: ``frequency_Hz`` = train rate; ``extra`` = ``intensity_pct`` (%MT),
  ``pulses``, ``train_duration_s``; ``fire`` on the command that asks for the
  train. Frames between fires ask for
  nothing (``on=False``); the layer reports a running train as ``on``.
- TUS (the convention of :mod:`closedloop.safety.tus`): a sonication is on
  while the command is ``on``; the fire command starts it and the controller
  keeps asking for it (``on=True``, ``fire=False``) for ``sonication.duration_s``
  of frame time, then switches it off.
"""

from __future__ import annotations

import math

from closedloop.config.controllers import RTMSTriggerConfig, TUSTriggerConfig
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame

__all__ = ["TriggerController"]


class TriggerController:
    """Emit one fire command per threshold crossing, with onset count, refractory period and a cap.

    Parameters
    ----------
    config : RTMSTriggerConfig or TUSTriggerConfig
        The ``[controller]`` section.

    Notes
    -----
    The onset count restarts after every fire, so a feature that stays past
    the threshold fires again once the refractory period is over. A bad frame
    (flagged or non-finite) resets the count; with ``on_bad_frame =
    "ramp_down"`` it also ends a running TUS sonication.
    """

    def __init__(self, config: RTMSTriggerConfig | TUSTriggerConfig) -> None:
        self.config = config
        self.fires = 0
        self.bad_frames = 0
        self._count = 0
        self._last_fire = -math.inf
        self._sonicate_until = -math.inf
        self._extra = config.fire_extra()
        self._rate = float(config.rate_Hz)
        self._sonication_s = config.sonication.duration_s if isinstance(config, TUSTriggerConfig) else 0.0

    def _past(self, x: float) -> bool:
        c = self.config
        return x > c.threshold if c.direction == "above" else x < c.threshold

    def update(self, frame: Frame) -> Command:
        c = self.config
        t = frame.time
        x = frame[c.feature]
        fire = False
        if not usable(frame, x):
            self.bad_frames += 1
            self._count = 0
            if c.on_bad_frame == "ramp_down":
                self._sonicate_until = -math.inf
        else:
            self._count = self._count + 1 if self._past(x) else 0
            capped = c.max_count is not None and self.fires >= c.max_count
            if self._count >= c.onset and t - self._last_fire >= c.refractory_s and not capped:
                fire = True
                self.fires += 1
                self._count = 0
                self._last_fire = t
                if c.modality == "tus":
                    self._sonicate_until = t + self._sonication_s
        if fire:
            return Command(0.0, self._rate, True, t, dict(self._extra), fire=True)
        if c.modality == "tus" and t < self._sonicate_until:
            return Command(0.0, self._rate, True, t, dict(self._extra))
        return Command(0.0, self._rate, False, t, dict(self._extra))

    def state(self) -> dict[str, float]:
        return {
            "fires": float(self.fires),
            "count": float(self._count),
            "last_fire": self._last_fire if math.isfinite(self._last_fire) else math.nan,
        }

    def display_state(self) -> dict[str, float]:
        return self.state()
