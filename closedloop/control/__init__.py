"""Controllers: frames in, desired commands out (see :mod:`closedloop.control.base`)."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from closedloop.control.base import Controller
from closedloop.control.threshold import ThresholdConfig, ThresholdController

#: ``[controller]`` section: one model per ``kind``.
ControllerConfig = Annotated[Union[ThresholdConfig], Field(discriminator="kind")]

_REGISTRY = {"threshold": ThresholdController}


def build_controller(config) -> Controller:
    """Instantiate the controller a ``[controller]`` section describes."""
    return _REGISTRY[config.kind](config)


__all__ = ["Controller", "ControllerConfig", "ThresholdConfig", "ThresholdController", "build_controller"]
