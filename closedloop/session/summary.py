"""What a session reports at its end: ``summary.json``.

:class:`SessionStats` holds the counters and fixed-size histograms the
session driver keeps (the same for live sessions and replays);
:func:`build_summary` turns them, the pipeline and its safety layer into the
JSON document written next to ``session.xdf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from closedloop.session.telemetry import LatencyHistogram, RunningStats, StageTimes
from closedloop.types import Quality

#: The quality flags counted per frame in the summary (``quality_flags``), in report order.
COUNTED_FLAGS: tuple[Quality, ...] = (
    Quality.ARTIFACT,
    Quality.FLAT,
    Quality.NONFINITE,
    Quality.SATURATION,
    Quality.EMG,
    Quality.GAP,
    Quality.BASELINE,
)

# the same as plain ints (enum ``&`` costs ~1 µs; a frame with flags is counted on every frame it happens)
_COUNTED_BITS = tuple((int(flag), str(flag.name)) for flag in COUNTED_FLAGS)
_NOT_BASELINE = ~int(Quality.BASELINE)


@dataclass
class SessionStats:
    """Counters and fixed-size histograms kept while a session runs.

    Attributes
    ----------
    frames : int
        Frames computed.
    flagged_frames : int
        Frames carrying any flag but ``BASELINE``.
    quality_flags : dict of str to int
        Frames carrying each flag (a frame with two flags counts in both).
    commands_applied : int
        Allowed commands handed to the adapter while the session ran.
    shutdown_commands : int
        Commands handed to the adapter by the final ramp-down (live only).
    adapter_refusals : int
        Commands the adapter refused (outside the device profile).
    watchdog_trips : int
        Watchdog trips: stale frames (one trip however long the frames stay away), a stalled
        loop or a silent device.
    source_clock_events : int
        Source timestamps found non-monotonic, jumping or far from the local clock.
    rehearsals : int
        Steps of the twin pipeline a busy-polling loop runs before each chunk
        (:mod:`closedloop.live.rehearsal`); 0 with ``poll = "wait"``.
    stop_reason : str
        Why the session ended.
    """

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    data_age: LatencyHistogram = field(default_factory=LatencyHistogram)
    in_process: LatencyHistogram = field(default_factory=LatencyHistogram)
    frames: int = 0
    flagged_frames: int = 0
    quality_flags: dict[str, int] = field(default_factory=lambda: {f.name: 0 for f in COUNTED_FLAGS})
    commands_applied: int = 0
    shutdown_commands: int = 0
    adapter_refusals: int = 0
    watchdog_trips: int = 0
    source_clock_events: int = 0
    rehearsals: int = 0
    stop_reason: str = "duration reached"
    feature_stats: RunningStats | None = None
    amplitude_max: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)
    behind: int = 0
    warnings: list[str] = field(default_factory=list)

    def count_flags(self, flags: Quality) -> None:
        """Count one frame's quality flags."""
        bits = int(flags)
        if not bits:
            return
        if bits & _NOT_BASELINE:
            self.flagged_frames += 1
        counts = self.quality_flags
        for bit, name in _COUNTED_BITS:
            if bits & bit:
                counts[name] += 1

    def note_behind(self, data_age: float, backlog_samples: int, hop_s: float) -> None:
        """Count a pull on which the loop was behind; keep the first few reasons as warnings."""
        self.behind += 1
        if backlog_samples:
            why = f"a backlog of {backlog_samples} samples in the inlet"
        else:
            why = f"data {data_age * 1e3:.1f} ms old at pull, older than a hop ({hop_s * 1e3:.1f} ms)"
        self.warn(f"loop fell behind: {why}")

    def warn(self, message: str) -> None:
        """Keep ``message`` as a warning for the summary (the first 20 distinct ones)."""
        if len(self.warnings) < 20 and message not in self.warnings:
            self.warnings.append(message)


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def build_summary(
    resolved,
    pipeline,
    stats: SessionStats,
    started: str,
    duration_s: float,
    requested_duration_s: float | None = None,
    identity: dict[str, str] | None = None,
) -> dict:
    """Return the summary of a live or replayed session (JSON-serialisable).

    Parameters
    ----------
    resolved : ResolvedPipeline
        The session's pipeline and device profile.
    pipeline : Pipeline or None
        The pipeline that ran (None if the session failed before it was built).
    stats : SessionStats
        The driver's counters.
    started : str
        ISO time the session started.
    duration_s : float
        How long the session actually ran (s of data processed).
    requested_duration_s : float, optional
        How long it was asked to run.
    identity : dict, optional
        Participant and session identifiers.
    """
    from closedloop import __version__

    st = stats
    p = pipeline
    feats = {}
    if p is not None and st.feature_stats is not None:
        std = st.feature_stats.std()
        for i, n in enumerate(p.feature_names):
            m = st.feature_stats.mean[i] if st.feature_stats.n[i] else math.nan
            feats[n] = {"mean": _num(m), "std": _num(std[i]), "n": int(st.feature_stats.n[i])}
    safety = p.safety if p is not None else None
    lat = st.latency.summary_ms()
    age = st.data_age.summary_ms()
    own = st.in_process.summary_ms()
    return {
        "closedloop_version": __version__,
        "pipeline": resolved.config.pipeline.name,
        "pipeline_file": resolved.path,
        "device": resolved.profile.device.name,
        "identity": dict(identity or {}),
        "started": started,
        "duration_s": duration_s,
        "requested_duration_s": requested_duration_s,
        "stop_reason": st.stop_reason,
        "samples_in": int(p.samples_in) if p else 0,
        "frames": st.frames,
        "flagged_frames": st.flagged_frames,
        "quality_flags": dict(st.quality_flags),
        "commands_applied": st.commands_applied,
        "shutdown_commands": st.shutdown_commands,
        "adapter_refusals": st.adapter_refusals,
        "safety_clamps": safety.clamps if safety else 0,
        "safety_events": dict(safety.counts) if safety else {},
        "watchdog_trips": st.watchdog_trips,
        "source_clock_events": st.source_clock_events,
        "stim_time_s": safety.stim_time_s if safety else 0.0,
        "dose": dict(safety.dose) if safety else {},
        "safety_state": safety.state.value if safety else "idle",
        "charge_C": safety.charge_C if safety else 0.0,
        "amplitude_max_mA": st.amplitude_max,
        "final_amplitude_mA": safety.amplitude_mA if safety else 0.0,
        "controller": p.controller.state() if p else {},
        "latency_ms": {k: lat[k] for k in ("median", "p99", "max")},
        "data_age_ms": {k: age[k] for k in ("median", "p99", "max")},
        "in_process_ms": {k: own[k] for k in ("median", "p99", "max")},
        "stage_ms": st.stages.summary_ms(),
        "loop_behind": st.behind,
        "rehearsals": st.rehearsals,
        "warnings": list(st.warnings),
        "features": feats,
        "safety_envelope": {k: v["value"] for k, v in resolved.envelope().items()},
        **_pain_fields(resolved, p),
    }


def _pain_fields(resolved, pipeline) -> dict:
    """Return the summary's ``pain_index`` (the model and its training hashes) and ``ratings`` (counts)."""
    out: dict = {}
    pain = resolved.config.features.pain_index
    if pain is not None:
        from closedloop.pain.index import model_facts

        try:
            out["pain_index"] = model_facts(pain.model)
        except (ValueError, OSError) as e:
            out["pain_index"] = {"file": pain.model, "error": str(e)}
    track = getattr(pipeline, "ratings", None)
    if track is not None:
        out["ratings"] = {"accepted": track.accepted, "rejected": track.rejected, "late": track.late}
    return out
