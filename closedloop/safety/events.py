"""Safety events: every clamp, refusal, state change and watchdog action, with its reason."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    """One thing the safety layer did, and why.

    Attributes
    ----------
    time : float
        Time of the event (the layer's clock: frame time, or ``local_clock()``
        for watchdog actions; both in the LSL clock domain).
    kind : str
        ``clamp`` | ``refuse`` | ``frequency`` | ``dose`` | ``stop`` |
        ``watchdog`` | ``emergency`` | ``state`` | ``gap``.
    reason : str
        Human-readable reason, naming the limit involved.
    desired_mA, applied_mA : float
        Requested and applied amplitude (tES; 0 for rTMS and TUS, whose
        parameters are in the reason).
    """

    time: float
    kind: str
    reason: str
    desired_mA: float
    applied_mA: float


class EventLog:
    """Count every event; keep (and forward) each change of reason.

    A reason repeated frame after frame (the same clamp, say) is counted every
    time but logged and forwarded once, until a different reason of the same
    kind comes along.

    Parameters
    ----------
    on_event : callable, optional
        Called with every logged :class:`SafetyEvent` (e.g. to record it).
    maxlen : int
        How many events to keep in memory.
    """

    def __init__(self, on_event: Callable[[SafetyEvent], None] | None = None, maxlen: int = 1000) -> None:
        self.on_event = on_event
        self.events: deque[SafetyEvent] = deque(maxlen=maxlen)
        self.counts: dict[str, int] = {}
        self._last_reason: dict[str, str] = {}

    def add(
        self,
        time: float,
        kind: str,
        reason: str,
        desired_mA: float = 0.0,
        applied_mA: float = 0.0,
        repeat: bool = False,
    ) -> None:
        """Count the event; log and forward it unless it repeats the last reason of its kind.

        ``repeat=True`` logs and forwards it even then: an event its caller logs once per occurrence
        (a watchdog trip that ended and came back is a second trip).
        """
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self._last_reason.get(kind) == reason and not repeat:
            return
        self._last_reason[kind] = reason
        ev = SafetyEvent(time, kind, reason, desired_mA, applied_mA)
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)
