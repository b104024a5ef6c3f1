"""What a session reports at its end: ``summary.json``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from closedloop.session.telemetry import LatencyHistogram, RunningStats, StageTimes


@dataclass
class SessionStats:
    """Counters and fixed-size histograms kept while a session runs."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    data_age: LatencyHistogram = field(default_factory=LatencyHistogram)
    frames: int = 0
    commands_applied: int = 0
    adapter_refusals: int = 0
    watchdog_trips: int = 0
    stop_reason: str = "duration reached"
    feature_stats: RunningStats | None = None
    amplitude_max: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)
    behind: int = 0
    warnings: list[str] = field(default_factory=list)

    def note_behind(self, data_age: float, backlog_samples: int, hop_s: float) -> None:
        """Count a pull on which the loop was behind; keep the first few reasons as warnings."""
        self.behind += 1
        if len(self.warnings) < 10:
            why = (
                f"a backlog of {backlog_samples} samples in the inlet"
                if backlog_samples
                else (f"data {data_age * 1e3:.1f} ms old at pull, older than a hop ({hop_s * 1e3:.1f} ms)")
            )
            self.warnings.append(f"loop fell behind: {why}")


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def build_summary(resolved, pipeline, stats: SessionStats, started: str, duration_s: float) -> dict:
    """The summary of a live or replayed session (JSON-serialisable)."""
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
    return {
        "closedloop_version": __version__,
        "pipeline": resolved.config.pipeline.name,
        "pipeline_file": resolved.path,
        "device": resolved.profile.device.name,
        "started": started,
        "duration_s": duration_s,
        "stop_reason": st.stop_reason,
        "samples_in": int(p.samples_in) if p else 0,
        "frames": st.frames,
        "commands_applied": st.commands_applied,
        "adapter_refusals": st.adapter_refusals,
        "safety_clamps": safety.clamps if safety else 0,
        "safety_events": dict(safety.counts) if safety else {},
        "watchdog_trips": st.watchdog_trips,
        "stim_time_s": safety.stim_time_s if safety else 0.0,
        "dose": dict(safety.dose) if safety else {},
        "safety_state": safety.state.value if safety else "idle",
        "charge_C": safety.charge_C if safety else 0.0,
        "amplitude_max_mA": st.amplitude_max,
        "final_amplitude_mA": safety.amplitude_mA if safety else 0.0,
        "controller": p.controller.state() if p else {},
        "latency_ms": {k: lat[k] for k in ("median", "p99", "max")},
        "data_age_ms": {k: age[k] for k in ("median", "p99", "max")},
        "stage_ms": st.stages.summary_ms(),
        "loop_behind": st.behind,
        "warnings": list(st.warnings),
        "features": feats,
        "safety_envelope": {k: v["value"] for k, v in resolved.envelope().items()},
    }
