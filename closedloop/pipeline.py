"""The algorithmic pipeline: preprocess → features → controller → safety, no I/O.

The same object runs live (:mod:`closedloop.runtime`) and offline (replay),
so what a researcher tunes offline is what runs live.
"""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.config import ResolvedPipeline
from closedloop.control import build_controller
from closedloop.features import build_chain
from closedloop.safety.envelope import build_safety_layer
from closedloop.types import Chunk, Command, Frame


@dataclass(slots=True)
class Step:
    """What happened on one frame."""

    frame: Frame
    desired: Command
    allowed: Command


class Pipeline:
    """Build every stage a resolved pipeline describes, for a stream with ``ch_names``.

    Parameters
    ----------
    resolved : ResolvedPipeline
        The validated pipeline and its device profile.
    ch_names : list of str
        Channels of the incoming stream, in order.
    on_event : callable, optional
        Receives every safety event.
    """

    def __init__(self, resolved: ResolvedPipeline, ch_names: list[str], on_event=None) -> None:
        cfg = resolved.config
        self.resolved = resolved
        self.preprocess, self.features = build_chain(cfg.features, cfg.preprocess, cfg.sfreq, ch_names)
        self.controller = build_controller(cfg.controller)
        self.safety = build_safety_layer(resolved, on_event=on_event)
        self.samples_in = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.names

    def process(self, chunk: Chunk) -> list[Step]:
        """Run one chunk through every stage; one :class:`Step` per completed frame."""
        self.samples_in += chunk.n_samples
        frames = self.features.step(self.preprocess.step(chunk))
        steps = []
        for frame in frames:
            desired = self.controller.update(frame)
            allowed = self.safety.step(desired, frame.time)
            steps.append(Step(frame, desired, allowed))
        return steps

    def warmup(self) -> None:
        """Compile every numba kernel before the session clock starts."""
        self.preprocess.warmup()
        self.features.warmup()
