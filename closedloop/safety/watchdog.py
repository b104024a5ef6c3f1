"""The watchdog: stale frames, bad data, a stalled loop thread, a device that stops acknowledging.

The loop thread reports what it sees (:meth:`Watchdog.frame`,
:meth:`Watchdog.heartbeat`, :meth:`Watchdog.device_ack`) and asks
:meth:`Watchdog.check` every iteration. A stalled loop thread cannot check
itself, so :meth:`Watchdog.start` runs a small monitor thread that calls back
when the heartbeat or the device acknowledgements stop. What to do on a trip
is the caller's: stale frames → ``safety.ramp_down(reason, emergency=True)``
(stimulation resumes with fresh frames); a stalled loop or a silent device →
``safety.emergency_stop(reason, kind="watchdog")``, drive the adapter to its safe state, end
the session with ``trip.reason``. All times are on the watchdog's clock (the
local monotonic clock live), never a source's timestamps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WatchdogTrip:
    """Something went stale.

    Attributes
    ----------
    kind : str
        ``frame`` (no fresh frame), ``loop`` (no heartbeat from the loop
        thread) or ``device`` (no acknowledgement from the device).
    reason : str
        For the event log and the summary.
    time : float
        When it was noticed (the watchdog's clock).
    ends_session : bool
        ``frame`` trips ramp down and may recover; the others end the session.
    """

    kind: str
    reason: str
    time: float
    ends_session: bool


class Watchdog:
    """Notice stale frames, a stalled loop and a silent device.

    Each check is armed by the first report of its kind, so a session that is
    still filling its first window does not trip.

    Parameters
    ----------
    frame_timeout_s : float
        Longest allowed time without a fresh frame.
    loop_timeout_s : float, optional
        Longest allowed time without a loop heartbeat (default: the frame timeout).
    device_timeout_s : float, optional
        Longest allowed time without a device acknowledgement (``None``: not checked).
    clock : callable
        The clock all times are in (``pylsl.local_clock`` live).
    """

    def __init__(
        self,
        frame_timeout_s: float,
        loop_timeout_s: float | None = None,
        device_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not frame_timeout_s > 0:
            raise ValueError("frame_timeout_s must be > 0")
        self.frame_timeout_s = frame_timeout_s
        self.loop_timeout_s = loop_timeout_s if loop_timeout_s is not None else frame_timeout_s
        self.device_timeout_s = device_timeout_s
        self.clock = clock
        self.last_frame: float | None = None
        self.last_beat: float | None = None
        self.last_ack: float | None = None
        self.trips: list[WatchdogTrip] = []
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    # -- reports from the loop ---------------------------------------------------
    def frame(self, now: float) -> None:
        """Note that a fresh frame was processed at ``now``."""
        self.last_frame = now

    def heartbeat(self, now: float) -> None:
        """Note that the loop thread went round once at ``now``."""
        self.last_beat = now

    def device_ack(self, now: float) -> None:
        """Note that the device acknowledged at ``now``."""
        self.last_ack = now

    # -- checks ----------------------------------------------------------------------
    def check(self, now: float) -> WatchdogTrip | None:
        """Return the first stale condition at ``now`` (loop, device, then frame), or ``None``."""
        return self._stale(now, loop=True, device=True, frame=True)

    def _stale(self, now: float, loop: bool, device: bool, frame: bool) -> WatchdogTrip | None:
        if loop and self.last_beat is not None and now - self.last_beat > self.loop_timeout_s:
            return WatchdogTrip(
                "loop",
                f"loop thread stalled: no heartbeat for {now - self.last_beat:.3g} s (> {self.loop_timeout_s:g} s)",
                now,
                True,
            )
        if (
            device
            and self.device_timeout_s is not None
            and self.last_ack is not None
            and now - self.last_ack > self.device_timeout_s
        ):
            return WatchdogTrip(
                "device",
                f"device not acknowledging for {now - self.last_ack:.3g} s "
                f"(> {self.device_timeout_s:g} s); driven to its safe state",
                now,
                True,
            )
        if frame and self.last_frame is not None and now - self.last_frame > self.frame_timeout_s:
            return WatchdogTrip(
                "frame", f"no fresh frame for more than {self.frame_timeout_s:g} s (watchdog)", now, False
            )
        return None

    # -- the monitor thread ---------------------------------------------------------
    def start(self, on_trip: Callable[[WatchdogTrip], None], interval_s: float | None = None) -> None:
        """Watch the loop heartbeat and the device from a daemon thread.

        ``on_trip`` is called from that thread, once per stall (again only
        after the condition has cleared and come back).
        """
        if self._thread is not None:
            raise RuntimeError("watchdog already started")
        period = interval_s if interval_s is not None else min(self.loop_timeout_s, self.device_timeout_s or 1e9) / 4
        self._halt.clear()

        def run() -> None:
            tripped: set[str] = set()
            while not self._halt.wait(period):
                now = self.clock()
                for kind in ("loop", "device"):
                    trip = self._stale(now, loop=kind == "loop", device=kind == "device", frame=False)
                    if trip is None:
                        tripped.discard(kind)
                    elif kind not in tripped:
                        tripped.add(kind)
                        self.trips.append(trip)
                        try:
                            on_trip(trip)
                        except Exception:  # noqa: BLE001 - the monitor must survive a failing callback
                            pass

        self._thread = threading.Thread(target=run, name="closedloop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the monitor thread (if running)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
