"""The live runtime: an LSL source, the local clock, the watchdog thread, stop signals, a status line.

The per-chunk work is the :class:`~closedloop.session.driver.SessionDriver`'s
(the same as a replay's). What this module adds is what only a live session
has: the source (resolved, checked, pulled with a timeout — the loop never
sleeps on a timer), the local monotonic clock the safety layer and the
watchdog run on, the source's timestamps checked against that clock, the
watchdog thread for a stalled loop or a silent device, stop signals (Ctrl-C,
SIGTERM, SIGHUP, SIGQUIT, CTRL_BREAK) that ramp stimulation down, and the
status line. Whatever ends the session — duration, a signal, a lost, stalled
or lying source, bad data, a device fault, a full disk, a bug — stimulation
ramps down, the summary is written (atomically, or to a fallback folder), and
the recording gets its footers and report.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from closedloop.adapters import Adapter, DeviceFault, build_adapter
from closedloop.config import LSLSourceConfig, ResolvedPipeline, SyntheticSourceConfig
from closedloop.live.outputs import SessionOutputs
from closedloop.live.signals import SessionInterrupted, StopSignals
from closedloop.live.warmup import Warmup
from closedloop.lslconfig import configure_lsl
from closedloop.safety.watchdog import Watchdog, WatchdogTrip
from closedloop.session.clocks import MonotonicClock
from closedloop.sources import LSLSource, Source, SourceError
from closedloop.sources.timestamps import TimestampMonitor

if TYPE_CHECKING:
    # The processing stack (numba, scipy.signal, the stages), the session driver and the recording (numba
    # too) are imported by the warm-up thread while the stream is resolved (closedloop.live.warmup), and
    # here where they are used, once it is done: none of it delays the start of the resolve.
    from closedloop.pipeline import Pipeline, Step
    from closedloop.recording import SessionRecording
    from closedloop.recording.inlets import StreamInlets
    from closedloop.session.driver import SessionDriver
    from closedloop.session.summary import SessionStats

log = logging.getLogger(__name__)


def default_out_dir(resolved: ResolvedPipeline) -> Path:
    """Return ``<output.folder>/<YYYYmmdd-HHMMSS>-<pipeline name>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(resolved.config.output.folder) / f"{stamp}-{resolved.config.pipeline.name}"


def _build_source(resolved: ResolvedPipeline, stim_amplitude: Callable[[], float]) -> tuple[Source, object | None]:
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
        pub = SynthPublisher(
            gen,
            name=name,
            source_id=name,
            chunk_size=src.chunk_size,
            stim_amplitude=stim_amplitude,
            # like an amplifier switched on before the session: the first window is there when the loop starts
            preroll_s=resolved.config.features.window_samples / src.sfreq,
        )
        pub.start()
        source = LSLSource(
            name=name,
            type="EEG",
            source_id=name,
            sfreq=src.sfreq,
            ch_names=gen.ch_names,
            n_channels=src.n_channels,
            # our own in-process stream cannot be missing, only slow to answer on a busy machine (its first
            # clock-offset query took over 2 s with a browser and two CPU hogs on 2 cores): wait longer for it
            resolve_timeout_s=15.0,
            stall_timeout_s=src.stall_timeout_s,
            features=resolved.config.features,
            preprocess=resolved.config.preprocess,
            settle_s=0.0,  # our own stream, under a name made up now: no second stream can match it
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
        poll=src.poll,
        features=resolved.config.features,
        preprocess=resolved.config.preprocess,
    )
    return source, None


class LiveSession:
    """Run a resolved pipeline live for ``duration_s`` seconds of data.

    Parameters
    ----------
    resolved : ResolvedPipeline
        Validated pipeline and device profile.
    duration_s : float
        Session length, counted in samples received (so a replay of the
        recording ends at the same sample).
    out_dir : Path
        Session folder (created when the recording starts; nothing is left
        behind by a start that fails before).
    show_status : bool
        Show a live status line (rich).
    on_step : callable, optional
        Called with every :class:`~closedloop.pipeline.Step` (tests, custom displays).
    on_command : callable, optional
        Called after every chunk's commands with ``(newest allowed command, loop_latency_s, stage_s)``;
        ``stage_s`` holds the :data:`~closedloop.session.telemetry.STAGES` and ``"in_process"`` (from
        the pull's return to the command's issue: the loop's own share of the latency).
    adapter : Adapter, optional
        Use this adapter instead of the one the device profile names.
    identity : dict, optional
        Participant and session identifiers (summary and recording).
    on_progress : callable, optional
        Called with a short message at each start-up and shut-down phase.
    clock : callable, optional
        The local monotonic clock (default ``pylsl.local_clock``); tests may inject one.
    dashboard : DashboardOptions, optional
        Serve the live dashboard (docs/dashboard.md); its URL is told through ``on_progress``.
    """

    def __init__(
        self,
        resolved: ResolvedPipeline,
        duration_s: float,
        out_dir: Path,
        show_status: bool = True,
        on_step: Callable[[Step], None] | None = None,
        on_command: Callable[[object, float, dict], None] | None = None,
        adapter: Adapter | None = None,
        identity: dict[str, str] | None = None,
        on_progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] | None = None,
        dashboard=None,
    ) -> None:
        self.resolved = resolved
        self.duration_s = duration_s
        self.out_dir = Path(out_dir)
        self.show_status = show_status
        self.on_step = on_step
        self.on_command = on_command
        self.identity = dict(identity or {})
        self.on_progress = on_progress
        configure_lsl(getattr(resolved.config.source, "scope", None))
        self.clock = MonotonicClock(clock)
        self.adapter: Adapter = (
            adapter
            if adapter is not None
            else build_adapter(resolved.profile, motor_threshold_pct_mso=resolved.config.device.motor_threshold_pct_mso)
        )
        self._stats: SessionStats | None = None  # the driver's once the pipeline is built
        self.summary_path: Path | None = None
        self._driver: SessionDriver | None = None
        self._trip: WatchdogTrip | None = None
        self._rehearsal = None  # the twin pipeline a busy-polling loop steps before each chunk (live/rehearsal.py)
        self._ratings = None  # the rating inlet ([ratings])
        self._t_first: float | None = None
        self._elapsed_s = 0.0
        self.dashboard_options = dashboard
        self.outputs: SessionOutputs | None = None  # LSL streams and the dashboard (live/outputs.py)
        self._signals: StopSignals | None = None

    @property
    def stats(self) -> SessionStats:
        """The session's counters (the driver's once :meth:`run` has built it)."""
        if self._stats is None:
            from closedloop.session.summary import SessionStats

            self._stats = SessionStats()
        return self._stats

    @stats.setter
    def stats(self, stats: SessionStats) -> None:
        self._stats = stats

    @property
    def driver(self) -> SessionDriver:
        """The session driver (built by :meth:`run` once the source is open)."""
        if self._driver is None:
            raise RuntimeError("the session driver exists once run() has opened the source")
        return self._driver

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline that runs (built by :meth:`run` once the source is open)."""
        return self.driver.pipeline

    def _say(self, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(message)

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> dict:
        """Run the session; whatever ends it, ramp down, stop the device and write the summary.

        Raises
        ------
        SourceError
            If the source cannot be opened (nothing was started or written).
        OSError
            If the output folder cannot hold the recording (checked before stimulation).

        Notes
        -----
        Python's cyclic garbage collector is process-wide: the session turns it
        off for its start-up, freezes what the start-up made when the loop
        starts (``gc.freeze``) and turns it back on for the loop; when the
        session ends, it unfreezes and leaves the collector as it found it.
        """
        with StopSignals() as signals:
            self._signals = signals
            collecting = gc.isenabled()
            # The start-up (imports, kernels, the recording's set-up) makes long-lived objects, not garbage:
            # the cyclic collector's passes over them (~0.2 s before the first frame, two of them full
            # collections) would only delay the first frame. It stays off until the loop starts, which
            # freezes all of it and turns the collector back on (_run).
            gc.disable()
            try:
                return self._run(signals, collecting)
            finally:
                if collecting:
                    gc.enable()
                if self.outputs is not None:
                    self.outputs.close()  # also when the start failed: the dashboard's port is released

    def request_stop(self, emergency: bool = False, who: str = "operator") -> str:
        """Stop the session from another thread (the dashboard), as a stop signal does; return what was done.

        The stop ramps stimulation down through the safety layer at the
        profile's rate (``emergency``: at the emergency rate, with the
        device's own emergency stop), and is logged with ``who`` and the
        wall-clock time as an ``operator`` safety event in ``session.xdf``.
        """
        kind = "emergency stop" if emergency else "stop"
        signals = self._signals
        if signals is None or signals.done:
            return f"no session is running: {kind} ignored"
        when = datetime.now().astimezone().isoformat(timespec="seconds")
        if self._driver is not None:
            self._driver.safety.note("operator", f"{kind} requested by {who} at {when}")
        signals.request(f"{kind} from the dashboard by {who}", emergency)
        return f"{kind} requested by {who} at {when}"

    def _run(self, signals: StopSignals, collecting: bool) -> dict:
        cfg = self.resolved.config
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        outputs = self.outputs = SessionOutputs(self, cfg.output.publish, self.dashboard_options)  # binds its port
        self._say("looking for the EEG stream")
        # The processing stack loads while the source is built and liblsl waits for the stream; nothing else
        # loads in the background once the loop may run (the report's plotting stack waits for the end).
        warm = Warmup(self.resolved).start()
        source, publisher = _build_source(self.resolved, lambda: self.adapter.output_mA(self.clock()))
        self.source, self.publisher = source, publisher
        driver: SessionDriver | None = None
        recording: SessionRecording | None = None
        inlets: StreamInlets | None = None
        watchdog: Watchdog | None = None
        frozen = False
        try:
            try:
                try:
                    source.open()
                finally:
                    warm.join()
                from closedloop.pipeline import Pipeline
                from closedloop.recording import SessionRecording
                from closedloop.session.driver import SessionDriver

                self._say(source.describe())
                for note in source.notes:
                    self._say(f"note: {note}")
                pipeline = Pipeline(self.resolved, source.ch_names, clock=self.clock, ch_types=source.ch_types)
                driver = SessionDriver(
                    pipeline,
                    self.adapter,
                    self.clock,
                    source.local_time,
                    duration_s=self.duration_s,
                    on_step=self.on_step,
                )
                self._driver = driver
                self.stats = driver.stats
                live_timing = getattr(pipeline.controller, "use_live_timing", None)
                if live_timing is not None:  # e.g. a phase trigger measures the delay to each pulse
                    live_timing(self.clock, source.local_time, self.adapter)
                self._say("compiling the feature kernels")
                driver.warmup()
                if getattr(cfg.source, "poll", "wait") == "busy":  # the loop spins anyway: it keeps its code warm
                    from closedloop.live.rehearsal import Rehearsal

                    self._rehearsal = Rehearsal(self.resolved, source.ch_names, source.ch_types)
                # checks the folder (writable, free space) and raises before anything is stimulated
                recording = SessionRecording.for_source(
                    self.out_dir,
                    self.resolved,
                    source,
                    pipeline,
                    report=cfg.recording.report,
                    session_info={"requested_duration_s": repr(float(self.duration_s))},
                    identity=self.identity,
                )
                driver.recording = recording
                self.adapter.on_record = recording.on_io  # every byte to and from the device, in session.xdf
                self._say(f"recording to {recording.path}")
                outputs.open(driver, recording, source)
                inlets = self._record_other_streams(recording, publisher, outputs.record_queries)
                outputs.check_recorded(inlets, recording)
                self._ratings = self._open_ratings(driver, recording)
                self._say(f"connecting to {self.resolved.profile.device.name}")
                self.adapter.connect()
                self.adapter.arm()
                self._wait_until_ready(signals)
                watchdog = outputs.watchdog = self._start_watchdog(driver)
                # start on the newest data: what queued during the start, but its newest window (the first
                # frame's, fresh: a stream that went quiet meanwhile keeps nothing), is dropped
                source.flush(keep=pipeline.features.window)
                signals.starting = False
                if signals.requested is not None:
                    raise SessionInterrupted(signals.requested)
                self._say("running")
                outputs.marker("start")
                # Everything the start-up made (~230k objects: numba, scipy, mne) leaves the cyclic garbage
                # collector's reach until the session ends: a full collection of it costs ~0.1 s on a quiet
                # machine and several times that on a busy one, enough to trip the loop watchdog (0.3 s)
                # whenever Python decides to run one. Collections now only walk what the session makes.
                gc.freeze()
                frozen = True
                if collecting:
                    gc.enable()
                emergency = self._loop(driver, source, watchdog, signals)
                self._ramp_down(driver, watchdog, signals, emergency)
            except SessionInterrupted:
                self.stats.stop_reason = signals.reason
                if driver is not None and recording is not None:
                    self._ramp_down(driver, watchdog, signals, emergency=False)
            except SourceError as e:
                if recording is None:
                    raise  # nothing started, nothing written: the caller reports it
                self.stats.stop_reason = f"source error: {e}"
                self._ramp_down(driver, watchdog, signals, emergency=True)
            except DeviceFault as e:
                self.stats.stop_reason = f"device fault: {e}"
            except Exception as e:  # a bug or an unexpected error: the output goes off first
                self._emergency_off()
                if recording is None:
                    raise
                log.exception("session stopped by an internal error")
                self.stats.stop_reason = f"internal error: {type(e).__name__}: {e}"
        finally:
            if frozen:
                gc.unfreeze()  # the process (a study running session after session, a test suite) collects as before
            signals.starting = True
            self._shutdown(watchdog, inlets, source, publisher)
            outputs.end(self.stats.stop_reason)  # the end marker, while the summary and report are written
        summary = None
        try:
            summary = self._finish(driver, recording, started)
        finally:
            outputs.close(summary)
        return summary

    def _wait_until_ready(self, signals: StopSignals, timeout_s: float = 10.0) -> None:
        """Wait until an armed device that reports readiness (a stimulator charging) is ready to fire.

        Adapters of real stimulators wait in ``arm()`` (the Magstim polls until
        the unit reports ready); one with a ``ready(now)`` method returns at
        once, and the first frame — there as soon as the loop runs — must not
        fire into a device still charging.
        """
        ready = getattr(self.adapter, "ready", None)
        if not callable(ready):
            return
        deadline = self.clock() + timeout_s
        while not ready(self.clock()) and signals.requested is None:
            if self.clock() > deadline:
                name = self.resolved.profile.device.name
                raise DeviceFault(f"{name}: not ready to fire {timeout_s:g} s after arming")
            time.sleep(0.005)  # a device's charging time, polled

    def _open_ratings(self, driver: SessionDriver, recording: SessionRecording):
        """``[ratings]``: pull the rating stream before each chunk, record it, feed the frames."""
        cfg = self.resolved.config.ratings
        if cfg is None:
            return None
        from closedloop.pain.ratings import RatingInlet, RatingTrack

        track = driver.pipeline.ratings if driver.pipeline.ratings is not None else RatingTrack(cfg.scale)
        inlet = RatingInlet(cfg, track, recording).open()
        self._say(f"ratings from {inlet.name!r}" if inlet.name else "no rating stream found: rating stays NaN")
        driver.before_chunk = inlet.poll
        return inlet

    def _record_other_streams(self, recording: SessionRecording, publisher, extra=()) -> StreamInlets | None:
        rec_cfg = self.resolved.config.recording
        queries = [q.model_dump(exclude={"required"}, exclude_none=True) for q in rec_cfg.streams]
        queries += extra  # the dashboard's ratings
        if publisher is not None:
            queries.append({"name": publisher.marker_name, "source_id": publisher.marker_source_id, "own": True})
        if not queries:
            return None
        from closedloop.recording.inlets import StreamInlets

        inlets = StreamInlets(recording, queries).start()
        missing = [q for q in rec_cfg.streams if q.required and q.name and q.name not in inlets.names]
        if missing:
            inlets.stop()
            raise SourceError(
                f"recording.streams: required stream(s) not found: {[q.model_dump(exclude_none=True) for q in missing]}"
            )
        return inlets

    def _start_watchdog(self, driver: SessionDriver) -> Watchdog:
        opts = self.resolved.profile.adapter_options
        ack = opts.get("ack_timeout_s")
        timeout = driver.safety.env.watchdog_timeout_s
        watchdog = Watchdog(
            frame_timeout_s=timeout,
            loop_timeout_s=timeout,
            device_timeout_s=float(ack) if ack is not None else None,
            clock=self.clock,
        )
        self.adapter.on_ack = lambda: watchdog.device_ack(self.clock())
        watchdog.start(lambda trip: self._on_trip(trip, driver))
        return watchdog

    def _on_trip(self, trip: WatchdogTrip, driver: SessionDriver) -> None:
        """From the watchdog thread: the loop stalled or the device went silent — stop the output now.

        The safety layer latches the stop (one ``watchdog`` event) here if the
        loop does not hold the driver's lock, else the loop does as soon as it
        runs again (:meth:`_latch_trip`); the device is stopped either way.
        """
        self._trip = trip
        self.stats.watchdog_trips += 1
        self.adapter.emergency_stop()
        if driver.lock.acquire(timeout=0.05):  # the loop may hold it while stalled; the device is already stopping
            try:
                driver.safety.emergency_stop(trip.reason, kind="watchdog")
            finally:
                driver.lock.release()

    @staticmethod
    def _latch_trip(driver: SessionDriver, trip: WatchdogTrip) -> None:
        """Latch ``trip``'s stop in the safety layer, in case :meth:`_on_trip` could not take the lock.

        Latching twice logs nothing more (the layer logs a latch once), so a
        trip is one ``watchdog`` event whichever thread latched it.
        """
        with driver.lock:
            command = driver.safety.emergency_stop(trip.reason, kind="watchdog")
            if not driver.adapter.fault:  # a faulted adapter has already driven its device to the safe state
                driver.apply(command)

    def _loop(self, driver: SessionDriver, source: Source, wd: Watchdog, signals: StopSignals) -> bool:
        """Run until the session ends; return whether it must end with an emergency ramp."""
        cfg = self.resolved.config
        stats = driver.stats
        safety = driver.safety
        clock = self.clock
        hop = cfg.features.hop_samples
        hop_s = hop / cfg.sfreq
        typical_chunk = float(hop)  # running mean of pulled chunk sizes, to tell a backlog from the source's chunking
        from closedloop.live.status import StatusLine

        status = StatusLine(self.show_status, driver.pipeline, self.duration_s)
        src_cfg = cfg.source
        timestamps = TimestampMonitor(
            cfg.sfreq,
            getattr(src_cfg, "clock_tolerance_s", 1.0),
            getattr(src_cfg, "clock_timeout_s", 2.0),
        )
        window_s = cfg.features.window_samples / cfg.sfreq
        t_start = clock()
        first_frame_deadline = t_start + window_s + max(2.0, 5 * wd.frame_timeout_s)
        frame_tripped = None  # the last frame before the watchdog's latest frame trip
        rehearsal = self._rehearsal
        try:
            while True:
                if signals.requested is not None:
                    stats.stop_reason = signals.reason
                    return signals.emergency
                timeout = 0.02
                if rehearsal is not None and rehearsal.due is not None:  # back in time for the twin's step
                    timeout = min(timeout, max(0.0, rehearsal.due - clock()))
                try:
                    chunk = source.pull(timeout=timeout)
                except SourceError as e:
                    stats.stop_reason = f"source lost: {e}"
                    return True
                now = clock()
                wd.heartbeat(now)
                if self._trip is not None:
                    stats.stop_reason = self._trip.reason
                    self._latch_trip(driver, self._trip)
                    return True
                if chunk is not None:
                    if self._t_first is None:
                        self._t_first = now
                    age = source.data_age
                    for problem in timestamps.check(float(chunk.timestamps[0]), source.newest_time, age, now):
                        stats.source_clock_events += 1
                        safety.note("clock", problem.reason)
                    if timestamps.bad_reason is not None:
                        stats.stop_reason = timestamps.bad_reason
                        return True
                    try:
                        steps = driver.feed(chunk, source.raw_data, source.raw_timestamps)
                    finally:  # the loop's own bookkeeping once the chunk's commands are out (off the latency path)
                        stats.data_age.add(age)
                        n = chunk.n_samples
                        if source.kept:  # the first window, kept at the start: not a backlog
                            n = 0
                        backlog = source.backlog or n > 2 * max(hop, typical_chunk)
                        typical_chunk += 0.01 * (n - typical_chunk) if n else 0.0
                        if (age > hop_s and n) or backlog:
                            stats.note_behind(age, n if backlog else 0, hop_s)
                    if rehearsal is not None:
                        rehearsal.after_chunk(chunk, now)
                    self.outputs.on_chunk(chunk)
                    if steps:
                        self._after_frames(driver, source, wd, status, steps, now, age)
                elif rehearsal is not None and rehearsal.due is not None and now >= rehearsal.due:
                    rehearsal.step()
                    stats.rehearsals = rehearsal.steps
                    if rehearsal.error is not None:
                        stats.warn(f"rehearsal stopped (the twin pipeline raised {rehearsal.error})")
                        rehearsal = None
                elif source.stalled:
                    stats.stop_reason = (
                        f"source stalled: no sample for more than {source.stall_timeout_s:g} s "
                        f"({source.samples_in} samples received)"
                    )
                    return True
                if wd.last_frame is None:
                    if now > first_frame_deadline:
                        stats.stop_reason = (
                            f"no frame within {first_frame_deadline - t_start:.1f} s of the start "
                            f"({source.samples_in} samples received)"
                        )
                        return False
                else:
                    trip = wd.check(now)
                    if trip is not None and trip.kind == "frame":
                        if wd.last_frame != frame_tripped:  # a new trip, not the same one seen again
                            frame_tripped = wd.last_frame
                            stats.watchdog_trips += 1
                        with driver.lock:
                            driver.apply(safety.ramp_down(trip.reason, emergency=True))
                reason = driver.stop_reason()
                if reason is not None:
                    stats.stop_reason = reason
                    return reason.startswith("device fault")
        finally:
            status.close()

    def _after_frames(self, driver, source, wd, status, steps, now, age) -> None:
        """Telemetry and displays after a chunk produced frames."""
        stats = driver.stats
        if wd.last_frame is None:
            self._say("first frame")
        wd.frame(now)
        stage = dict(driver.pipeline.stage_s)
        stage["adapter"] = driver.adapter_s
        stage["data_age"] = age
        stats.stages.add(stage)
        latency = driver.issued - source.local_time(steps[-1].frame.time)
        stats.latency.add(latency)
        in_process = driver.issued - now  # the pull returned -> the command was issued: the loop's own share
        stats.in_process.add(in_process)
        self._elapsed_s = driver.pipeline.samples_in / self.resolved.config.sfreq
        if self.on_command is not None:
            self.on_command(steps[-1].allowed, latency, {**stage, "in_process": in_process})
        self.outputs.on_frames(steps, latency, age)
        status.update(now, self._elapsed_s, steps[-1], age, stats, self.adapter.fault)

    def _ramp_down(self, driver: SessionDriver, wd: Watchdog | None, signals: StopSignals, emergency: bool) -> None:
        """Ramp to zero at the normal rate (or the emergency rate); a second stop signal switches to emergency."""
        if self.outputs is not None:
            self.outputs.marker("stop", reason=driver.stats.stop_reason)
        if self.adapter.fault:
            return  # a faulted adapter has already driven its device to the safe state
        safety = driver.safety
        reason = f"session end: {driver.stats.stop_reason}"
        kind = "stop"  # whatever the rate: a lost source ends the session at the emergency rate, no watchdog trip
        self._say("ramping stimulation down")
        deadline = self.clock() + self._ramp_time_bound(driver)
        stopped_adapter = False
        while safety.active:
            if signals.emergency and not emergency:
                emergency = True
                reason = f"emergency stop (second stop signal: {signals.requested})"
                kind = "emergency"
            if emergency and signals.emergency and not stopped_adapter:
                self.adapter.emergency_stop()
                stopped_adapter = True
            now = self.clock()
            if now > deadline:  # cannot happen with a working layer; never leave the output on
                safety.note("emergency", f"ramp-down did not finish by its bound; output cut at {now:.3f}")
                self._emergency_off()
                return
            if wd is not None:
                wd.heartbeat(now)  # the ramp-down loop is the loop now
            with driver.lock:
                driver.apply(safety.ramp_down(reason, emergency=emergency, kind=kind))
            time.sleep(0.02)

    def _ramp_time_bound(self, driver: SessionDriver) -> float:
        """Longest a final ramp may take: the ramp at the normal rate (tES) or a running train, plus margin."""
        env = driver.safety.env
        rate = getattr(env, "max_ramp_rate_mA_per_s", None)
        longest = driver.safety.amplitude_mA / rate if rate else 0.0
        train = getattr(driver.safety, "train", None)
        if train is not None:
            longest = max(longest, train.duration_s)
        return longest + 2.0

    def _emergency_off(self) -> None:
        try:
            self.adapter.emergency_stop()
        except Exception:  # noqa: BLE001 - the stop path must go on
            pass

    def _shutdown(self, watchdog, inlets, source, publisher) -> None:
        for action in (
            watchdog.stop if watchdog is not None else None,
            publisher.halt if publisher is not None else None,  # no pushes while its inlets disconnect
            self.adapter.stop,
            inlets.stop if inlets is not None else None,
            self._ratings.close if self._ratings is not None else None,
            source.close,
            publisher.stop if publisher is not None else None,
        ):
            if action is None:
                continue
            try:
                action()
            except Exception:  # noqa: BLE001 - shutdown must reach every step
                pass

    def _finish(self, driver: SessionDriver | None, recording: SessionRecording | None, started: str) -> dict:
        """Write summary.json (atomically, before the report), then the recording's footers and report."""
        from closedloop.recording.atomic import rescue_dirs, write_json_atomic
        from closedloop.session.summary import build_summary

        pipeline = driver.pipeline if driver is not None else None
        elapsed = pipeline.samples_in / self.resolved.config.sfreq if pipeline is not None else 0.0
        summary = build_summary(self.resolved, pipeline, self.stats, started, elapsed, self.duration_s, self.identity)
        if recording is not None:
            self._say("closing session.xdf (clock offsets, footers)")
            recording.finish()
            summary.update(recording.summary_fields())
        if recording is not None or self.out_dir.exists():
            self._say("writing summary.json")
            try:
                self.summary_path = write_json_atomic(
                    self.out_dir / "summary.json", summary, rescue_dirs(self.out_dir.name)
                )
            except OSError as err:  # every folder failed: the caller still gets the summary
                summary["summary_not_written"] = str(err)
                self._say(f"summary.json could not be written anywhere: {err}")
            else:
                if self.summary_path.parent != self.out_dir:
                    summary["summary_rescued_to"] = str(self.summary_path)
                    self._say(f"the session folder failed; summary.json written to {self.summary_path}")
        if recording is not None:
            if recording.report_enabled:
                self._say("writing report.html")
            recording.close(summary, self.stats)
        return summary
