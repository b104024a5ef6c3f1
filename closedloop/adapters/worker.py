"""A device I/O thread: the live loop hands work over and never waits on a wire.

Adapters submit jobs (plain callables) to a :class:`DeviceWorker`; the
worker runs them one at a time, in order, on its own thread. Three rules
keep the device's state predictable:

- *Order*: jobs run in the order they were submitted.
- *Latest wins*: a keyed job (e.g. "apply the newest command") replaces a
  job with the same key that is still waiting at the tail of the queue, so
  a slow wire never builds a backlog of stale commands.
- *Urgent first*: an urgent job (emergency stop, shutdown) cancels every
  waiting job and runs next.

When the device has not been contacted for ``heartbeat_s()`` seconds
(adapters call :meth:`DeviceWorker.touch` after every exchange on the wire),
the heartbeat callable runs (keep-alive polling). Exceptions from jobs are delivered to
the job's future and, for jobs submitted without a waiter, to ``on_error``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Job:
    fn: Callable[[], Any]
    key: str | None
    report: bool
    future: Future = field(default_factory=Future)


class DeviceWorker:
    """Run device I/O on one background thread.

    Parameters
    ----------
    name : str
        Thread name (shows in debuggers and logs).
    on_error : callable
        Called (on the worker thread) with exceptions of jobs submitted with
        ``report=True`` and of the heartbeat.
    heartbeat : callable, optional
        Run when the queue has been idle for ``heartbeat_s()`` seconds.
    heartbeat_s : callable, optional
        Returns the current heartbeat interval (s), or ``None`` for none.
    """

    def __init__(
        self,
        name: str,
        on_error: Callable[[BaseException], None],
        heartbeat: Callable[[], None] | None = None,
        heartbeat_s: Callable[[], float | None] | None = None,
    ) -> None:
        self.name = name
        self.on_error = on_error
        self.heartbeat = heartbeat
        self.heartbeat_s = heartbeat_s or (lambda: None)
        self._cv = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._running = False
        self._thread: threading.Thread | None = None
        self._last_activity = time.monotonic()
        self.jobs_run = 0
        self.jobs_replaced = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread."""
        with self._cv:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Finish the running job, drop the rest and end the thread; True if it ended in time."""
        with self._cv:
            self._running = False
            for job in self._queue:
                job.future.cancel()
            self._queue.clear()
            self._cv.notify_all()
        t = self._thread
        if t is None or t is threading.current_thread():
            return True
        t.join(timeout)
        return not t.is_alive()

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def touch(self) -> None:
        """Note a successful contact with the device (postpones the next heartbeat)."""
        self._last_activity = time.monotonic()

    def on_worker_thread(self) -> bool:
        """Whether the caller runs on the worker thread."""
        return threading.current_thread() is self._thread

    # -- submitting ------------------------------------------------------------
    def submit(
        self, fn: Callable[[], Any], *, key: str | None = None, urgent: bool = False, report: bool = True
    ) -> Future:
        """Queue ``fn``; return its future (cancelled if replaced or dropped)."""
        job = _Job(fn, key, report)
        with self._cv:
            if not self._running:
                job.future.cancel()
                return job.future
            if urgent:
                for old in self._queue:
                    old.future.cancel()
                self._queue.clear()
                self._queue.append(job)
            elif key is not None and self._queue and self._queue[-1].key == key:
                old = self._queue.pop()
                old.future.cancel()
                self.jobs_replaced += 1
                self._queue.append(job)
            else:
                self._queue.append(job)
            self._cv.notify_all()
        return job.future

    def call(self, fn: Callable[[], Any], timeout: float, *, urgent: bool = False) -> Any:
        """Run ``fn`` on the worker and wait for its result (inline if already on the worker).

        Raises
        ------
        TimeoutError
            If the result is not there within ``timeout`` seconds.
        """
        if self.on_worker_thread():
            return fn()
        fut = self.submit(fn, urgent=urgent, report=False)
        return fut.result(timeout)

    def pending(self) -> int:
        """Return the number of jobs waiting."""
        with self._cv:
            return len(self._queue)

    # -- the thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = None
            with self._cv:
                while self._running and not self._queue:
                    hb = self.heartbeat_s() if self.heartbeat is not None else None
                    if hb is None:
                        self._cv.wait(0.5)  # re-read the interval now and then
                        continue
                    wait = self._last_activity + hb - time.monotonic()
                    if wait <= 0:
                        break
                    self._cv.wait(min(wait, 0.5))
                if not self._running:
                    return
                if self._queue:
                    job = self._queue.popleft()
            if job is None:
                self._guarded(self.heartbeat)
                self._last_activity = time.monotonic()
                continue
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - delivered to the waiter or on_error
                job.future.set_exception(exc)
                if job.report:
                    self._report(exc)
            else:
                job.future.set_result(result)
            self.jobs_run += 1

    def _guarded(self, fn: Callable[[], None] | None) -> None:
        if fn is None:
            return
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        try:
            self.on_error(exc)
        except BaseException:  # noqa: BLE001 - never let the thread die
            pass
