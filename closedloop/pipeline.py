"""The algorithmic pipeline: preprocess → features → controller → safety, no I/O.

The same object runs live (:mod:`closedloop.live.runtime`) and offline (replay),
so what a researcher tunes offline is what runs live.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

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
    state: dict[str, float] | None = None  # the controller's state() after this frame (recorded)


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
    ch_types : list of str, optional
        Types of the stream's channels (``EEG``, ``ECG``...); default: from the labels.
    """

    def __init__(
        self, resolved: ResolvedPipeline, ch_names: list[str], on_event=None, ch_types: list[str] | None = None
    ) -> None:
        cfg = resolved.config
        self.resolved = resolved
        self.preprocess, self.features = build_chain(cfg.features, cfg.preprocess, cfg.sfreq, ch_names, ch_types)
        self.controller = build_controller(cfg.controller)
        self.safety = build_safety_layer(resolved, on_event=on_event)
        self.samples_in = 0
        #: seconds spent per stage on the last chunk (see :data:`closedloop.session.telemetry.STAGES`)
        self.stage_s = {"preprocess": 0.0, "features": 0.0, "controller": 0.0, "safety": 0.0}

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.names

    def process(self, chunk: Chunk) -> list[Step]:
        """Run one chunk through every stage; one :class:`Step` per completed frame."""
        self.samples_in += chunk.n_samples
        t0 = perf_counter()
        pre = self.preprocess.step(chunk)
        t1 = perf_counter()
        frames = self.features.step(pre)
        t2 = perf_counter()
        steps = []
        t_ctl = t_safe = 0.0
        for frame in frames:
            ta = perf_counter()
            desired = self.controller.update(frame)
            tb = perf_counter()
            allowed = self.safety.step(desired, frame.time)
            t_safe += perf_counter() - tb
            t_ctl += tb - ta
            steps.append(Step(frame, desired, allowed, self.controller.state()))
        times = self.stage_s
        times["preprocess"] = t1 - t0
        times["features"] = t2 - t1
        times["controller"] = t_ctl
        times["safety"] = t_safe
        return steps

    def warmup(self) -> None:
        """Compile every numba kernel before the session clock starts."""
        self.preprocess.warmup()
        self.features.warmup()
