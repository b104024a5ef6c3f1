"""The one session driver: the per-chunk work of every session, live or replayed.

:class:`SessionDriver` takes a chunk, runs it through the
:class:`~closedloop.pipeline.Pipeline`, hands every allowed command to the
adapter (in order: none is dropped, so every fire and abort reaches the
device), records the chunk, the frames and the applied commands, keeps the
counters, and says when the session must stop. The live runtime
(:mod:`closedloop.live.runtime`) adds only a source, the local clock, the
watchdog thread, stop signals and the status line; a replay
(:mod:`closedloop.offline.replay`) adds only a file and the sample clock. So
a replay of a recorded live session ends with the same counters and the same
stop reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np

from closedloop.adapters.base import Adapter, LimitViolation
from closedloop.session.summary import SessionStats
from closedloop.session.telemetry import RunningStats
from closedloop.types import Chunk, Command

if TYPE_CHECKING:
    from closedloop.pipeline import Pipeline, Step
    from closedloop.recording.session import SessionRecording


class SessionDriver:
    """Run chunks through a pipeline into an adapter, recording and counting as it goes.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline (its safety layer runs on the session's clock).
    adapter : Adapter
        Connected and armed before the first chunk.
    clock : callable
        The session's clock (the time commands are issued at): the local
        monotonic clock live, the safety layer's clock in a replay.
    local_time : callable
        Maps a frame time (the pipeline's time base) to ``clock``'s time base,
        for the latency of each command.
    recording : SessionRecording, optional
        Where the chunks, frames, commands and events go.
    duration_s : float, optional
        End the session once this much data (s, counted in samples) has been
        processed — so a replay ends where the live session did.
    on_step : callable, optional
        Called with every :class:`~closedloop.pipeline.Step`.
    at_frame_times : bool
        Issue each frame's command at the safety layer's time of that frame
        (:attr:`~closedloop.pipeline.Step.safety_time`) instead of reading
        ``clock`` once the chunk's frames are computed. For a replay, whose
        clock is the sample (or recorded) clock: the adapter, the recorded
        issue times and latencies then do not depend on how the file was cut
        into chunks. Live, ``clock`` is read at the moment each command goes out.

    Attributes
    ----------
    lock : threading.Lock
        Held while a chunk's commands are computed and applied; a watchdog
        thread takes it before it stops the output, so no older command can
        follow its emergency stop.
    stats : SessionStats
        The counters (written to ``summary.json``).
    on_applied : callable or None
        Called with ``(command, issue time, latency_s)`` after every command
        the adapter accepted (the live session publishes them).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        adapter: Adapter,
        clock: Callable[[], float],
        local_time: Callable[[float], float],
        recording: SessionRecording | None = None,
        duration_s: float | None = None,
        on_step: Callable[[Step], None] | None = None,
        at_frame_times: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.adapter = adapter
        self.clock = clock
        self.local_time = local_time
        self.recording = recording
        self.duration_samples = None if duration_s is None else round(duration_s * pipeline.resolved.config.sfreq)
        self.on_step = on_step
        self.at_frame_times = at_frame_times
        self.lock = threading.Lock()
        self.stats = SessionStats()
        self.stats.feature_stats = RunningStats(len(pipeline.feature_names))
        self._rows = np.empty((64, len(pipeline.feature_names)))  # a chunk's feature rows
        self._applied_rows = np.empty((64, 5))  # a chunk's applied commands, as recorded
        self._issue_times = np.empty(64)
        self.adapter_s = 0.0  # time spent handing the last chunk's commands to the adapter
        self.issued = float("nan")  # clock time once the last chunk's commands were handed to the adapter
        self.on_applied: Callable[[Command, float, float], None] | None = None
        #: called at the start of every chunk, before its frames (live: the rating inlet's poll, so the
        #: frames see every rating that has arrived; it must not block)
        self.before_chunk: Callable[[], object] | None = None

    @property
    def safety(self):
        """The pipeline's safety layer."""
        return self.pipeline.safety

    def warmup(self) -> None:
        """Compile every numba kernel the driver runs before the session clock starts."""
        self.pipeline.warmup()
        self.stats.feature_stats.warmup()

    # -- per chunk ----------------------------------------------------------------
    def feed(self, chunk: Chunk, raw_data: np.ndarray, raw_timestamps: np.ndarray) -> list[Step]:
        """Run ``chunk`` (µV, pipeline time base), apply every allowed command, record everything, count.

        The recording is written after the commands went to the adapter (off
        the loop's latency path): the raw chunk even when a stage raised.

        Parameters
        ----------
        chunk : Chunk
            The samples in µV with timestamps in the pipeline's time base.
        raw_data, raw_timestamps : ndarray
            The same samples exactly as received (the source's unit, its own
            timestamps): what the recording keeps.
        """
        recording = self.recording
        if self.before_chunk is not None:
            self.before_chunk()
        try:
            with self.lock:
                steps = self.pipeline.process(chunk)
                if steps:
                    t0 = perf_counter()
                    applied = self._apply_frames(steps)
                    t1 = perf_counter()  # read before the issue time: the adapter's time lies inside the loop's own
                    self.issued = self.clock()
                    self.adapter_s = t1 - t0
                    if applied:
                        self._record_applied(applied)
        finally:
            if recording is not None:
                recording.on_chunk(raw_data, raw_timestamps)
        if not steps:
            return steps
        if recording is not None:
            recording.on_steps(steps)
        stats = self.stats
        k = len(steps)
        stats.frames += k
        rows = self._rows
        if k > rows.shape[0]:
            rows = self._rows = np.empty((2 * k, rows.shape[1]))
        frames = [s.frame for s in steps]
        rows[:k] = [frame.values for frame in frames]  # one kernel call per chunk for the feature statistics
        for frame in frames:
            if frame.flags:
                stats.count_flags(frame.flags)
        stats.feature_stats.add_rows(rows, k)
        on_step = self.on_step
        if on_step is not None:
            for s in steps:
                on_step(s)
        return steps

    def _apply_frames(self, steps: list[Step]) -> list[Command]:
        """Hand each frame's allowed command to the adapter, as :meth:`apply` does; return those to record.

        Their rows wait in a preallocated buffer for :meth:`_record_applied` (one push per chunk); if
        the adapter raises, what reached it is recorded before the error goes on.
        """
        clock, adapter, stats, recording = self.clock, self.adapter, self.stats, self.recording
        if recording is not None and len(steps) > self._applied_rows.shape[0]:
            self._applied_rows = np.empty((2 * len(steps), 5))
            self._issue_times = np.empty(2 * len(steps))
        rows, issued, commands = self._applied_rows, self._issue_times, []
        local_time, on_applied, at_frame_times = self.local_time, self.on_applied, self.at_frame_times
        keeps = recording is not None or on_applied is not None
        applied, top = 0, stats.amplitude_max  # counted here, stored once (also when the adapter raises)
        try:
            for s in steps:
                command = s.allowed
                now = s.safety_time if at_frame_times else clock()
                try:
                    adapter.apply(command, now)
                except LimitViolation:
                    stats.adapter_refusals += 1
                    continue
                if keeps:
                    t = command.time
                    latency = now - local_time(t)
                    if recording is not None:
                        n = len(commands)
                        rows[n] = (command.amplitude_mA, command.frequency_Hz, command.on, t, latency)
                        issued[n] = now
                        commands.append(command)
                    if on_applied is not None:  # the session's published outputs (LSL, dashboard)
                        on_applied(command, now, latency)
                applied += 1
                if command.amplitude_mA > top:
                    top = command.amplitude_mA
                if command.abort and not self.safety.stopped:
                    adapter.rearm()  # an abort disarms rTMS/TUS devices
        except BaseException:
            if commands:
                self._record_applied(commands)
            raise
        finally:
            stats.commands_applied += applied
            stats.amplitude_max = top
        return commands

    def _record_applied(self, commands: list[Command]) -> None:
        """Record the commands :meth:`_apply_frames` applied (their rows are in the buffer) in one push."""
        n = len(commands)
        self.recording.on_applied_rows(self._applied_rows[:n], self._issue_times[:n], commands)

    def apply(self, command: Command, counted: bool = False) -> None:
        """Hand ``command`` to the adapter now; record it; count it (``counted``: a frame's command).

        A refusal by the adapter (outside the device profile) is counted, not
        raised: the adapter has driven its device to the safe state. After an
        abort that did not end the session (a watchdog ramp cut a train), the
        device is re-armed so stimulation may resume with fresh frames.
        """
        now = self.clock()
        try:
            self.adapter.apply(command, now)
        except LimitViolation:
            self.stats.adapter_refusals += 1
            return
        if self.recording is not None or self.on_applied is not None:
            latency = now - self.local_time(command.time)
            if self.recording is not None:
                self.recording.on_applied(command, now, latency)
            if self.on_applied is not None:
                self.on_applied(command, now, latency)
        if counted:
            self.stats.commands_applied += 1
        else:
            self.stats.shutdown_commands += 1
        if command.amplitude_mA > self.stats.amplitude_max:
            self.stats.amplitude_max = command.amplitude_mA
        if command.abort and not self.safety.stopped:
            self.adapter.rearm()  # an abort disarms rTMS/TUS devices

    # -- stop rules -------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        """Return why the session must end now (``None``: it goes on).

        In order: a device fault; the safety layer latched a stop and the
        output is off; the recording failed; the requested duration of data
        has been processed.
        """
        fault = self.adapter.fault
        if fault:
            return f"device fault: {fault}"
        safety = self.safety
        if safety.stopped and not safety.active:
            return safety.stop_reason
        if self.recording is not None and self.recording.error is not None:
            return f"recording failed: {self.recording.error}"
        if self.duration_samples is not None and self.pipeline.samples_in >= self.duration_samples:
            return "duration reached"
        return None
