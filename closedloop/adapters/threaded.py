"""Adapters that talk over a wire: device I/O on the adapter's own thread, retries where safe."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from closedloop.adapters.base import AdapterBase, DeviceFault
from closedloop.adapters.command_checks import fires
from closedloop.adapters.transport import ErrorReply, GarbledReply, LinkLost, ReplyTimeout
from closedloop.adapters.worker import DeviceWorker
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command

T = TypeVar("T")

_LINK_ERRORS = {
    LinkLost: "link lost",
    ReplyTimeout: "no reply",
    GarbledReply: "garbled reply",
    ErrorReply: "error reply",
}


class ThreadedAdapter(AdapterBase):
    """An adapter whose device I/O runs on its own :class:`DeviceWorker` thread.

    Subclasses implement the ``_io_*`` hooks (run on the worker thread, may
    block with timeouts) and use :meth:`_transact` for request/reply
    exchanges. Common ``[adapter_options]``: ``reply_timeout_s`` (0.5),
    ``retries`` (2), ``connect_timeout_s`` (5), ``arm_timeout_s`` (10),
    ``stop_timeout_s`` (5).
    """

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.reply_timeout_s = self.option("reply_timeout_s", 0.5)
        self.retries = self.option("retries", 2)
        self.connect_timeout_s = self.option("connect_timeout_s", 5.0)
        self.arm_timeout_s = self.option("arm_timeout_s", 10.0)
        self.stop_timeout_s = self.option("stop_timeout_s", 5.0)
        self.retries_used = 0
        self.link: Any = None
        self.worker = DeviceWorker(
            f"closedloop-{self.name}",
            self._on_io_error,
            heartbeat=self._heartbeat_guarded,
            heartbeat_s=self.heartbeat_interval,
        )
        self._latest: Command | None = None
        self._stopped = False
        self._safe_failed = False  # the safe state could not be reached after a fault

    # -- hooks for subclasses (worker thread) -------------------------------------
    def _io_open(self) -> None:
        raise NotImplementedError

    def _io_close(self) -> None:
        if self.link is not None:
            self.link.close()

    def _io_arm(self) -> None:
        raise NotImplementedError

    def _io_disarm(self) -> None:
        raise NotImplementedError

    def _io_apply(self, command: Command) -> None:
        raise NotImplementedError

    def _io_safe(self) -> None:
        """Drive the device to its safe state (output off, disarmed)."""
        raise NotImplementedError

    def _io_emergency(self) -> None:
        self._io_safe()

    #: Whether a refused command disarms the device (True) or only zeroes its output (False).
    refusal_disarms: ClassVar[bool] = True

    def _io_refusal_safe(self) -> None:
        """Safe state after a refused command (default: as for an emergency stop)."""
        self._io_emergency()

    def _io_heartbeat(self) -> None:
        """Keep-alive / status poll; raise on a failed poll."""

    def heartbeat_interval(self) -> float | None:
        """Seconds between keep-alive polls while idle (None: no polling)."""
        return None

    # -- request/reply with retries ----------------------------------------------
    def _transact(self, exchange: Callable[[], T], what: str, *, retry: bool = True) -> T:
        """Run ``exchange`` (send + read reply); retry timeouts and garbled replies if ``retry``.

        Error replies and a lost link are never retried. After the last
        attempt the failure is raised as :class:`DeviceFault` with a reason.
        """
        attempts = 1 + (max(0, self.retries) if retry else 0)
        last: Exception | None = None
        for i in range(attempts):
            try:
                result = exchange()
                self.worker.touch()
                self._acked()
                return result
            except ReplyTimeout as e:
                last, kind = e, "no reply"
            except GarbledReply as e:
                last, kind = e, "garbled reply"
            except ErrorReply as e:
                raise DeviceFault(f"{self.name}: error reply to {what}: {e}") from e
            except LinkLost as e:
                raise DeviceFault(f"{self.name}: link lost during {what}: {e}") from e
            finally:
                flush = getattr(self.link, "flush_rx", None)
                if flush is not None:
                    flush(what)
            if i + 1 < attempts:
                self.retries_used += 1
                self.log.add("event", note=f"{what}: {kind} ({last}); retry {i + 1} of {attempts - 1}")
                self._resync()
        raise DeviceFault(
            f"{self.name}: {kind} to {what} ({last})"
            + (f" after {attempts} attempts" if attempts > 1 else "; not retried (unsafe to repeat)")
        )

    def _resync(self) -> None:
        """Let stray bytes arrive, then discard them, so the next reply lines up."""
        threading.Event().wait(min(0.05, self.reply_timeout_s))
        try:
            self.link.drain()
        except LinkLost:
            pass

    # -- worker plumbing ------------------------------------------------------------
    #: What makes the device safe when the link is gone (appended to the fault reason).
    lost_link_advice: ClassVar[str] = "check the device: closedloop can no longer reach it"

    def _on_io_error(self, exc: BaseException) -> None:
        if isinstance(exc, DeviceFault):
            reason = str(exc)
        elif type(exc) in _LINK_ERRORS:
            reason = f"{self.name}: {_LINK_ERRORS[type(exc)]}: {exc}"
        else:
            reason = f"{self.name}: {type(exc).__name__}: {exc}"
        lost = isinstance(exc.__cause__, LinkLost) or isinstance(exc, LinkLost)
        if lost:
            reason += f"; {self.lost_link_advice}"
        if self._set_fault(reason):
            self._try_safe(lost=lost)

    def _try_safe(self, lost: bool = False) -> None:
        """Best effort to drive the device safe after a fault (worker thread)."""
        if lost or self.link is None:
            self._safe_failed = True
            self.log.add("event", note="link lost: cannot drive the device safe from here")
            return
        try:
            self._io_safe()
            self.log.add("event", note="driven to the safe state after the fault")
        except Exception as e:  # noqa: BLE001 - report, do not mask the first fault
            self._safe_failed = True
            self.log.add("event", note=f"could not drive the device safe after the fault: {e}")

    def _heartbeat_guarded(self) -> None:
        if self.fault is not None or not self.connected:
            return
        self._io_heartbeat()

    def _call(self, fn: Callable[[], T], timeout: float, what: str, *, urgent: bool = False) -> T:
        """Run ``fn`` on the worker and wait; any failure becomes a fault, the device is driven safe."""
        try:
            return self.worker.call(fn, timeout, urgent=urgent)
        except DeviceFault as e:
            fault = e
        except (LinkLost, ReplyTimeout, GarbledReply, ErrorReply) as e:
            fault = DeviceFault(f"{self.name}: {_LINK_ERRORS[type(e)]} during {what}: {e}")
            fault.__cause__ = e
        except TimeoutError:
            msg = f"{self.name}: {what} did not finish within {timeout} s"
            if self._set_fault(msg):
                self.worker.submit(self._io_safe, urgent=True, report=False)
            raise DeviceFault(msg) from None
        lost = isinstance(fault.__cause__, LinkLost)
        if self._set_fault(str(fault) + (f"; {self.lost_link_advice}" if lost else "")):
            self._run_safe_after_fault(fault)
        raise fault

    def _run_safe_after_fault(self, exc: BaseException) -> None:
        lost = isinstance(exc.__cause__, LinkLost)
        try:
            self.worker.call(lambda: self._try_safe(lost), self.stop_timeout_s, urgent=True)
        except Exception:  # noqa: BLE001
            pass

    # -- the public contract ------------------------------------------------------------
    def connect(self) -> None:
        """Open the link and take remote control."""
        if self.connected:
            return
        self._stopped = False
        self.worker.start()
        try:
            self._call(self._io_open, self.connect_timeout_s + 1.0, "connect")
        except DeviceFault:
            try:
                self.worker.call(self._io_close, 1.0)
            except Exception:  # noqa: BLE001 - the connect failure is what the caller must see
                pass
            self._shutdown_worker()
            raise
        self.connected = True
        self.log.add("event", note="connected")

    def arm(self) -> None:
        """Enable the output (see :class:`~closedloop.adapters.base.Adapter`)."""
        self._require_usable("arm")
        if self.armed:
            return
        self._call(self._io_arm, self.arm_timeout_s + 1.0, "arm")
        self.armed = True
        self.log.add("event", note="armed")

    def disarm(self) -> None:
        """Disable the output and keep the connection."""
        self._require_usable("disarm")
        self._call(self._io_disarm, self.arm_timeout_s + 1.0, "disarm")
        self.armed = False
        self.log.add("event", note="disarmed")

    def apply(self, command: Command, now: float) -> None:
        """Send ``command`` without blocking (see :class:`~closedloop.adapters.base.Adapter`)."""
        if not self._accepts_commands():
            return
        if self.modality != "tes" and command.abort:
            self.log.add("event", note="train abort requested")
            self.commands += 1
            self.emergency_stop()
            return
        problems = self.problems(command, now)
        if problems:
            self.worker.submit(self._io_refusal_safe, urgent=True)
            if self.refusal_disarms:
                self.armed = False
            self._refuse(command, problems)
        self._accept(command, now)
        self.last_command = command
        self.commands += 1
        if self.modality != "tes" and fires(command):
            # a fire is its own job: a newer command must never replace it in the queue
            self.worker.submit(lambda: self._apply_fire(command))
            return
        self._latest = command
        self.worker.submit(self._apply_latest, key="apply")

    def _accept(self, command: Command, now: float) -> None:
        """Bookkeeping for an accepted command on the caller's thread (e.g. count a train)."""
        if self.guard is not None and fires(command):
            if not self.armed:
                self._refuse(command, ["fire requested while the stimulator is not armed"])
            self.guard.commit(command, now)

    def _apply_latest(self) -> None:
        cmd = self._latest
        if cmd is None or self.fault is not None:
            return
        self._io_apply(cmd)

    def _apply_fire(self, command: Command) -> None:
        if self.fault is None:
            self._io_apply(command)

    def rearm(self) -> None:
        """Arm again without waiting (after a train abort disarmed the device); returns at once.

        The arm runs on the device thread after the disarm the abort queued, so
        it is done before any later fire; a failure becomes a :attr:`fault`.
        """
        if self.fault is not None or not self.connected or self._stopped or self.armed:
            return

        def arm_again() -> None:
            if self.fault is not None or self._stopped:
                return
            self._io_arm()
            self.armed = True
            self.log.add("event", note="re-armed after an abort")

        self.worker.submit(arm_again)

    def emergency_stop(self) -> None:
        """Turn the output off as fast as the device allows; return at once."""
        self.log.add("event", note="emergency stop requested")
        self.armed = False
        if self.connected and self.worker.alive:
            self.worker.submit(self._io_emergency, urgent=True)

    def stop(self) -> None:
        """Drive the device to its safe state and disconnect."""
        if self._stopped:
            return
        self._stopped = True
        if self.worker.alive:

            def shutdown() -> None:
                try:
                    if self._safe_failed:
                        self.log.add(
                            "event", note="stop: not retrying the safe state the device did not answer after the fault"
                        )
                    elif self.link is not None:
                        self._io_safe()
                except Exception as e:  # noqa: BLE001 - still close the link
                    self.log.add("event", note=f"stop: could not confirm the safe state: {e}")
                    self._set_fault(f"{self.name}: stop could not confirm the safe state: {e}")
                finally:
                    self._io_close()

            try:
                self.worker.call(shutdown, self.stop_timeout_s, urgent=True)
            except Exception as e:  # noqa: BLE001 - stop never raises; the log and fault say why
                self._set_fault(f"{self.name}: stop did not finish within {self.stop_timeout_s} s ({e})")
        self._shutdown_worker()
        self.connected = False
        self.armed = False
        self.log.add("event", note="stopped")

    def _shutdown_worker(self) -> None:
        self.worker.stop(timeout=self.reply_timeout_s * (2 + self.retries) + 1.0)

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(retries_used=self.retries_used, pending=self.worker.pending(), link=getattr(self.link, "url", None))
        if self.guard is not None:
            st.update(trains=self.guard.trains, pulses=self.guard.pulses)
        return st
