"""Frame stages: what the pipeline adds to each frame after the feature extractor.

In order: a plant overlay on an extractor feature (``replay --plant``), the
``pain_index`` (``[features.pain_index]``), a plant overlay on ``pain_index``,
then ``rating`` and ``rating_age_s`` (``[ratings]``). :class:`FrameStages`
copies each extractor frame into a frame of its own (recycled from a
:class:`~closedloop.features.framepool.FramePool`: nothing allocated per frame
in steady state) and lets every stage write its columns in place, so the
controller, the recording and the summary see one frame with every feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from closedloop.features.framepool import FramePool
from closedloop.pain.ratings import RatingTrack
from closedloop.types import Command, Frame, Quality

__all__ = ["FrameStage", "FrameStages", "RatingStage", "build_stages"]


class FrameStage(Protocol):
    """One stage: the columns it appends, and how it fills (or changes) a frame's values."""

    names: tuple[str, ...]

    def bind(self, names: tuple[str, ...]) -> None:
        """Find its columns among the final frame's ``names``."""

    def apply(self, t: float, flags: Quality, row: np.ndarray) -> None:
        """Write its columns of the frame at ``t`` into ``row`` (in place)."""


class RatingStage:
    """Append the latest rating and its age (``rating``, ``rating_age_s``) from a :class:`RatingTrack`."""

    names = ("rating", "rating_age_s")

    def __init__(self, track: RatingTrack) -> None:
        self.track = track
        self._cols = (-1, -1)

    def bind(self, names: tuple[str, ...]) -> None:
        """Find the two columns."""
        self._cols = (names.index("rating"), names.index("rating_age_s"))

    def apply(self, t: float, flags: Quality, row: np.ndarray) -> None:
        """Write the rating in force at ``t`` and its age."""
        value, age = self.track.at(t)
        row[self._cols[0]] = value
        row[self._cols[1]] = age


class FrameStages:
    """Run the frame stages on every extractor frame.

    Parameters
    ----------
    base_names : tuple of str
        The extractor's feature names.
    stages : list of FrameStage
        In order; their appended names follow the base names.
    """

    def __init__(self, base_names: Sequence[str], stages: Sequence[FrameStage]) -> None:
        self.base_names = tuple(base_names)
        self.stages = list(stages)
        self.names = self.base_names + tuple(n for s in self.stages for n in s.names)
        self._n_base = len(self.base_names)
        for s in self.stages:
            s.bind(self.names)
        self._pool = FramePool(self.names)
        self._observers = [s for s in self.stages if hasattr(s, "observe")]

    def apply(self, frame: Frame) -> Frame:
        """Return the frame with every stage's columns (a frame of the stages' own pool)."""
        out, row = self._pool.claim()
        row[: self._n_base] = frame.values
        t, flags = frame.time, frame.flags
        for s in self.stages:
            s.apply(t, flags, row)
        out.time = t
        out.flags = flags
        out.index = frame.index
        return out

    def observe(self, allowed: Command, frame: Frame) -> None:
        """Tell the stages that model stimulation (a plant overlay) what the safety layer allowed."""
        for s in self._observers:
            s.observe(allowed, frame)


def build_stages(cfg, base_names: Sequence[str], ratings: RatingTrack | None, plant=None) -> FrameStages | None:
    """Return the frame stages a pipeline needs (None when it needs none).

    Parameters
    ----------
    cfg : PipelineConfig
        The pipeline.
    base_names : sequence of str
        The extractor's feature names.
    ratings : RatingTrack or None
        The pipeline's rating track (``[ratings]`` with ``features = true``).
    plant : PlantOverlay, optional
        A modelled stimulation effect on one feature (``replay --plant``).
    """
    stages: list = []
    pain = cfg.features.pain_index
    if plant is not None and plant.feature in base_names:
        stages.append(plant)
    if pain is not None:
        from closedloop.pain.index import PainIndexStage

        stages.append(PainIndexStage.from_file(pain.model))
        if plant is not None and plant.feature == "pain_index":
            stages.append(plant)
    if ratings is not None:
        stages.append(RatingStage(ratings))
    if plant is not None and plant not in stages:
        known = list(base_names) + (["pain_index"] if pain is not None else [])
        raise ValueError(f"the plant models {plant.feature!r}, not a feature of this pipeline; features: {known}")
    return FrameStages(base_names, stages) if stages else None
