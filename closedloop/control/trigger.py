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
  ``pulses``, ``train_duration_s``, ``fire``. Frames between fires ask for
  nothing (``on=False``); the layer reports a running train as ``on``.
- TUS (the convention of :mod:`closedloop.safety.tus`): a sonication is on
  while the command is ``on``; the fire command starts it and the controller
  keeps asking for it (``on=True``, ``fire=0``) for ``sonication_s`` of frame
  time, then switches it off.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from closedloop.control.base import ControllerConfigBase, OnBadFrame
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame

if TYPE_CHECKING:
    from closedloop.config.profile import DeviceProfile

__all__ = ["TriggerConfig", "TriggerController"]

_TUS_KEYS = ("pnp_MPa", "center_frequency_MHz", "isppa_W_per_cm2", "duty_cycle", "prf_Hz", "burst_s")


class TriggerConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "trigger"``."""

    kind: Literal["trigger"] = "trigger"
    modality: Literal["rtms", "tus"] = Field(description="what a fire delivers: an rTMS train or a TUS sonication")
    feature: str = Field(description="name of the feature compared with the threshold")
    threshold: float = Field(description="fire when the feature is past this value")
    direction: Literal["above", "below"] = Field("above", description="'above': fire on high values; 'below': on low")
    onset: int = Field(1, ge=1, description="consecutive usable frames past the threshold before a fire")
    refractory_s: float = Field(gt=0, description="minimum frame time from one fire to the next (s)")
    max_count: int | None = Field(None, ge=1, description="fires allowed per session (none: no cap)")
    on_bad_frame: OnBadFrame = Field(
        "hold",
        description="'hold' (a bad frame resets the onset count) or 'ramp_down' (also ends a running TUS sonication)",
    )
    # rTMS train
    frequency_Hz: float | None = Field(None, gt=0, description="rTMS train rate (Hz)")
    intensity_pct: float | None = Field(None, gt=0, description="rTMS intensity (% of resting motor threshold)")
    pulses: int | None = Field(None, ge=1, description="rTMS pulses per train")
    train_duration_s: float | None = Field(None, gt=0, description="rTMS train length (s) = pulses / rate")
    # TUS sonication
    pnp_MPa: float | None = Field(None, gt=0, description="TUS in-situ peak negative pressure (MPa)")
    center_frequency_MHz: float | None = Field(None, gt=0, description="TUS centre frequency (MHz)")
    isppa_W_per_cm2: float | None = Field(None, gt=0, description="TUS in-situ I_SPPA (W/cm²)")
    duty_cycle: float | None = Field(None, gt=0, le=1, description="TUS duty cycle = burst_s × prf_Hz")
    prf_Hz: float | None = Field(None, gt=0, description="TUS pulse repetition frequency (Hz)")
    burst_s: float | None = Field(None, gt=0, description="TUS pulse (burst) length (s)")
    sonication_s: float | None = Field(None, gt=0, description="TUS sonication length started by one fire (s)")

    @model_validator(mode="after")
    def _complete(self) -> TriggerConfig:
        rtms = ("frequency_Hz", "intensity_pct", "pulses", "train_duration_s")
        tus = _TUS_KEYS + ("sonication_s",)
        need, other = (rtms, tus) if self.modality == "rtms" else (tus, rtms)
        missing = [k for k in need if getattr(self, k) is None]
        if self.modality == "rtms" and (self.pulses is not None or self.train_duration_s is not None):
            missing = [k for k in missing if k not in ("pulses", "train_duration_s")]  # one of them is enough
        if missing:
            raise ValueError(f"controller: modality {self.modality!r} needs {', '.join(missing)}")
        extra = [k for k in other if getattr(self, k) is not None]
        if extra:
            raise ValueError(f"controller.{extra[0]}: not used for modality {self.modality!r}; remove it")
        if self.modality == "tus" and self.sonication_s >= self.refractory_s:
            raise ValueError(
                f"controller.refractory_s ({self.refractory_s}) must exceed controller.sonication_s "
                f"({self.sonication_s})"
            )
        return self

    def modalities(self) -> tuple[str, ...]:
        return (self.modality,)

    def peak_amplitude_mA(self) -> float | None:
        return None

    def frequencies_Hz(self) -> list[float]:
        return [] if self.frequency_Hz is None else [self.frequency_Hz]

    def fire_extra(self) -> dict[str, float]:
        """``Command.extra`` of a fire (without the ``fire`` flag)."""
        if self.modality == "tus":
            return {k: float(getattr(self, k)) for k in _TUS_KEYS}
        out = {"intensity_pct": float(self.intensity_pct)}
        if self.pulses is not None:
            out["pulses"] = float(self.pulses)
        if self.train_duration_s is not None:
            out["train_duration_s"] = float(self.train_duration_s)
        return out

    def profile_problems(self, profile: DeviceProfile, envelope: dict[str, dict[str, object]]) -> list[str]:
        """Why the safety layer would refuse the configured train or sonication (each naming a key).

        ``envelope`` is the pipeline's effective envelope
        (:meth:`closedloop.config.ResolvedPipeline.envelope`). The request is
        put to the very safety layer that will run, so nothing is checked twice
        differently; the refractory period is then checked against the
        inter-train interval (rTMS) or the pause (TUS).
        """
        from closedloop.safety.envelope import ENVELOPES, safety_layer_for

        if profile.device.modality != self.modality:
            return []  # reported by the modality check
        layer = safety_layer_for(ENVELOPES[self.modality].from_envelope(envelope), clock=lambda: 0.0)
        cmd = Command(0.0, self.frequency_Hz or 0.0, True, 0.0, self.fire_extra(), fire=True)
        out = layer.step(cmd)
        if not out.on:
            reasons = [e.reason for e in layer.events if e.kind == "refuse"] or ["refused"]
            what = "train" if self.modality == "rtms" else "sonication"
            return [f"controller: the safety layer would refuse this {what}: {reasons[-1]}"]
        lim = lambda name: float(envelope[name]["value"])  # noqa: E731
        h = lim("watchdog_timeout_s")
        if self.modality == "rtms":
            gap = out.extra["train_duration_s"] + lim("min_inter_train_interval_s")
            if self.refractory_s < gap:
                return [
                    f"controller.refractory_s: {self.refractory_s:g} s is shorter than the train "
                    f"({out.extra['train_duration_s']:g} s) plus the minimum inter-train interval "
                    f"({lim('min_inter_train_interval_s'):g} s); the safety layer would refuse trains; "
                    f"use >= {gap:g}"
                ]
            return []
        problems = []
        if self.sonication_s + h > lim("max_sonication_s"):
            problems.append(
                f"controller.sonication_s: {self.sonication_s:g} s plus the watchdog time ({h:g} s) "
                f"exceeds max_sonication_s ({lim('max_sonication_s'):g} s); the layer would cut it"
            )
        if self.refractory_s < self.sonication_s + lim("min_pause_s"):
            problems.append(
                f"controller.refractory_s: {self.refractory_s:g} s is shorter than the sonication "
                f"({self.sonication_s:g} s) plus the minimum pause ({lim('min_pause_s'):g} s); use >= "
                f"{self.sonication_s + lim('min_pause_s'):g}"
            )
        return problems


class TriggerController:
    """Emit one fire command per threshold crossing, with onset count, refractory period and a cap.

    Parameters
    ----------
    config : TriggerConfig
        The ``[controller]`` section.

    Notes
    -----
    The onset count restarts after every fire, so a feature that stays past
    the threshold fires again once the refractory period is over. A bad frame
    (flagged or non-finite) resets the count; with ``on_bad_frame =
    "ramp_down"`` it also ends a running TUS sonication.
    """

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config
        self.fires = 0
        self.bad_frames = 0
        self._count = 0
        self._last_fire = -math.inf
        self._sonicate_until = -math.inf
        self._extra = config.fire_extra()
        self._rate = config.frequency_Hz or 0.0
        if config.modality == "tus":
            self._rate = float(config.prf_Hz)

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
                    self._sonicate_until = t + c.sonication_s
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
