"""Closed-loop sessions on the synthetic generator, offline: recordings with a planted truth.

:func:`simulate_session` runs a pipeline in closed loop on
:class:`~closedloop.synthetic.eeg.SyntheticEEG` without LSL or wall-clock
waits: each chunk is generated with the stimulation the simulated device is
delivering at that moment (so the generator's plant — alpha amplitude times
``1 + x``, ``x`` following ``gain_per_mA * mA`` with time constant ``tau_s`` —
sees the controller's commands, as in a live session on the synthetic
source), then fed through the same :class:`~closedloop.session.driver.SessionDriver`
a live session uses, and recorded by the same
:class:`~closedloop.recording.SessionRecording`. A simulated participant may
rate their pain (:class:`RatingPlan`): the ratings are recorded as a rating
stream and, when the pipeline has ``[ratings]``, reach the frames as in a
live session. The generator's settings and the plant are written to the file
header (``simulation_json``), so the truth travels with the recording.

This is how the pain-modelling tools are checked against known truth
(``benchmarks/pain_truth.py``, ``tests/pain``): a planted plant for
``closedloop identify`` and a planted feature → rating relation for
``closedloop calibrate``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from closedloop.synthetic.eeg import PlantModel, SyntheticEEG

__all__ = ["RatingPlan", "SimulatedSession", "simulate_session", "generator_for"]


@dataclass
class RatingPlan:
    """When and what a simulated participant rates.

    Parameters
    ----------
    every_s : float
        Interval between ratings (s); each falls on a frame time.
    rate : callable
        ``rate(t, feature_at, generator, rng) -> float``: the rating given at
        frame time ``t``. ``feature_at(name, t0)`` returns a feature of the
        latest frame at or before ``t0`` (only frames before ``t``
        exist when the rating is given: use ``t0 < t``); ``generator`` is the
        :class:`SyntheticEEG` (its hidden ``pain_state``).
    start_s : float
        First rating this long after the first frame.
    seed : int
        Seed of ``rng`` (rating noise).
    decimals : int
        Ratings are sent as text with this many decimals (and used rounded).
    delay_s : float
        Each rating reaches the loop this long after it was given (a slow
        network or rating device): frames in between have not seen it, so it
        takes effect late (as :class:`~closedloop.pain.ratings.RatingTrack` records).
    """

    every_s: float
    rate: Callable[..., float]
    start_s: float = 5.0
    seed: int = 0
    decimals: int = 3
    delay_s: float = 0.0


@dataclass
class SimulatedSession:
    """What :func:`simulate_session` produced.

    Attributes
    ----------
    summary : dict
        The session summary (as in ``summary.json``).
    out_dir : Path or None
        The session folder (``session.xdf``, ``summary.json``).
    trace : closedloop.offline.metrics.Trace
        Per-frame features and commands.
    truth : dict
        The generator's settings and plant (the planted truth).
    rating_times, ratings : ndarray
        When each rating was given (pipeline time base) and its value.
    """

    summary: dict
    out_dir: Path | None
    trace: object
    truth: dict
    rating_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ratings: np.ndarray = field(default_factory=lambda: np.zeros(0))


def generator_for(resolved, seed: int | None = None, **kwargs) -> SyntheticEEG:
    """Return the generator a synthetic ``[source]`` describes (its plant included)."""
    src = resolved.config.source
    if getattr(src, "kind", "") != "synthetic":
        raise ValueError(f"{resolved.path}: [source] kind must be 'synthetic' to simulate a session")
    args = dict(
        n_channels=src.n_channels,
        sfreq=src.sfreq,
        seed=src.seed if seed is None else seed,
        alpha_uV=src.alpha_uV,
        theta_uV=src.theta_uV,
        plant=PlantModel(gain_per_mA=src.plant_gain_per_mA, tau_s=src.plant_tau_s),
    )
    args.update(kwargs)
    return SyntheticEEG(**args)


class _History:
    """The frames so far, for a rating plan's ``feature_at`` (amortised doubling)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.n = 0
        self.times = np.empty(1024)
        self.values = np.empty((1024, len(names)))

    def add(self, steps) -> None:
        for s in steps:
            if self.n == self.times.shape[0]:
                self.times = np.concatenate([self.times, np.empty(self.n)])
                self.values = np.concatenate([self.values, np.empty((self.n, self.values.shape[1]))])
            self.times[self.n] = s.frame.time
            self.values[self.n] = s.frame.values
            self.n += 1

    def feature_at(self, name: str, t: float) -> float:
        i = int(np.searchsorted(self.times[: self.n], t, side="right")) - 1
        if i < 0:
            return math.nan
        return float(self.values[i, self.names.index(name)])


def simulate_session(
    resolved,
    duration_s: float,
    out_dir: str | os.PathLike | None = None,
    *,
    generator: SyntheticEEG | None = None,
    seed: int | None = None,
    chunk_samples: int | None = None,
    ratings: RatingPlan | None = None,
    rating_stream: str | None = None,
    start_time: float = 1000.0,
    identity: dict[str, str] | None = None,
    report: bool = False,
) -> SimulatedSession:
    """Run ``resolved`` in closed loop on the synthetic generator for ``duration_s`` s of data.

    Parameters
    ----------
    resolved : ResolvedPipeline
        A pipeline with ``[controller]`` and ``[device]``; with a synthetic
        ``[source]`` unless ``generator`` is given.
    duration_s : float
        Seconds of data.
    out_dir : str or Path, optional
        Session folder: ``session.xdf`` and ``summary.json`` (and
        ``report.html`` with ``report=True``); None writes nothing.
    generator : SyntheticEEG, optional
        The generator (default: from ``[source]``, its plant included).
    seed : int, optional
        Generator seed (default ``[source] seed``).
    chunk_samples : int, optional
        Samples per generated chunk (default ``[source] chunk_size``, else 5):
        a change of stimulation reaches the generator at the next chunk.
    ratings : RatingPlan, optional
        A simulated participant's ratings.
    rating_stream : str, optional
        Name of the rating stream (default: the pipeline's ``[ratings]``
        stream name, else ``"ratings"``).
    start_time : float
        Timestamp of the first sample (s).
    identity : dict, optional
        Participant and session identifiers.
    report : bool
        Write ``report.html``.
    """
    from datetime import datetime

    from closedloop.adapters.simulated import simulated_adapter
    from closedloop.offline.metrics import TraceBuilder
    from closedloop.pain.ratings import ALIGNED_STREAM, RATING_CHANNELS
    from closedloop.pipeline import Pipeline
    from closedloop.recording.atomic import write_json_atomic
    from closedloop.session.clocks import SampleClock
    from closedloop.session.driver import SessionDriver
    from closedloop.session.summary import build_summary
    from closedloop.types import Chunk

    cfg = resolved.config
    gen = generator or generator_for(resolved, seed)
    if gen.sfreq != cfg.sfreq:
        raise ValueError(f"the generator runs at {gen.sfreq} Hz, the pipeline at {cfg.sfreq} Hz")
    clock = SampleClock(cfg.sfreq, cfg.features.window_samples, cfg.features.hop_samples)
    pipe = Pipeline(resolved, gen.ch_names, clock=clock)
    adapter = simulated_adapter(resolved.profile, clock=clock)
    driver = SessionDriver(pipe, adapter, clock, lambda t: t, duration_s=duration_s)
    driver.warmup()
    truth = {"generator": gen.params, "start_time": start_time}
    rc = getattr(cfg, "ratings", None)
    stream = rating_stream or (rc.stream.name if rc is not None and rc.stream.name else "ratings")
    session = None
    if out_dir is not None:
        from closedloop.recording.session import SessionRecording

        eeg = {
            "name": "synthetic-eeg",
            "type": "EEG",
            "source_id": f"synthetic-eeg-{gen.seed}",
            "sfreq": gen.sfreq,
            "channel_format": "float32",
            "ch_names": gen.ch_names,
            "units": "microvolts",
            "pipeline_offset": 0.0,
        }
        session = SessionRecording(
            out_dir,
            resolved,
            eeg,
            pipe.feature_names,
            list(pipe.controller.state()),
            block=True,
            report=report,
            identity=identity,
            session_info={"requested_duration_s": repr(float(duration_s)), "simulation_json": json.dumps(truth)},
            min_free_bytes=0,
        )
        pipe.safety.on_event = session.on_event
        driver.recording = session
        if ratings is not None:
            rtype = rc.stream.type if rc is not None and rc.stream.type else "Markers"
            source_id = rc.stream.source_id if rc is not None and rc.stream.source_id else f"{stream}-simulated"
            session.add_stream(stream, rtype, 1, 0.0, "string", source_id, ["rating"])
        if pipe.ratings is not None:
            session.add_stream(
                ALIGNED_STREAM, "Ratings", len(RATING_CHANNELS), 0.0, "double64", ch_names=RATING_CHANNELS
            )
            pipe.ratings.on_rating = lambda e, t, v: session.on_marker(ALIGNED_STREAM, np.array([[v, t]]), (e,))
    adapter.connect()
    adapter.arm()
    builder = TraceBuilder(pipe.feature_names)
    history = _History(pipe.feature_names) if ratings is not None else None
    rng = np.random.default_rng(ratings.seed if ratings is not None else 0)
    hop, window, fs = cfg.features.hop_samples, cfg.features.window_samples, cfg.sfreq
    step = chunk_samples or getattr(cfg.source, "chunk_size", None) or 5
    n_total = int(round(duration_s * fs))
    every = max(1, round(ratings.every_s * fs / hop)) if ratings is not None else 0
    next_frame = max(0, round(ratings.start_s * fs / hop)) if ratings is not None else -1
    rating_times: list[float] = []
    rating_values: list[float] = []
    in_transit: list[tuple[float, float]] = []
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    done = 0
    buf = np.empty((step, gen.n_channels), dtype=np.float32)
    stop = None
    while done < n_total:
        n = min(step, n_total - done)
        if ratings is not None:
            # a rating due at frame `next_frame` is given before that frame is computed (as live: the
            # participant's rating reaches the loop before the EEG of the same moment has been processed)
            while window + next_frame * hop <= done + n:
                t = start_time + (window + next_frame * hop - 1) / fs
                value = round(float(ratings.rate(t, history.feature_at, gen, rng)), ratings.decimals)
                rating_times.append(t)
                rating_values.append(value)
                if session is not None:
                    session.on_marker(stream, [[f"{value:.{ratings.decimals}f}"]], [t])
                in_transit.append((t, value))
                next_frame += every
            # those whose delay has passed reach the loop (and the frames) now
            now = start_time + (done + n - 1) / fs
            while in_transit and in_transit[0][0] + ratings.delay_s <= now:
                t, value = in_transit.pop(0)
                if pipe.ratings is not None:
                    pipe.ratings.add(t, value)
        stim = adapter.output_mA(clock())
        data = gen.generate(n, stim, out=buf[:n])
        stamps = start_time + (done + np.arange(n)) / fs
        steps = driver.feed(Chunk(data, stamps), data, stamps)
        if steps:
            builder.add(steps)
            if history is not None:
                history.add(steps)
        done += n
        reason = driver.stop_reason()
        if reason is not None and reason != "duration reached":
            stop = reason
            break
    for t, value in in_transit:  # arriving after the last frame (a live session's rating inlet pulls them at the end)
        if pipe.ratings is not None:
            pipe.ratings.add(t, value)
    stats = driver.stats
    stats.stop_reason = stop or driver.stop_reason() or "duration reached"
    duration = pipe.samples_in / fs
    summary = build_summary(resolved, pipe, stats, started, duration, duration_s, identity)
    summary["simulation"] = truth
    out = Path(out_dir) if out_dir is not None else None
    if session is not None:
        session.recorder.flush(timeout=60.0)
        session.finish()
        summary.update(session.summary_fields())
        write_json_atomic(out / "summary.json", summary)
        session.close(summary, stats)
    return SimulatedSession(summary, out, builder.build(), truth, np.asarray(rating_times), np.asarray(rating_values))
