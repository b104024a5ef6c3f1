"""Controllers: frames in, desired commands out (see :mod:`closedloop.control.base`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from closedloop.control.base import Controller, ControllerConfigBase, OnBadFrame, display_state
from closedloop.control.baseline import BaselineConfig, BaselineController
from closedloop.control.dual_threshold import DualThresholdConfig, DualThresholdController
from closedloop.control.pi import PIConfig, PIController
from closedloop.control.schedule import ScheduleConfig, ScheduleController
from closedloop.control.threshold import ThresholdConfig, ThresholdController
from closedloop.control.trigger import TriggerConfig, TriggerController

#: Controllers a baseline block may wrap (every kind but ``baseline``).
InnerControllerConfig = Annotated[
    ThresholdConfig | DualThresholdConfig | PIConfig | ScheduleConfig, Field(discriminator="kind")
]

#: ``[controller]`` section: one model per ``kind``.
ControllerConfig = Annotated[
    ThresholdConfig | DualThresholdConfig | PIConfig | ScheduleConfig | BaselineConfig | TriggerConfig,
    Field(discriminator="kind"),
]

#: The controller kinds (also the tags pydantic puts in error locations).
CONTROLLER_KINDS = ("threshold", "dual_threshold", "pi", "schedule", "baseline", "trigger")

_REGISTRY = {
    "threshold": ThresholdController,
    "dual_threshold": DualThresholdController,
    "pi": PIController,
    "schedule": ScheduleController,
    "baseline": BaselineController,
    "trigger": TriggerController,
}


@lru_cache(maxsize=1)
def inner_config_adapter() -> TypeAdapter:
    """Validator for the controllers a baseline may wrap."""
    return TypeAdapter(InnerControllerConfig)


def build_controller(config) -> Controller:
    """Instantiate the controller a ``[controller]`` section describes."""
    return _REGISTRY[config.kind](config)


__all__ = [
    "BaselineConfig",
    "BaselineController",
    "CONTROLLER_KINDS",
    "Controller",
    "ControllerConfig",
    "ControllerConfigBase",
    "DualThresholdConfig",
    "DualThresholdController",
    "OnBadFrame",
    "PIConfig",
    "PIController",
    "ScheduleConfig",
    "ScheduleController",
    "ThresholdConfig",
    "ThresholdController",
    "TriggerConfig",
    "TriggerController",
    "build_controller",
    "display_state",
]
