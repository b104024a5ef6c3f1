"""Controllers: frames in, desired commands out (see :mod:`closedloop.control.base`).

Each controller takes its settings object from :mod:`closedloop.config.controllers`.
"""

from __future__ import annotations

from closedloop.control.base import Controller, display_state
from closedloop.control.baseline import INNER_CONTROLLERS, BaselineController
from closedloop.control.dual_threshold import DualThresholdController
from closedloop.control.phase_trigger import PhaseTriggerController
from closedloop.control.pi import PIController
from closedloop.control.rule import RuleController
from closedloop.control.schedule import ScheduleController
from closedloop.control.threshold import ThresholdController
from closedloop.control.trigger import TriggerController

_REGISTRY = {
    **INNER_CONTROLLERS,
    "baseline": BaselineController,
    "trigger": TriggerController,
    "phase_trigger": PhaseTriggerController,
    "rule": RuleController,
}


def build_controller(config) -> Controller:
    """Instantiate the controller a ``[controller]`` section describes."""
    return _REGISTRY[config.kind](config)


__all__ = [
    "BaselineController",
    "Controller",
    "DualThresholdController",
    "PIController",
    "PhaseTriggerController",
    "RuleController",
    "ScheduleController",
    "ThresholdController",
    "TriggerController",
    "build_controller",
    "display_state",
]
