"""A background recorder: the hot loop hands data over, a thread writes XDF.

The loop thread calls :meth:`Recorder.push` and :meth:`Recorder.push_clock_offset`,
which copy the data into a bounded queue and return at once; they never block
and never raise because of the disk. The recorder thread batches samples per
stream and writes one Samples chunk per stream at least every
``flush_interval_s`` (LabRecorder writes every 0.5 s), a Boundary chunk every
``boundary_interval_s``, and the footers on :meth:`Recorder.close`.

Clock offsets: a stream declared with a fixed ``clock_offset`` (a stream
stamped in the recording machine's clock has offset 0) gets a ClockOffset
chunk when its header is written, every ``offset_interval_s`` and at the
end, as LabRecorder writes measured ones, so that readers which synchronise
clocks (pyxdf) find offsets for every stream. Streams whose offsets are
measured (another machine's LSL clock) get what :meth:`Recorder.push_clock_offset`
is given.
"""

from __future__ import annotations

import errno
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from closedloop.recording.xdf import StreamSpec, XDFWriter, make_spec, stream_header_xml

__all__ = ["Recorder", "RecorderStats", "check_writable"]

_STOP = "stop"
_FLUSH = "flush"
_SAMPLES = "samples"
_OFFSET = "offset"
_PARTS = "parts"  # samples of several streams: (_PARTS, [(stream_id, values, stamps), ...])


@dataclass(slots=True)
class RecorderStats:
    """A snapshot of what a :class:`Recorder` has done.

    Attributes
    ----------
    samples_written : dict of int to int
        Samples written to the file, per stream id.
    bytes_written : int
        Bytes written to the file.
    dropped_pushes, dropped_samples : int
        Pushes (and their samples) discarded because the queue was full or
        the recorder had failed.
    queued : int
        Items waiting in the queue.
    last_error : str or None
        The writer thread's error, if any.
    footers_written : bool
        The file ends with every stream's footer (after :meth:`Recorder.close`,
        or after an error once the footers could still be written).
    """

    samples_written: dict[int, int] = field(default_factory=dict)
    bytes_written: int = 0
    dropped_pushes: int = 0
    dropped_samples: int = 0
    queued: int = 0
    last_error: str | None = None
    footers_written: bool = False


class Recorder:
    """Thread that owns an :class:`XDFWriter`, fed through a bounded queue.

    Parameters
    ----------
    path : str or Path
        The XDF file to create (an existing file is an error).
    file_info : dict of str to str, optional
        Extra FileHeader elements.
    flush_interval_s : float
        Longest time samples wait in memory before they are written.
    boundary_interval_s : float
        Interval between Boundary chunks; the file is also fsync'ed then.
    sync_interval_bytes : int
        The file is also fsync'ed whenever this many bytes were written since
        the last fsync: a fast offline replay puts its data on disk while it
        computes, instead of waiting for all of it at :meth:`close`.
    max_queue : int
        Most pushes waiting for the thread; more are dropped and counted.
    max_batch_samples : int
        A stream's batch is written early when it reaches this many samples.
    block_when_full : bool
        Make :meth:`push` wait for room in the queue instead of dropping
        (offline replays, where losing data is worse than waiting; never on
        a live loop).
    offset_interval_s : float
        Interval between the ClockOffset chunks of streams with a fixed offset.
    clock : callable
        Collection times of those ClockOffset chunks (``pylsl.local_clock``
        in a live session; by default :func:`time.monotonic`).

    Notes
    -----
    After an error on the writer thread (disk full, file deleted, ...) the
    recorder stops writing: :attr:`error` holds the exception, pushes are
    counted as dropped, and :meth:`close` returns without raising. The file
    is cut back to its last whole chunk and the footers are tried at once
    and again at :meth:`close` (space may have been freed); a file left
    without them is fixed by :func:`closedloop.recording.repair_xdf`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        file_info: Mapping[str, str] | None = None,
        flush_interval_s: float = 0.5,
        boundary_interval_s: float = 10.0,
        max_queue: int = 10_000,
        max_batch_samples: int = 100_000,
        block_when_full: bool = False,
        offset_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sync_interval_bytes: int = 8 << 20,
    ) -> None:
        if flush_interval_s <= 0 or boundary_interval_s <= 0 or offset_interval_s <= 0:
            raise ValueError("flush_interval_s, boundary_interval_s and offset_interval_s must be > 0")
        if max_queue < 1 or max_batch_samples < 1 or sync_interval_bytes < 1:
            raise ValueError("max_queue, max_batch_samples and sync_interval_bytes must be >= 1")
        self.path = Path(path)
        self.file_info = dict(file_info or {})
        self.flush_interval_s = float(flush_interval_s)
        self.boundary_interval_s = float(boundary_interval_s)
        self.max_batch_samples = int(max_batch_samples)
        self.block_when_full = bool(block_when_full)
        self.offset_interval_s = float(offset_interval_s)
        self.sync_interval_bytes = int(sync_interval_bytes)
        self._synced_bytes = 0  # bytes written at the last fsync (writer thread)
        self._clock = clock
        self._fixed_offsets: dict[int, float] = {}  # streams whose offsets the recorder writes
        self._declared: set[int] = set()  # streams whose header is in the file
        self._footers_written = False
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        # The writer thread sleeps until the next flush instead of waiting on the queue, so a push
        # from the hot loop never wakes a thread (no GIL hand-over per push); it is woken early only
        # when the queue is filling up or a flush/stop is asked for.
        self._wake = threading.Event()
        self._wake_at = max(1, max_queue // 4)
        self._specs: dict[int, StreamSpec] = {}
        self._pending_headers: list[tuple[StreamSpec, str]] = []
        self._lock = threading.Lock()
        self._next_id = 1
        self._thread: threading.Thread | None = None
        self._writer: XDFWriter | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._dropped_pushes = 0
        self._dropped_samples = 0
        self._samples_written: dict[int, int] = {}
        self._bytes_written = 0

    # -- caller side -----------------------------------------------------------
    def add_stream(
        self,
        name: str,
        type: str,
        channel_count: int,
        nominal_srate: float,
        channel_format: str,
        source_id: str = "",
        channels: Sequence[Mapping[str, str]] | None = None,
        desc_extra: str | Mapping[str, object] | None = None,
        created_at: float | None = None,
        clock_offset: float | None = None,
    ) -> int:
        """Declare a stream (before or after :meth:`start`); return its id.

        Parameters are those of :meth:`XDFWriter.add_stream` without the id,
        and ``clock_offset``: the stream's constant offset to the recording
        machine's clock (0 for a stream stamped in that clock), which the
        recorder writes as ClockOffset chunks; None (default) when offsets
        are measured and given to :meth:`push_clock_offset`.
        """
        if clock_offset is not None and not math.isfinite(clock_offset):
            raise ValueError(f"stream {name!r}: clock_offset must be finite, got {clock_offset}")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"recorder for {self.path} is closed")
            stream_id = self._next_id
            spec = make_spec(stream_id, name, channel_count, nominal_srate, channel_format)
            xml = stream_header_xml(spec, type, source_id, channels, desc_extra, created_at)
            self._next_id += 1
            self._specs[stream_id] = spec
            self._samples_written[stream_id] = 0
            self._pending_headers.append((spec, xml))
            if clock_offset is not None:
                self._fixed_offsets[stream_id] = float(clock_offset)
        return stream_id

    def push(
        self,
        stream_id: int,
        data: np.ndarray | Sequence[Sequence[str]],
        timestamps: np.ndarray | Sequence[float],
        *,
        copy: bool = True,
    ) -> None:
        """Queue samples for writing; copies them and returns at once.

        Parameters
        ----------
        stream_id : int
            An id returned by :meth:`add_stream`.
        data : ndarray, shape (n, channel_count), or list of lists of str
            Sample values; the caller may reuse its buffer after the call.
        timestamps : array of float64, shape (n,)
            Sample times, recorded exactly as given.
        copy : bool
            False: the caller hands ``data`` and ``timestamps`` over (arrays
            it built for this call and never touches again), so arrays
            already in the stream's dtype are queued without a copy.

        Raises
        ------
        KeyError, ValueError, TypeError
            For an unknown stream, or data of the wrong shape or type
            (programming errors). Disk problems never raise here: see
            :attr:`error`.
        """
        part = self.prepare(stream_id, data, timestamps, copy=copy)
        if part is not None:
            self._offer((_SAMPLES, *part), len(part[2]))

    def prepare(
        self,
        stream_id: int,
        data: np.ndarray | Sequence[Sequence[str]],
        timestamps: np.ndarray | Sequence[float],
        *,
        copy: bool = True,
    ) -> tuple[int, object, np.ndarray] | None:
        """Check and convert samples as :meth:`push` does, without queueing them.

        Returns ``(stream_id, values, timestamps)`` for :meth:`push_parts`,
        or None for no samples. Raises as :meth:`push`.
        """
        spec = self._specs.get(stream_id)
        if spec is None:
            raise KeyError(f"no stream with id {stream_id} in recorder {self.path}")
        stamps = np.array(timestamps, dtype=np.float64, copy=copy or None).reshape(-1)
        n = stamps.shape[0]
        if spec.channel_format == "string":
            values = [[str(v) for v in row] for row in data]
            if len(values) != n or any(len(row) != spec.channel_count for row in values):
                raise ValueError(f"stream {spec.name!r}: expected {n} samples of {spec.channel_count} strings")
        else:
            given = np.asarray(data)
            if not np.can_cast(given.dtype, spec.dtype, casting="same_kind"):
                raise TypeError(f"stream {spec.name!r}: cannot store {given.dtype} as {spec.channel_format}")
            values = np.array(given, dtype=spec.dtype, copy=copy or None)
            if values.ndim == 1 and spec.channel_count == 1:
                values = values.reshape(-1, 1)
            if values.shape != (n, spec.channel_count):
                raise ValueError(
                    f"stream {spec.name!r}: data of shape {values.shape} does not match "
                    f"({n} timestamps, {spec.channel_count} channels)"
                )
        return None if n == 0 else (stream_id, values, stamps)

    def push_parts(self, parts: Sequence[tuple[int, object, np.ndarray] | None]) -> None:
        """Queue samples of several streams as one queue item (parts from :meth:`prepare`; None skipped).

        The hot loop's form of :meth:`push`: one queue operation per chunk
        for all the streams it records. Each stream's samples keep their order.
        """
        parts = [p for p in parts if p is not None]
        if len(parts) == 1:
            self._offer((_SAMPLES, *parts[0]), len(parts[0][2]))
        elif parts:
            self._offer((_PARTS, parts), sum(len(p[2]) for p in parts), len(parts))

    def push_clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        """Queue a clock offset measurement for a stream (non-blocking).

        A measurement ends the fixed offset the stream may have been declared
        with: from then on its offsets are the measured ones.
        """
        if stream_id not in self._specs:
            raise KeyError(f"no stream with id {stream_id} in recorder {self.path}")
        if stream_id in self._fixed_offsets:
            with self._lock:
                self._fixed_offsets.pop(stream_id, None)
        self._offer((_OFFSET, stream_id, float(collection_time), float(offset)), 0)

    def _offer(self, item: tuple, n_samples: int, n_pushes: int = 1) -> None:
        if self._error is None and not self._closed:
            try:
                self._queue.put_nowait(item)
                if self._queue.qsize() >= self._wake_at:
                    self._wake.set()
                return
            except queue.Full:
                self._wake.set()
            while self.block_when_full and self._error is None and self.running:
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
        with self._lock:
            self._dropped_pushes += n_pushes
            self._dropped_samples += n_samples

    def start(self) -> None:
        """Create the file and start the writer thread.

        Raises
        ------
        OSError
            If the file cannot be created (also stored in :attr:`error`).
        """
        if self._thread is not None or self._closed:
            raise RuntimeError(f"recorder for {self.path} was already started")
        try:
            self._writer = XDFWriter(self.path, self.file_info)
        except BaseException as err:
            self._set_error(err)
            raise
        self._thread = threading.Thread(target=self._run, name=f"Recorder({self.path.name})", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything queued so far now; return False on timeout or error."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        try:
            self._queue.put((_FLUSH, done), timeout=timeout)
            self._wake.set()
        except queue.Full:
            return False
        return done.wait(timeout) and self._error is None

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then the footers, and close the file.

        Never raises for disk errors (see :attr:`error`). If the thread does
        not finish within ``timeout`` s, it is left to finish on its own.
        A recorder that was never started creates no file.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put((_STOP,), timeout=timeout)
            self._wake.set()
        except queue.Full:
            self._set_error(TimeoutError(f"recorder for {self.path}: queue still full at close"))
        self._thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the writer thread, if any."""
        return self._error

    @property
    def running(self) -> bool:
        """Whether the writer thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> RecorderStats:
        """A snapshot of the counters."""
        with self._lock:
            return RecorderStats(
                samples_written=dict(self._samples_written),
                bytes_written=self._bytes_written,
                dropped_pushes=self._dropped_pushes,
                dropped_samples=self._dropped_samples,
                queued=self._queue.qsize(),
                last_error=None if self._error is None else f"{type(self._error).__name__}: {self._error}",
                footers_written=self._footers_written,
            )

    def _set_error(self, err: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = err

    def __enter__(self) -> Recorder:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ---------------------------------------------------------
    def _run(self) -> None:
        writer = self._writer
        assert writer is not None
        batches: dict[int, list[tuple[object, np.ndarray]]] = {}
        batch_sizes: dict[int, int] = {}
        next_flush = time.monotonic() + self.flush_interval_s
        next_boundary = time.monotonic() + self.boundary_interval_s
        next_offsets = time.monotonic() + self.offset_interval_s
        stopping = False
        flush_done: threading.Event | None = None
        flush_waiters: list[threading.Event] = []
        try:
            while not stopping:
                self._wake.wait(max(0.0, next_flush - time.monotonic()))
                self._wake.clear()
                self._write_headers(writer)
                flush_done = None
                flush_waiters: list[threading.Event] = []
                while not stopping:  # everything queued so far, in order
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    kind = item[0]
                    if kind == _SAMPLES or kind == _PARTS:
                        for stream_id, values, stamps in (item[1:],) if kind == _SAMPLES else item[1]:
                            batches.setdefault(stream_id, []).append((values, stamps))
                            batch_sizes[stream_id] = batch_sizes.get(stream_id, 0) + len(stamps)
                            if batch_sizes[stream_id] >= self.max_batch_samples:
                                self._write_batch(writer, stream_id, batches, batch_sizes)
                    elif kind == _OFFSET:
                        writer.write_clock_offset(item[1], item[2], item[3])
                        self._bytes_written = writer.bytes_written
                    elif kind == _FLUSH:
                        flush_waiters.append(item[1])
                        flush_done = item[1]
                    elif kind == _STOP:
                        stopping = True
                now = time.monotonic()
                if now >= next_flush or flush_done is not None or stopping:
                    for stream_id in list(batches):
                        self._write_batch(writer, stream_id, batches, batch_sizes)
                    _check_still_linked(writer)
                    next_flush = now + self.flush_interval_s
                    if now >= next_offsets:
                        self._write_fixed_offsets(writer)
                        next_offsets = now + self.offset_interval_s
                    if now >= next_boundary:
                        writer.write_boundary()
                        writer.sync()
                        self._synced_bytes = self._bytes_written = writer.bytes_written
                        next_boundary = now + self.boundary_interval_s
                for done in flush_waiters:
                    done.set()
            self._drain_after_stop(writer)
            self._write_fixed_offsets(writer)
            writer.close()
            self._bytes_written = writer.bytes_written
            self._footers_written = True
        except BaseException as err:  # disk full, file deleted, ...: stop writing, keep the loop alive
            self._set_error(err)
            with self._lock:
                for parts in batches.values():
                    self._dropped_pushes += len(parts)
                    self._dropped_samples += sum(len(p[1]) for p in parts)
            batches.clear()
            for done in flush_waiters:
                done.set()
            complete = writer.salvage()  # whole chunks only, and the footers if they fit
            if not stopping:  # keep answering flush requests until close(); then try the footers again
                self._discard_queue()
                complete = complete or writer.salvage()
            self._footers_written = complete
            self._bytes_written = writer.bytes_written
            try:
                writer.close_fd()
            except OSError:
                pass

    def _drain_after_stop(self, writer: XDFWriter) -> None:
        """Write what raced in behind the stop request."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item[0] == _SAMPLES or item[0] == _PARTS:
                for stream_id, values, stamps in (item[1:],) if item[0] == _SAMPLES else item[1]:
                    writer.write_samples(stream_id, values, stamps)
                    with self._lock:
                        self._samples_written[stream_id] += len(stamps)
            elif item[0] == _OFFSET:
                writer.write_clock_offset(item[1], item[2], item[3])
            elif item[0] == _FLUSH:
                item[1].set()

    def _write_headers(self, writer: XDFWriter) -> None:
        if not self._pending_headers:
            return
        with self._lock:
            pending, self._pending_headers = self._pending_headers, []
        for spec, _xml in pending:
            writer.add_stream_xml(spec, _xml)
            self._declared.add(spec.stream_id)
        self._write_fixed_offsets(writer, [spec.stream_id for spec, _ in pending])
        self._bytes_written = writer.bytes_written

    def _write_fixed_offsets(self, writer: XDFWriter, stream_ids: Sequence[int] | None = None) -> None:
        """Write a ClockOffset chunk for the streams with a fixed offset (all, or those given)."""
        with self._lock:
            fixed = [
                (sid, value)
                for sid, value in self._fixed_offsets.items()
                if sid in self._declared and (stream_ids is None or sid in stream_ids)
            ]
        if fixed:
            now = self._clock()
            for sid, value in fixed:
                writer.write_clock_offset(sid, now, value)

    def _write_batch(
        self,
        writer: XDFWriter,
        stream_id: int,
        batches: dict[int, list[tuple[object, np.ndarray]]],
        batch_sizes: dict[int, int],
    ) -> None:
        parts = batches.pop(stream_id, None)
        batch_sizes.pop(stream_id, None)
        if not parts:
            return
        n = sum(len(p[1]) for p in parts)
        if self._specs[stream_id].channel_format == "string":
            stamps = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
            writer.write_samples(stream_id, [row for p in parts for row in p[0]], stamps)
        else:  # checked by push: encoded straight from the parts into one chunk (no concatenation)
            writer.write_sample_parts(stream_id, parts)
        with self._lock:
            self._samples_written[stream_id] += n
            self._bytes_written = writer.bytes_written
        if writer.bytes_written - self._synced_bytes >= self.sync_interval_bytes:
            writer.sync()  # the producer goes on meanwhile (this thread waits on the disk, without the GIL)
            self._synced_bytes = writer.bytes_written

    def _discard_queue(self) -> None:
        """Empty the queue after an error, counting samples as dropped; return when asked to stop.

        Whoever waits on a flush is released.
        """
        while True:
            item = self._queue.get()
            kind = item[0]
            if kind == _SAMPLES:
                with self._lock:
                    self._dropped_pushes += 1
                    self._dropped_samples += len(item[3])
            elif kind == _PARTS:
                with self._lock:
                    self._dropped_pushes += len(item[1])
                    self._dropped_samples += sum(len(p[2]) for p in item[1])
            elif kind == _FLUSH:
                item[1].set()
            elif kind == _STOP:
                return


def _check_still_linked(writer: XDFWriter) -> None:
    """Fail if the file was deleted under us (e.g. its folder removed).

    Writes to an unlinked file succeed, but the data would be lost.
    """
    if os.fstat(writer.fileno()).st_nlink == 0:
        raise FileNotFoundError(errno.ENOENT, "the recording file was deleted while recording", str(writer.path))


def check_writable(folder: str | os.PathLike, min_free_bytes: int = 100_000_000) -> None:
    """Check that recordings can be written to ``folder`` before a session.

    Creates the folder if needed, writes and removes a probe file, and checks
    the free space.

    Raises
    ------
    OSError
        Naming the folder, if it cannot be created, is not writable, or has
        less than ``min_free_bytes`` free.
    ValueError
        If ``min_free_bytes`` is negative.
    """
    if min_free_bytes < 0:
        raise ValueError(f"min_free_bytes must be >= 0, got {min_free_bytes}")
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"cannot create recording folder {path}: {err.strerror or err}") from err
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"recording folder {path} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".closedloop-write-test-"):
            pass
    except OSError as err:
        raise OSError(err.errno, f"recording folder {path} is not writable: {err.strerror or err}") from err
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise OSError(
            errno.ENOSPC,
            f"recording folder {path} has {free / 1e6:.1f} MB free, "
            f"less than the {min_free_bytes / 1e6:.1f} MB required",
        )
