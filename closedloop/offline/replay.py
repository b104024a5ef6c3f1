"""Run a pipeline offline over a recording, as fast as the CPU allows.

The samples go through the very :class:`~closedloop.pipeline.Pipeline` and
:class:`~closedloop.session.driver.SessionDriver` a live session uses, in
chunks, on the recording's own timestamps (for a file closedloop recorded:
raw timestamps plus the recorded pipeline offset), into the simulated device
of the profile's modality. The safety layer runs on the sample clock — or,
for a closedloop recording, on the safety-layer times the live session
recorded — so a replay of a live session's ``session.xdf`` reproduces its
frames, commands, counters and stop reason. With an output folder, a replay
writes what a live session writes — ``session.xdf`` (through the same
:class:`~closedloop.recording.SessionRecording`), ``summary.json`` (plus
``realtime_factor``) and ``report.html``.

Like the live loop, a replay ends early when the safety layer stops the
session (session-duration or charge limit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np

from closedloop.adapters.simulated import simulated_adapter
from closedloop.offline.files import Event, RecordingFile, chunk_samples_for, open_recording, plan_channels
from closedloop.offline.metrics import Trace, TraceBuilder
from closedloop.pipeline import Pipeline, Step
from closedloop.recording.atomic import rescue_dirs, write_json_atomic
from closedloop.recording.reader import XDFReader
from closedloop.recording.session import COMMANDS_STREAM, CONTROLLER_STREAM
from closedloop.session.clocks import RecordedClock, SampleClock
from closedloop.session.driver import SessionDriver
from closedloop.session.summary import build_summary
from closedloop.types import Chunk

__all__ = ["ReplayResult", "replay", "ANNOTATIONS_STREAM"]

#: Name of the marker stream a replay records the file's events in (label, duration).
ANNOTATIONS_STREAM = "annotations"


@dataclass
class ReplayResult:
    """What a replay produced.

    Attributes
    ----------
    summary : dict
        The session summary (as in ``summary.json``), with ``realtime_factor``.
    out_dir : Path or None
        Where the outputs went (None: nothing written).
    feature_names : tuple of str
        Feature names in frame order.
    events : list of Event
        The recording's markers and annotations (pipeline time base).
    n_samples : int
        Samples processed.
    duration_s : float
        Recording time processed (s).
    wall_s : float
        Wall time of the processing (s).
    realtime_factor : float
        ``duration_s / wall_s``.
    trace : Trace or None
        Per-frame arrays (``keep="trace"`` or ``"steps"``).
    steps : list of Step or None
        Every :class:`~closedloop.pipeline.Step` (``keep="steps"``).
    notes : list of str
        Remarks about the file (e.g. read up to a cut).
    """

    summary: dict
    out_dir: Path | None
    feature_names: tuple[str, ...]
    events: list[Event]
    n_samples: int
    duration_s: float
    wall_s: float
    realtime_factor: float
    trace: Trace | None = None
    steps: list[Step] | None = None
    notes: list[str] = field(default_factory=list)


def replay(
    path: str | os.PathLike,
    resolved,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    *,
    keep: Literal["none", "trace", "steps"] = "none",
    chunk_samples: int | None = None,
    on_step: Callable[[Step], None] | None = None,
    report: bool = True,
    recording: RecordingFile | None = None,
    duration_s: float | None = None,
    identity: dict[str, str] | None = None,
    plant=None,
) -> ReplayResult:
    """Replay a recording through a pipeline.

    Parameters
    ----------
    path : str or Path
        An XDF file (closedloop's or LabRecorder's) or any file
        :func:`mne.io.read_raw` reads (EDF, BDF, FIF, BrainVision, EEGLAB...).
    resolved : ResolvedPipeline
        The pipeline (``load_pipeline(path, overrides)``).
    out_dir : str or Path, optional
        Write ``session.xdf``, ``summary.json`` and ``report.html`` there;
        None writes nothing.
    progress : bool
        Show a progress bar (stderr).
    keep : {"none", "trace", "steps"}
        What to keep in memory for analysis: nothing (constant memory),
        compact per-frame arrays (:class:`~closedloop.offline.metrics.Trace`), or
        the trace plus every :class:`Step` object.
    chunk_samples : int, optional
        Samples per chunk fed to the pipeline (default:
        :func:`~closedloop.offline.files.chunk_samples_for`). Nothing but the speed depends on it: the
        frames, the commands and the times they are issued at (each frame's
        safety-layer time) are the same for every chunking.
    on_step : callable, optional
        Called with every step (streaming analysis without keeping them).
    report : bool
        Write ``report.html`` when ``out_dir`` is given.
    recording : RecordingFile, optional
        An already opened recording (``path`` is then only a label).
    duration_s : float, optional
        Stop once this much data has been processed ("duration reached");
        by default the duration a recorded closedloop session was asked to
        run, else the whole file.
    identity : dict, optional
        Participant and session identifiers (summary and recording).
    plant : PlantFile or str or Path, optional
        A fitted plant (``closedloop identify``): the feature it models is
        shifted by the modelled effect of the replay's commands, minus that
        of the recording's own (closed loop offline; the assumptions are in
        the summary, the report and docs/pain-modelling.md).

    Returns
    -------
    ReplayResult

    Raises
    ------
    closedloop.offline.files.RecordingError
        If the file's rate or channels do not fit the pipeline (the message
        says what the file has).
    """
    if keep not in ("none", "trace", "steps"):
        raise ValueError(f"keep must be 'none', 'trace' or 'steps', not {keep!r}")
    cfg = resolved.config
    src = cfg.source
    rec = recording or open_recording(
        path,
        name=getattr(src, "name", None),
        type=getattr(src, "type", None),
        source_id=getattr(src, "source_id", None),
    )
    plan = plan_channels(rec, resolved)
    recorded = _recorded_session(rec)
    sample_clock = SampleClock(cfg.sfreq, cfg.features.window_samples, cfg.features.hop_samples)
    clock = RecordedClock(recorded.safety_times, sample_clock) if recorded.safety_times is not None else sample_clock
    overlay = _plant_overlay(plant, resolved, recorded) if plant is not None else None
    pipe = Pipeline(resolved, plan.names, clock=clock, ch_types=plan.types, plant=overlay)
    ratings = _load_ratings(rec, cfg)
    if ratings is not None and pipe.ratings is not None:
        ratings.fill(pipe.ratings)
    inputs = {k: v for k, v in recorded.controller_state.items() if k in getattr(pipe.controller, "replay_inputs", ())}
    if inputs:  # live measurements a controller decided on (a phase trigger's delay to the pulse)
        pipe.controller.use_recorded_inputs(inputs)
    pipe.keep_state = keep == "steps" or on_step is not None or out_dir is not None  # else nobody reads it
    adapter = simulated_adapter(resolved.profile, clock=clock)
    if duration_s is None:
        duration_s = recorded.requested_duration_s
    driver = SessionDriver(
        pipe, adapter, clock, lambda t: t, duration_s=duration_s, on_step=on_step, at_frame_times=True
    )
    driver.warmup()
    session = None
    if out_dir is not None:
        from closedloop.recording.session import SessionRecording

        session = SessionRecording(
            out_dir,
            resolved,
            rec.eeg_info(plan.picks, plan.names),
            pipe.feature_names,
            list(pipe.controller.state()),
            [
                {
                    "name": ANNOTATIONS_STREAM,
                    "type": "Markers",
                    "channel_count": 2,
                    "ch_names": ["label", "duration"],
                    "source_id": f"closedloop-replay-{rec.path.name}",
                }
            ],
            block=True,
            copy_raw=False,  # a replay's file blocks are new arrays every chunk, never reused
            report=report,
            identity=identity,
            session_info={
                "replay_of": str(rec.path),
                **({"requested_duration_s": repr(duration_s)} if duration_s else {}),
                **(_plant_info(overlay) if overlay is not None else {}),
            },
        )
        pipe.safety.on_event = session.on_event
        driver.recording = session
        if ratings is not None and len(ratings):
            _record_ratings(session, ratings)
        if rec.events:
            session.on_marker(
                ANNOTATIONS_STREAM,
                [[e.label, repr(e.duration)] for e in rec.events],
                # events are stored in the pipeline's time base: their stream has no offset
                [e.time for e in rec.events],
            )
    adapter.connect()
    adapter.arm()
    stats = driver.stats
    builder = TraceBuilder(pipe.feature_names) if keep != "none" else None
    kept: list[Step] | None = [] if keep == "steps" else None
    step_size = chunk_samples or chunk_samples_for(cfg)
    if step_size < 1:
        raise ValueError("chunk_samples must be >= 1")
    offset = rec.time_offset
    bar = _Progress(progress, rec.n_samples, f"replay {rec.path.name}")
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    stop: str | None = None
    t0 = time.perf_counter()
    try:
        for data, raw_ts in rec.blocks(plan.picks):
            stamps = raw_ts + offset
            for a in range(0, data.shape[0], step_size):
                b = min(a + step_size, data.shape[0])
                steps = driver.feed(Chunk(data[a:b], stamps[a:b]), data[a:b], raw_ts[a:b])
                if steps:
                    if builder is not None:
                        builder.add(steps)
                    if kept is not None:
                        kept.extend(steps)
                stop = _early_stop(driver)
                if stop is not None:
                    break
            bar.update(pipe.samples_in)
            if stop is not None:
                break
    finally:
        bar.close()
    stats.stop_reason = stop or driver.stop_reason() or "end of recording"
    if session is not None:
        session.recorder.flush(timeout=60.0)
        if session.error is not None and not stats.stop_reason.startswith("recording failed"):
            stats.stop_reason = f"recording failed: {session.error}"
    wall = time.perf_counter() - t0
    duration = pipe.samples_in / cfg.sfreq
    rtf = duration / wall if wall > 0 else float("inf")
    summary = build_summary(resolved, pipe, stats, started, duration, duration_s, identity)
    summary["realtime_factor"] = rtf
    summary["replay"] = {
        "file": str(rec.path),
        "format": rec.kind,
        "stream": rec.name,
        "channels": plan.names,
        "events": len(rec.events),
        "notes": rec.notes,
        "safety_clock": "recorded" if recorded.safety_times is not None else "sample",
    }
    if ratings is not None:
        summary["replay"]["ratings"] = {"source": ratings.source, "stream": ratings.stream, "count": len(ratings)}
        rec.notes.extend(ratings.notes)
    if overlay is not None:
        summary["plant"] = _plant_summary(overlay)
    out = Path(out_dir) if out_dir is not None else None
    if session is not None:
        session.finish()
        summary.update(session.summary_fields())
        try:
            written = write_json_atomic(out / "summary.json", summary, rescue_dirs(out.name))
            if written.parent != out:
                rec.notes.append(f"the output folder failed; summary.json written to {written}")
        except OSError as err:  # nowhere to write it: report, do not crash
            rec.notes.append(f"summary.json not written: {err}")
        session.close(summary, stats)
    return ReplayResult(
        summary=summary,
        out_dir=out,
        feature_names=pipe.feature_names,
        events=list(rec.events),
        n_samples=pipe.samples_in,
        duration_s=duration,
        wall_s=wall,
        realtime_factor=rtf,
        trace=builder.build() if builder is not None else None,
        steps=kept,
        notes=list(rec.notes),
    )


def _early_stop(driver: SessionDriver) -> str | None:
    """Return why a replay must stop before the end of the file (the duration rule waits for the file's end).

    A live session processed every sample its recording holds before it
    stopped on its duration, so a replay of that recording reads to the end
    and then reports the same reason.
    """
    reason = driver.stop_reason()
    return None if reason is None or reason == "duration reached" else reason


@dataclass
class _RecordedSession:
    """What a closedloop recording says about the live session it holds."""

    safety_times: np.ndarray | None = None
    requested_duration_s: float | None = None
    allowed_mA: np.ndarray | None = None  # the amplitude the safety layer allowed at each frame
    controller_state: dict[str, np.ndarray] = field(default_factory=dict)


def _recorded_session(rec: RecordingFile) -> _RecordedSession:
    """Read the safety-layer times, the requested duration and the controller state of a recorded closedloop session."""
    if rec.kind != "xdf":
        return _RecordedSession()
    reader = XDFReader(rec.path)
    out = _RecordedSession()
    text = reader.file_header.findtext("requested_duration_s")
    if text:
        try:
            out.requested_duration_s = float(text)
        except ValueError:
            pass
    for stream in reader.find(name=COMMANDS_STREAM):
        if "safety_time" in stream.ch_names:
            values, _ = reader.read_stream(stream.stream_id)
            out.safety_times = np.asarray(values[:, stream.ch_names.index("safety_time")], dtype=float)
            # the EEG of a live (or simulated) session felt its own commands; a replay's file keeps the EEG of
            # the session it replayed, which never felt the replay's commands
            if "allowed_amplitude_mA" in stream.ch_names and not reader.file_header.findtext("replay_of"):
                on = values[:, stream.ch_names.index("allowed_on")] > 0
                amp = values[:, stream.ch_names.index("allowed_amplitude_mA")]
                out.allowed_mA = np.where(on & np.isfinite(amp), amp, 0.0).astype(float)
    for stream in reader.find(name=CONTROLLER_STREAM):
        values, _ = reader.read_stream(stream.stream_id)
        out.controller_state = {name: np.asarray(values[:, j], dtype=float) for j, name in enumerate(stream.ch_names)}
    return out


# --- pain modelling: ratings and a fitted plant (docs/pain-modelling.md) ---------------------------


def _load_ratings(rec: RecordingFile, cfg):
    """Return the recording's ratings for a pipeline with ``[ratings]`` (None without)."""
    if getattr(cfg, "ratings", None) is None:
        return None
    from closedloop.pain.ratings import RecordedRatings, ratings_from_recording

    if rec.kind != "xdf":
        z = np.zeros(0)
        return RecordedRatings(z, z, z, "none", "", 0, [f"{rec.path.name} is not XDF: no ratings; rating is NaN"])
    return ratings_from_recording(rec.path, cfg.ratings)


def _record_ratings(session, ratings) -> None:
    """Record the ratings as the pipeline used them (``closedloop-ratings-aligned``, at their effective times)."""
    from closedloop.pain.ratings import ALIGNED_STREAM, RATING_CHANNELS

    session.add_stream(ALIGNED_STREAM, "Ratings", len(RATING_CHANNELS), 0.0, "double64", ch_names=RATING_CHANNELS)
    session.on_marker(ALIGNED_STREAM, np.column_stack([ratings.values, ratings.times]), ratings.effective)


def _plant_overlay(plant, resolved, recorded: _RecordedSession):
    """Return the frame stage that overlays a fitted plant on this replay."""
    from closedloop.config.painmodel import file_sha256
    from closedloop.pain.plant import PlantFile, PlantOverlay, measurement_for, read_plant

    path = None
    if not isinstance(plant, PlantFile):
        path = Path(plant)
        plant = read_plant(path)
    from closedloop.config.features import features_of

    cfg = resolved.config
    names = features_of(cfg.features)
    if plant.feature not in names:
        raise ValueError(f"the plant models {plant.feature!r}, which this pipeline does not compute; features: {names}")
    if plant.response == "amplitude" and not cfg.features.log10:
        raise ValueError("the plant acts on amplitude, which needs features in log10 power ([features] log10 = true)")
    overlay = PlantOverlay(plant, measurement_for(cfg.features, cfg.sfreq, plant.feature), recorded.allowed_mA)
    overlay.source = str(path) if path is not None else ""
    overlay.sha256 = file_sha256(path) if path is not None else ""
    return overlay


def _plant_summary(overlay) -> dict:
    p = overlay.plant
    return {
        "file": overlay.source,
        "sha256": overlay.sha256,
        "feature": p.feature,
        "response": p.response,
        "gain": p.gain,
        "tau_s": p.tau_s,
        "delay_s": p.delay_s,
        "recorded_stimulation_removed": overlay.removes_recorded,
        "measurement": overlay.meas.describe(),
        "assumptions": list(p.assumptions),
    }


def _plant_info(overlay) -> dict[str, str]:
    """File-header facts of a replay with a plant: the plant itself, its hash, its assumptions."""
    import json

    return {
        "plant_json": overlay.plant.model_dump_json(),
        "plant_sha256": overlay.sha256,
        "plant_summary_json": json.dumps(_plant_summary(overlay)),
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class _Progress:
    """A rich progress bar over samples (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f} %"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(label, total=max(total, 1))

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
