"""A bounded, timestamped log of everything an adapter sends and receives.

Every command and reply (and every fault and state change) becomes an
:class:`IORecord` stamped with the adapter's clock (the LSL clock by
default), so that the recorder can store the wire traffic beside the EEG.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IORecord:
    """One entry of an adapter's I/O log.

    Attributes
    ----------
    time : float
        Clock time of the event (s; LSL clock unless the adapter was given another clock).
    kind : str
        ``"tx"`` (sent), ``"rx"`` (received), ``"event"`` (state change) or ``"fault"``.
    data : bytes
        Raw bytes on the wire (empty for events).
    note : str
        Human-readable meaning (``"set power 45 %"``, ``"reply timeout"``).
    """

    time: float
    kind: str
    data: bytes = b""
    note: str = ""

    def as_text(self) -> str:
        """One line: time, kind, hex bytes and note (e.g. for an LSL marker)."""
        return f"{self.time:.6f} {self.kind} {self.data.hex(' ')} {self.note}".rstrip()


class IOLog:
    """Thread-safe ring buffer of :class:`IORecord` with an optional callback.

    Parameters
    ----------
    clock : callable
        Returns the current time (s).
    maxlen : int
        Records kept in memory (oldest dropped first).
    callback : callable, optional
        Called with every new record, from the thread that produced it
        (the adapter's I/O thread for wire traffic); must not block.
    """

    def __init__(
        self, clock: Callable[[], float], maxlen: int = 5000, callback: Callable[[IORecord], None] | None = None
    ) -> None:
        self.clock = clock
        self.callback = callback
        self._records: deque[IORecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.total = 0

    def add(self, kind: str, data: bytes = b"", note: str = "") -> IORecord:
        """Add one measurement."""
        rec = IORecord(self.clock(), kind, bytes(data), note)
        with self._lock:
            self._records.append(rec)
            self.total += 1
        if self.callback is not None:
            try:
                self.callback(rec)
            except Exception:  # noqa: BLE001 - a recorder bug must not break device I/O
                pass
        return rec

    def records(self, kinds: Iterable[str] | None = None) -> list[IORecord]:
        """Return a snapshot of the kept records, optionally only some kinds."""
        with self._lock:
            recs = list(self._records)
        if kinds is None:
            return recs
        wanted = set(kinds)
        return [r for r in recs if r.kind in wanted]

    def last(self) -> IORecord | None:
        """Return the newest record, or None."""
        with self._lock:
            return self._records[-1] if self._records else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
