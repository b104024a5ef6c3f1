"""The algorithmic pipeline: preprocess → features → controller → safety, no I/O.

The same object runs live (:mod:`closedloop.live.runtime`) and offline
(:mod:`closedloop.offline.replay`), so what a researcher tunes offline is
what runs live. Features and controllers run on the sample clock (frame
time); the safety layer runs on the clock it is given (see
:mod:`closedloop.session.clocks`): the local monotonic clock live, the sample
clock offline.

Bad data is no data: when frames hold nothing usable (flags in
:data:`~closedloop.types.BAD_DATA_FLAGS`: NaN/Inf or saturated values) for
longer than the profile's ``bad_data_timeout_s`` of samples, the pipeline
suspends the safety layer (stimulation ramps down at the emergency rate,
whatever the controller's ``on_bad_frame``) until a usable frame arrives.
Counted in samples, so a replay reproduces it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from time import perf_counter

from closedloop.config import ResolvedPipeline
from closedloop.control import build_controller
from closedloop.features import build_chain
from closedloop.safety.envelope import build_safety_layer
from closedloop.session.clocks import SafetyClock, SampleClock
from closedloop.types import BAD_DATA_FLAGS, NOTE_PREFIX, Chunk, Command, Frame


@dataclass(slots=True)
class Step:
    """What happened on one frame.

    Attributes
    ----------
    frame : Frame
        The frame (sample clock).
    desired : Command
        What the controller asked for.
    allowed : Command
        What the safety layer allowed.
    state : dict of str to float, optional
        The controller's ``state()`` after this frame (recorded).
    safety_time : float
        The safety layer's clock when it allowed ``allowed`` (recorded, so a
        replay of the recording can run the layer on the same times).
    """

    frame: Frame
    desired: Command
    allowed: Command
    state: dict[str, float] | None = None
    safety_time: float = float("nan")


class Pipeline:
    """Build every stage a resolved pipeline describes, for a stream with ``ch_names``.

    Parameters
    ----------
    resolved : ResolvedPipeline
        The validated pipeline and its device profile.
    ch_names : list of str
        Channels of the incoming stream, in order.
    clock : SafetyClock, optional
        The safety layer's clock; by default the sample clock (offline use).
    on_event : callable, optional
        Receives every safety event.
    ch_types : list of str, optional
        Types of the stream's channels (``EEG``, ``ECG``...); default: from the labels.
    plant : closedloop.pain.plant.PlantOverlay, optional
        A modelled stimulation effect added to one feature (``replay --plant``).

    Attributes
    ----------
    ratings : RatingTrack or None
        The pain ratings frames read (``[ratings]``): a live session's rating
        inlet or a replay fills it (docs/pain-modelling.md).
    """

    def __init__(
        self,
        resolved: ResolvedPipeline,
        ch_names: list[str],
        clock: SafetyClock | None = None,
        on_event=None,
        ch_types: list[str] | None = None,
        plant=None,
    ) -> None:
        cfg = resolved.config
        self.resolved = resolved
        self.preprocess, self.features = build_chain(cfg.features, cfg.preprocess, cfg.sfreq, ch_names, ch_types)
        # after the extractor: pain_index, rating, a modelled plant (closedloop.pain.stages)
        self.ratings = None
        rc = getattr(cfg, "ratings", None)
        if rc is not None and rc.features:
            from closedloop.pain.ratings import RatingTrack

            self.ratings = RatingTrack(rc.scale, rc.max_age_s)
        self.stages = None
        if self.ratings is not None or cfg.features.pain_index is not None or plant is not None:
            from closedloop.pain.stages import build_stages

            self.stages = build_stages(cfg, self.features.names, self.ratings, plant)
        self.controller = build_controller(cfg.controller)
        self.clock: SafetyClock = clock or SampleClock(cfg.sfreq, cfg.features.window_samples, cfg.features.hop_samples)
        self.safety = build_safety_layer(resolved, self.clock, on_event=on_event)
        limit = resolved.envelope().get("bad_data_timeout_s")
        #: frames of bad data in a row after which stimulation is suspended (None: no such limit)
        self.bad_data_frames = (
            None if limit is None else max(1, math.ceil(float(limit["value"]) * cfg.sfreq / cfg.features.hop_samples))
        )
        self._bad_run = 0
        self.samples_in = 0
        #: fill :attr:`Step.state` (a session that records or shows steps); a replay that keeps
        #: nothing per frame turns it off
        self.keep_state = True
        #: seconds spent per stage on the last chunk (see :data:`closedloop.session.telemetry.STAGES`)
        self.stage_s = {"preprocess": 0.0, "features": 0.0, "controller": 0.0, "safety": 0.0}

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the features in frame order."""
        return self.features.names if self.stages is None else self.stages.names

    def process(self, chunk: Chunk) -> list[Step]:
        """Run one chunk through every stage; return one :class:`Step` per completed frame."""
        self.samples_in += chunk.n_samples
        t0 = perf_counter()
        pre = self.preprocess.step(chunk)
        t1 = perf_counter()
        frames = self.features.step(pre)
        t2 = perf_counter()
        steps: list[Step] = []
        t_ctl = t_safe = 0.0
        safety, update, on_frame = self.safety, self.controller.update, self.clock.on_frame
        allow, keep, clock = safety.step, steps.append, perf_counter
        state = self.controller.state if self.keep_state else None
        check_bad = self.bad_data_frames is not None
        stages = self.stages
        ta = t2  # two clock reads per frame: the controller's time runs from the end of the previous frame
        for frame in frames:
            if stages is not None:
                frame = stages.apply(frame)
            desired = update(frame)
            tb = clock()
            on_frame(frame)
            if check_bad and (frame.flags or self._bad_run):  # nothing to do on a clean frame after clean ones
                self._check_bad_data(frame)
            allowed = allow(desired)
            if allowed.fire:
                _carry_notes(desired, allowed)
            if stages is not None:
                stages.observe(allowed, frame)
            keep(Step(frame, desired, allowed, state() if state is not None else None, safety.t))
            t_ctl += tb - ta
            ta = clock()
            t_safe += ta - tb
        times = self.stage_s
        times["preprocess"] = t1 - t0
        times["features"] = t2 - t1
        times["controller"] = t_ctl
        times["safety"] = t_safe
        return steps

    def _check_bad_data(self, frame: Frame) -> None:
        """Suspend the safety layer after too long a run of frames without usable data; resume on a good one."""
        if self.bad_data_frames is None:
            return
        flags = frame.flags
        if flags and flags & BAD_DATA_FLAGS:  # ``flags &`` runs enum code: only for flagged frames
            self._bad_run += 1
            if self._bad_run == self.bad_data_frames:
                seconds = self._bad_run * self.resolved.config.features.hop_samples / self.resolved.config.sfreq
                self.safety.suspend(
                    f"no usable data (non-finite or saturated) for {seconds:.3g} s of samples "
                    f"(bad_data_timeout_s); stimulation ramps down until usable data return"
                )
        elif self._bad_run:
            if self._bad_run >= self.bad_data_frames:
                self.safety.resume("a frame with usable data")
            self._bad_run = 0

    def warmup(self) -> None:
        """Compile every numba kernel before the session clock starts."""
        self.preprocess.warmup()
        self.features.warmup()


def _carry_notes(desired: Command, allowed: Command) -> None:
    """Copy the desired command's annotations (:data:`~closedloop.types.NOTE_PREFIX`) onto the fire allowed."""
    notes = {k: v for k, v in desired.extra.items() if k.startswith(NOTE_PREFIX)}
    if notes:
        allowed.extra = {**allowed.extra, **notes}
