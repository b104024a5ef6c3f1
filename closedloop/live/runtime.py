"""The live loop: a source, the pipeline, the watchdog, an adapter, a status line, a summary.

The loop thread only pulls, computes and issues; it never sleeps on a timer
(it waits inside the LSL pull) and never blocks on a device.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from time import perf_counter

from closedloop.adapters import DeviceFault, LimitViolation, build_adapter
from closedloop.config import LSLSourceConfig, ResolvedPipeline, SyntheticSourceConfig
from closedloop.control.base import display_state
from closedloop.lslconfig import configure_lsl
from closedloop.pipeline import Pipeline, Step
from closedloop.recording import SessionRecording
from closedloop.recording.inlets import StreamInlets
from closedloop.safety.watchdog import Watchdog, WatchdogTrip
from closedloop.session.summary import SessionStats, build_summary
from closedloop.session.telemetry import RunningStats
from closedloop.sources import LSLSource, SourceError


def default_out_dir(resolved: ResolvedPipeline) -> Path:
    """``<output.folder>/<YYYYmmdd-HHMMSS>-<pipeline name>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(resolved.config.output.folder) / f"{stamp}-{resolved.config.pipeline.name}"


def _build_source(resolved: ResolvedPipeline, stim_amplitude: Callable[[], float]):
    """Return (source, publisher-or-None) for the pipeline's ``[source]``."""
    src = resolved.config.source
    if isinstance(src, SyntheticSourceConfig):
        from closedloop.synthetic.eeg import PlantModel, SyntheticEEG
        from closedloop.synthetic.outlet import SynthPublisher

        gen = SyntheticEEG(
            n_channels=src.n_channels,
            sfreq=src.sfreq,
            seed=src.seed,
            alpha_uV=src.alpha_uV,
            theta_uV=src.theta_uV,
            plant=PlantModel(gain_per_mA=src.plant_gain_per_mA, tau_s=src.plant_tau_s),
        )
        name = f"closedloop-synth-{uuid.uuid4().hex[:8]}"
        pub = SynthPublisher(gen, name=name, source_id=name, chunk_size=src.chunk_size, stim_amplitude=stim_amplitude)
        pub.start()
        source = LSLSource(
            name=name,
            type="EEG",
            source_id=name,
            sfreq=src.sfreq,
            ch_names=gen.ch_names,
            n_channels=src.n_channels,
            resolve_timeout_s=5.0,
            stall_timeout_s=src.stall_timeout_s,
            features=resolved.config.features,
            preprocess=resolved.config.preprocess,
        )
        return source, pub
    assert isinstance(src, LSLSourceConfig)
    source = LSLSource(
        name=src.name,
        type=src.type,
        source_id=src.source_id,
        sfreq=src.sfreq,
        ch_names=src.channels,
        n_channels=src.n_channels,
        resolve_timeout_s=src.resolve_timeout_s,
        stall_timeout_s=src.stall_timeout_s,
        units=src.units,
        scope=src.scope,
        features=resolved.config.features,
        preprocess=resolved.config.preprocess,
    )
    return source, None


def _commands_to_apply(steps: list[Step]) -> list:
    """The allowed commands of one chunk to send: every fire or abort (none may be dropped), then the newest.

    tES commands carry neither flag, so only the newest is sent, as before.
    """
    last = steps[-1].allowed
    flagged = [
        s.allowed
        for s in steps[:-1]
        if s.allowed.extra.get("fire", 0.0) >= 1.0 or s.allowed.extra.get("abort", 0.0) >= 1.0
    ]
    return flagged + [last]


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
    adapter : Adapter, optional
        Use this adapter instead of the one the device profile names.
    """

    def __init__(
        self,
        resolved: ResolvedPipeline,
        duration_s: float,
        out_dir: Path,
        show_status: bool = True,
        on_step: Callable[[Step], None] | None = None,
        on_command: Callable[[object, float, dict], None] | None = None,
        adapter=None,
    ) -> None:
        self.resolved = resolved
        self.duration_s = duration_s
        self.out_dir = Path(out_dir)
        self.show_status = show_status
        self.on_step = on_step
        self.on_command = on_command
        self.stats = SessionStats()
        self.adapter = (
            adapter
            if adapter is not None
            else build_adapter(resolved.profile, motor_threshold_pct_mso=resolved.config.device.motor_threshold_pct_mso)
        )
        self.pipeline: Pipeline | None = None
        self.source = None
        self.publisher = None
        self.watchdog: Watchdog | None = None
        self.recording: SessionRecording | None = None
        self.inlets: StreamInlets | None = None
        self._lock = threading.Lock()  # the loop thread and the watchdog thread share the safety layer
        self._trip: WatchdogTrip | None = None

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> dict:
        """Run the session; always ramps down, stops the device and writes the summary."""
        configure_lsl(getattr(self.resolved.config.source, "scope", None))
        import pylsl

        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = datetime.now().isoformat(timespec="seconds")
        clock = pylsl.local_clock
        self.source, self.publisher = _build_source(self.resolved, lambda: self.adapter.output_mA(clock()))
        try:
            self.source.open()
            self.pipeline = Pipeline(self.resolved, self.source.ch_names, ch_types=self.source.ch_types)
            self.pipeline.warmup()
            self.stats.feature_stats = RunningStats(len(self.pipeline.feature_names))
            self.stats.feature_stats.warmup()
            # checks the folder (writable, free space) and raises before anything is stimulated
            rec_cfg = self.resolved.config.recording
            self.recording = SessionRecording.for_source(
                self.out_dir, self.resolved, self.source, self.pipeline, report=rec_cfg.report
            )
            queries = [q.model_dump(exclude={"required"}, exclude_none=True) for q in rec_cfg.streams]
            if self.publisher is not None:
                queries.append({"name": self.publisher.marker_name, "source_id": self.publisher.marker_source_id})
            if queries:
                self.inlets = StreamInlets(self.recording, queries).start()
                missing = [q for q in rec_cfg.streams if q.required and q.name and q.name not in self.inlets.names]
                if missing:
                    raise SourceError(
                        f"recording.streams: required stream(s) not found: "
                        f"{[q.model_dump(exclude_none=True) for q in missing]}"
                    )
            self.adapter.connect()
            getattr(self.adapter, "arm", lambda: None)()
            self._start_watchdog(clock)
            self.source.flush()  # start on the newest data, not on what queued during warm-up
            emergency = False
            try:
                emergency = self._loop(clock)
            except KeyboardInterrupt:
                self.stats.stop_reason = "interrupted by the operator (Ctrl-C)"
            self._ramp_down(clock, emergency)
        except SourceError as e:
            self.stats.stop_reason = f"source error: {e}"
            if self.pipeline is None:
                raise
            self._ramp_down(clock, emergency=True)
        except DeviceFault as e:
            self.stats.stop_reason = f"device fault: {e}"
        finally:
            self._shutdown()
        summary = self._summary(started)
        if self.recording is not None:
            summary.update(self.recording.summary_fields())
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.recording is not None:
            self.recording.close(summary, self.stats)  # footers, then report.html
        return summary

    def _start_watchdog(self, clock) -> None:
        opts = self.resolved.profile.adapter_options
        ack = opts.get("ack_timeout_s")
        timeout = self.pipeline.safety.env.watchdog_timeout_s
        self.watchdog = Watchdog(
            frame_timeout_s=timeout,
            loop_timeout_s=timeout,
            device_timeout_s=float(ack) if ack is not None else None,
            clock=clock,
        )
        if hasattr(self.adapter, "on_ack"):
            self.adapter.on_ack = lambda: self.watchdog.device_ack(clock())
        self.watchdog.start(lambda trip: self._on_trip(trip, clock))

    def _on_trip(self, trip: WatchdogTrip, clock) -> None:
        """From the watchdog thread: the loop stalled or the device went silent — stop the output now."""
        self._trip = trip
        self.stats.watchdog_trips += 1
        getattr(self.adapter, "emergency_stop", lambda: None)()
        if self._lock.acquire(timeout=0.05):  # the loop may hold it while stalled; the adapter is already stopping
            try:
                self.pipeline.safety.emergency_stop(clock(), trip.reason)
            finally:
                self._lock.release()

    def _loop(self, clock) -> bool:
        """Run until the session ends; return whether it must end with an emergency ramp."""
        stats = self.stats
        safety = self.pipeline.safety
        wd = self.watchdog
        hop = self.resolved.config.features.hop_samples
        hop_s = hop / self.resolved.config.sfreq
        typical_chunk = float(hop)  # running mean of pulled chunk sizes, to tell a backlog from the source's chunking
        status = _StatusLine(self.show_status, self.pipeline)
        t_first = None
        window_s = self.resolved.config.features.window_samples / self.resolved.config.sfreq
        t_start = clock()
        first_frame_deadline = t_start + window_s + max(2.0, 5 * wd.frame_timeout_s)
        while True:
            try:
                chunk = self.source.pull(timeout=0.02)
            except SourceError as e:
                stats.stop_reason = f"source lost: {e}"
                return True
            now = clock()
            wd.heartbeat(now)
            if self._trip is not None:
                stats.stop_reason = self._trip.reason
                return True
            fault = getattr(self.adapter, "fault", None)
            if fault:
                stats.stop_reason = f"device fault: {fault}"
                return True
            if chunk is not None:
                self.recording.on_chunk(self.source.raw_data, self.source.raw_timestamps)
                if t_first is None:
                    t_first = now
                age = self.source.data_age
                stats.data_age.add(age)
                n = chunk.n_samples
                backlog = self.source.backlog or n > 2 * max(hop, typical_chunk)
                typical_chunk += 0.01 * (n - typical_chunk)
                if age > hop_s or backlog:
                    stats.note_behind(age, n if backlog else 0, hop_s)
                with self._lock:
                    steps = self.pipeline.process(chunk)
                    if steps:
                        t_adapter = perf_counter()
                        for cmd in _commands_to_apply(steps):
                            self._apply(cmd, clock)
                        issued = clock()
                        adapter_s = perf_counter() - t_adapter
                if steps:
                    self.recording.on_steps(steps)
                    wd.frame(now)
                    for s in steps:
                        stats.feature_stats.add(s.frame.values)
                        if self.on_step is not None:
                            self.on_step(s)
                    stats.frames += len(steps)
                    stage = self.pipeline.stage_s
                    stage["adapter"] = adapter_s
                    stage["data_age"] = age
                    stats.stages.add(stage)
                    latency = issued - self.source.local_time(steps[-1].frame.time)
                    stats.latency.add(latency)
                    if self.on_command is not None:
                        self.on_command(steps[-1].allowed, latency, stage)
                    status.update(now, t_first, steps[-1], age, stats)
            if wd.last_frame is None:
                if now > first_frame_deadline:
                    stats.stop_reason = (
                        f"no frame within {first_frame_deadline - t_start:.1f} s of the start "
                        f"({self.source.samples_in} samples received)"
                    )
                    return False
            else:
                trip = wd.check(now)
                if trip is not None and trip.kind == "frame":
                    stats.watchdog_trips += 1
                    with self._lock:
                        ramp = safety.ramp_down(now, trip.reason, emergency=True)
                        self._apply(ramp, clock)
                    if ramp.extra.get("abort", 0.0) >= 1.0 and not safety.stopped:
                        getattr(self.adapter, "rearm", lambda: None)()  # an abort disarms rTMS/TUS devices
            if safety.stopped and not safety.active:
                stats.stop_reason = safety.stop_reason
                return False
            if self.recording.error is not None:
                stats.stop_reason = f"recording failed: {self.recording.error}"
                return False
            if t_first is not None and now - t_first >= self.duration_s:
                return False

    def _apply(self, cmd, clock) -> None:
        try:
            now = clock()
            self.adapter.apply(cmd, now)
            if self.recording is not None:
                self.recording.on_applied(cmd, now, now - self.source.local_time(cmd.time))
            self.stats.commands_applied += 1
            self.stats.amplitude_max = max(self.stats.amplitude_max, cmd.amplitude_mA)
        except LimitViolation:
            self.stats.adapter_refusals += 1

    def _ramp_down(self, clock, emergency: bool = False) -> None:
        """Ramp to zero (normal rate, or the emergency rate after a fault); a Ctrl-C here switches to emergency."""
        safety = self.pipeline.safety
        reason = f"session end: {self.stats.stop_reason}"
        if getattr(self.adapter, "fault", None):
            return  # a faulted adapter has already driven its device to the safe state
        while safety.active:
            try:
                if self.watchdog is not None:
                    self.watchdog.heartbeat(clock())  # the ramp-down loop is the loop now
                with self._lock:
                    self._apply(safety.ramp_down(clock(), reason, emergency=emergency), clock)
                time.sleep(0.02)
            except KeyboardInterrupt:
                emergency = True
                reason = "emergency stop (second Ctrl-C)"
                getattr(self.adapter, "emergency_stop", lambda: None)()

    def _shutdown(self) -> None:
        for action in (
            getattr(self.watchdog, "stop", None),
            self.adapter.stop,
            getattr(self.inlets, "stop", None),
            getattr(self.source, "close", None),
            getattr(self.publisher, "stop", None),
        ):
            if action is None:
                continue
            try:
                action()
            except Exception:  # noqa: BLE001 - shutdown must reach every step
                pass

    def _summary(self, started: str) -> dict:
        return build_summary(self.resolved, self.pipeline, self.stats, started, self.duration_s)


class _StatusLine:
    """A single refreshed console line: time, features, amplitude, data age, latency.

    In a blinded session (``display_state`` hides the arm) neither the
    amplitude nor the on/off state is shown.
    """

    def __init__(self, enabled: bool, pipeline: Pipeline) -> None:
        self.enabled = enabled
        self.names = pipeline.feature_names
        self.controller = pipeline.controller
        self.safety = pipeline.safety
        self.blinded = bool(
            getattr(pipeline.controller, "config", None) is not None
            and getattr(pipeline.controller.config, "blinded", False)
        )
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
        if self.blinded:
            shown = display_state(self.controller)
            stim = "  " + " ".join(f"{k}={v:g}" for k, v in shown.items()) + " (blinded)"
        elif self.safety.modality != "tes":
            stim = f"  stim={'ON ' if self.safety.active else 'off'}"
        else:
            stim = f"  amp={step.allowed.amplitude_mA:.3f} mA{' ON ' if step.desired.on else ' off'}"
        events = sum(self.safety.counts.values())
        line = (
            f"t={now - t0:6.1f}s  {feats}{stim}  age={data_age * 1e3:5.1f} ms  "
            f"lat={stats.latency.quantile(0.5) * 1e3:5.2f} ms"
            f"{f'  safety events {events} (clamps {self.safety.clamps})' if events else ''}"
            f"{'  BEHIND x' + str(stats.behind) if stats.behind else ''}"
        )
        self._live.update(line, refresh=True)

    def __del__(self) -> None:
        if self._live is not None:
            self._live.stop()
