"""The live loop: a source, the pipeline, the watchdog, an adapter, a status line, a summary.

The loop thread only pulls, computes and issues; it never sleeps on a timer
(it waits inside the LSL pull) and never blocks on a device.
"""

from __future__ import annotations

import json
import time
import uuid
from time import perf_counter
from datetime import datetime
from pathlib import Path
from typing import Callable

from closedloop.adapters import LimitViolation, build_adapter
from closedloop.config import LSLSourceConfig, ResolvedPipeline, SyntheticSourceConfig
from closedloop.lslconfig import configure_lsl
from closedloop.pipeline import Pipeline, Step
from closedloop.sources import LSLSource, SourceError
from closedloop.summary import SessionStats, build_summary
from closedloop.telemetry import RunningStats


def default_out_dir(resolved: ResolvedPipeline) -> Path:
    """``<output.folder>/<YYYYmmdd-HHMMSS>-<pipeline name>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(resolved.config.output.folder) / f"{stamp}-{resolved.config.pipeline.name}"


def _build_source(resolved: ResolvedPipeline, stim_amplitude: Callable[[], float]):
    """Return (source, publisher-or-None) for the pipeline's ``[source]``."""
    src = resolved.config.source
    if isinstance(src, SyntheticSourceConfig):
        from closedloop.sources.synth_outlet import SynthPublisher
        from closedloop.synth import PlantModel, SyntheticEEG

        gen = SyntheticEEG(
            n_channels=src.n_channels, sfreq=src.sfreq, seed=src.seed, alpha_uV=src.alpha_uV,
            theta_uV=src.theta_uV, plant=PlantModel(gain_per_mA=src.plant_gain_per_mA, tau_s=src.plant_tau_s),
        )
        name = f"closedloop-synth-{uuid.uuid4().hex[:8]}"
        pub = SynthPublisher(gen, name=name, source_id=name, chunk_size=src.chunk_size,
                             stim_amplitude=stim_amplitude)
        pub.start()
        source = LSLSource(name=name, type="EEG", source_id=name, sfreq=src.sfreq, ch_names=gen.ch_names,
                           n_channels=src.n_channels, resolve_timeout_s=5.0,
                           stall_timeout_s=src.stall_timeout_s)
        return source, pub
    assert isinstance(src, LSLSourceConfig)
    source = LSLSource(name=src.name, type=src.type, source_id=src.source_id, sfreq=src.sfreq,
                       ch_names=src.channels, n_channels=src.n_channels,
                       resolve_timeout_s=src.resolve_timeout_s, stall_timeout_s=src.stall_timeout_s)
    return source, None


class LiveSession:
    """Run a resolved pipeline live for ``duration_s`` seconds.

    Parameters
    ----------
    resolved : ResolvedPipeline
        Validated pipeline and device profile.
    duration_s : float
        Session length (wall time from the first sample).
    out_dir : Path
        Folder for ``summary.json`` (created).
    show_status : bool
        Show a live status line (rich).
    on_step : callable, optional
        Called with every :class:`~closedloop.pipeline.Step` (tests, custom displays).
    on_command : callable, optional
        Called after every command sent to the adapter with ``(command, loop_latency_s, stage_s)``.
    """

    def __init__(self, resolved: ResolvedPipeline, duration_s: float, out_dir: Path,
                 show_status: bool = True, on_step: Callable[[Step], None] | None = None,
                 on_command: Callable[[object, float, dict], None] | None = None) -> None:
        self.resolved = resolved
        self.duration_s = duration_s
        self.out_dir = Path(out_dir)
        self.show_status = show_status
        self.on_step = on_step
        self.on_command = on_command
        self.stats = SessionStats()
        self.adapter = build_adapter(resolved.profile)
        self.pipeline: Pipeline | None = None
        self.source = None
        self.publisher = None
        self._interrupts = 0

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> dict:
        """Run the session; always ramps down, stops the device and writes the summary."""
        configure_lsl()
        import pylsl

        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = datetime.now().isoformat(timespec="seconds")
        clock = pylsl.local_clock
        self.source, self.publisher = _build_source(self.resolved, lambda: self.adapter.output_mA(clock()))
        try:
            self.source.open()
            self.pipeline = Pipeline(self.resolved, self.source.ch_names)
            self.pipeline.warmup()
            self.stats.feature_stats = RunningStats(len(self.pipeline.feature_names))
            self.stats.feature_stats.warmup()
            self.adapter.connect()
            self.source.flush()  # start on the newest data, not on what queued during warm-up
            try:
                self._loop(clock)
            except KeyboardInterrupt:
                self.stats.stop_reason = "interrupted by the operator (Ctrl-C)"
            self._ramp_down(clock)
        except SourceError as e:
            self.stats.stop_reason = f"source error: {e}"
            if self.pipeline is not None:
                self._ramp_down(clock)
            else:
                raise
        finally:
            self._shutdown()
        summary = self._summary(started)
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _loop(self, clock) -> None:
        stats = self.stats
        watchdog = self.pipeline.safety.env.watchdog_timeout_s
        hop = self.resolved.config.features.hop_samples
        hop_s = hop / self.resolved.config.sfreq
        typical_chunk = float(hop)  # running mean of pulled chunk sizes, to tell a backlog from the source's chunking
        status = _StatusLine(self.show_status, self.pipeline.feature_names)
        t_first = None
        last_frame_wall = None  # the watchdog is armed by the first frame
        window_s = self.resolved.config.features.window_samples / self.resolved.config.sfreq
        t_start = clock()
        first_frame_deadline = t_start + window_s + max(2.0, 5 * watchdog)
        while True:
            try:
                chunk = self.source.pull(timeout=0.02)
            except SourceError as e:
                stats.stop_reason = f"source lost: {e}"
                return
            now = clock()
            if chunk is not None:
                if t_first is None:
                    t_first = now
                age = self.source.data_age
                stats.data_age.add(age)
                n = chunk.n_samples
                backlog = self.source.backlog or n > 2 * max(hop, typical_chunk)
                typical_chunk += 0.01 * (n - typical_chunk)
                if age > hop_s or backlog:
                    stats.note_behind(age, n if backlog else 0, hop_s)
                steps = self.pipeline.process(chunk)
                if steps:
                    last_frame_wall = now
                    for s in steps:
                        stats.feature_stats.add(s.frame.values)
                        if self.on_step is not None:
                            self.on_step(s)
                    stats.frames += len(steps)
                    t_adapter = perf_counter()
                    self._apply(steps[-1].allowed, clock)
                    issued = clock()
                    stage = self.pipeline.stage_s
                    stage["adapter"] = perf_counter() - t_adapter
                    stage["data_age"] = age
                    stats.stages.add(stage)
                    latency = issued - self.source.local_time(steps[-1].frame.time)
                    stats.latency.add(latency)
                    if self.on_command is not None:
                        self.on_command(steps[-1].allowed, latency, stage)
                    status.update(now, t_first, steps[-1], age, stats)
            if last_frame_wall is None:
                if now > first_frame_deadline:
                    stats.stop_reason = (f"no frame within {first_frame_deadline - t_start:.1f} s of the start "
                                         f"({self.source.samples_in} samples received)")
                    return
            elif now - last_frame_wall > watchdog:
                stats.watchdog_trips += 1
                cmd = self.pipeline.safety.ramp_down(
                    now, f"no fresh frame for more than {watchdog} s (watchdog)", emergency=True)
                self._apply(cmd, clock)
            if self.pipeline.safety.stopped and self.pipeline.safety.amplitude_mA == 0.0:
                stats.stop_reason = self.pipeline.safety.stop_reason
                return
            if t_first is not None and now - t_first >= self.duration_s:
                return

    def _apply(self, cmd, clock) -> None:
        try:
            self.adapter.apply(cmd, clock())
            self.stats.commands_applied += 1
            self.stats.amplitude_max = max(self.stats.amplitude_max, cmd.amplitude_mA)
        except LimitViolation:
            self.stats.adapter_refusals += 1

    def _ramp_down(self, clock) -> None:
        """Ramp to zero at the profile's normal rate; a second Ctrl-C switches to the emergency rate."""
        safety = self.pipeline.safety
        emergency = False
        reason = f"session end: {self.stats.stop_reason}"
        while safety.amplitude_mA > 0.0:
            try:
                self._apply(safety.ramp_down(clock(), reason, emergency=emergency), clock)
                time.sleep(0.02)
            except KeyboardInterrupt:
                emergency = True
                reason = "emergency stop (second Ctrl-C)"

    def _shutdown(self) -> None:
        for action in (self.adapter.stop, getattr(self.source, "close", None),
                       getattr(self.publisher, "stop", None)):
            if action is None:
                continue
            try:
                action()
            except Exception:  # noqa: BLE001 - shutdown must reach every step
                pass

    def _summary(self, started: str) -> dict:
        return build_summary(self.resolved, self.pipeline, self.stats, started, self.duration_s)


class _StatusLine:
    """A single refreshed console line: time, features, amplitude, data age, latency."""

    def __init__(self, enabled: bool, names: tuple[str, ...]) -> None:
        self.enabled = enabled
        self.names = names
        self._next = 0.0
        self._live = None
        if enabled:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            self.enabled = console.is_terminal
            if self.enabled:
                self._live = Live("", console=console, auto_refresh=False, transient=False)
                self._live.start()

    def update(self, now: float, t0: float, step: Step, data_age: float, stats: SessionStats) -> None:
        if not self.enabled or now < self._next:
            return
        self._next = now + 0.25
        feats = "  ".join(f"{n}={v:+.3f}" for n, v in zip(self.names, step.frame.values))
        line = (f"t={now - t0:6.1f}s  {feats}  amp={step.allowed.amplitude_mA:.3f} mA"
                f"{' ON ' if step.desired.on else ' off'}  age={data_age * 1e3:5.1f} ms  "
                f"lat={stats.latency.quantile(0.5) * 1e3:5.2f} ms"
                f"{'  BEHIND x' + str(stats.behind) if stats.behind else ''}")
        self._live.update(line, refresh=True)

    def __del__(self) -> None:
        if self._live is not None:
            self._live.stop()
