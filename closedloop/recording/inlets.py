"""Record the other LSL streams of a live session (markers, ratings) from a background thread.

The EEG goes through the loop; everything else a session should keep —
the synthetic source's blink markers, a task's event markers, pain ratings —
is pulled here, off the loop thread, and handed to
:meth:`SessionRecording.on_marker` with raw timestamps, plus a clock offset
per stream every few seconds (as LabRecorder records them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

from closedloop.lslconfig import configure_lsl

__all__ = ["StreamInlets"]

log = logging.getLogger(__name__)

_FORMATS = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16", 6: "int8", 7: "int64"}


class StreamInlets:
    """Pull some LSL streams into a :class:`~closedloop.recording.SessionRecording`.

    Parameters
    ----------
    recording : SessionRecording
        Where the samples go.
    queries : list of dict
        One per stream: any of ``name``, ``type``, ``source_id`` (as for
        :func:`closedloop.sources.resolve_one`), and ``own`` (True: a stream
        this process publishes, so it is unique and found without waiting
        for a second match).
    resolve_timeout_s : float
        How long to look for the streams in :meth:`start` (all are looked for at once).
    offset_interval_s : float
        Interval between clock offset measurements per stream.
    required : bool
        Raise if a stream is not found; otherwise log and skip it.

    Attributes
    ----------
    names : list of str
        The streams being recorded.
    samples : dict of str to int
        Samples forwarded per stream.
    error : BaseException or None
        What stopped the thread, if anything.
    """

    def __init__(
        self,
        recording,
        queries: Sequence[Mapping[str, str]],
        resolve_timeout_s: float = 2.0,
        offset_interval_s: float = 5.0,
        required: bool = False,
    ) -> None:
        self.recording = recording
        self.queries = [dict(q) for q in queries]
        self.resolve_timeout_s = resolve_timeout_s
        self.offset_interval_s = offset_interval_s
        self.required = required
        self.names: list[str] = []
        self.samples: dict[str, int] = {}
        self.error: BaseException | None = None
        self._inlets: list = []
        self._measured: set[str] = set()  # streams with a clock offset recorded
        self._stop = threading.Event()
        self._abandoned = threading.Event()  # stop() gave up waiting: forward nothing more
        self._thread: threading.Thread | None = None

    def start(self) -> StreamInlets:
        """Resolve the streams (all at once), declare them in the recording, and start pulling.

        A query with ``"own": True`` names a stream this process created: it
        is unique by construction, so the wait for a second match is skipped.
        The first clock offset of each stream is measured by the pulling
        thread, not here.
        """
        configure_lsl()
        found: list = [None] * len(self.queries)
        threads = [
            threading.Thread(target=self._open, args=(k, q, found), name=f"closedloop-resolve-{k}", daemon=True)
            for k, q in enumerate(self.queries)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for query, result in zip(self.queries, found):  # declared in query order, as before
            if isinstance(result, BaseException):
                if self.required:
                    for other in found:
                        if isinstance(other, tuple):
                            other[0].close_stream()
                    raise result
                log.warning("not recording %s: %s", query, result)
                continue
            inlet, full = result
            name = full.name()
            fmt = _FORMATS.get(full.channel_format(), "double64")
            labels = _labels(full)
            self.recording.add_stream(
                name,
                full.type(),
                full.channel_count(),
                full.nominal_srate(),
                fmt,
                full.source_id(),
                labels or None,
                full.as_xml(),
                clock_offset=None,  # measured by the pulling thread, at once and every offset_interval_s
            )
            self._inlets.append((name, inlet, fmt))
            self.names.append(name)
            self.samples[name] = 0
        self._thread = threading.Thread(target=self._run, name="closedloop-stream-inlets", daemon=True)
        self._thread.start()
        return self

    def _open(self, k: int, query: Mapping[str, object], found: list) -> None:
        """Resolve one stream and open its inlet (a resolving thread); store ``(inlet, info)`` or the error."""
        import pylsl

        from closedloop.sources.lsl import SourceError, resolve_one

        query = dict(query)
        settle = 0.0 if query.pop("own", False) else 0.2
        try:
            info = resolve_one(**query, timeout=self.resolve_timeout_s, settle=settle)
            inlet = pylsl.StreamInlet(info, max_buflen=60, recover=False, processing_flags=0)
            full = inlet.info(timeout=self.resolve_timeout_s)
            inlet.open_stream(timeout=self.resolve_timeout_s)
            found[k] = (inlet, full)
        except SourceError as err:
            found[k] = err
        except Exception as err:  # noqa: BLE001 - reported by start() like a missing stream
            found[k] = SourceError(f"cannot open LSL stream {query}: {type(err).__name__}: {err}")

    def _measure_offsets(self, timeout: float, names: set[str] | None = None) -> None:
        """Record a clock offset per stream (those in ``names``, default all); a timeout skips one."""
        import pylsl

        for name, inlet, _ in self._inlets:
            if names is not None and name not in names:
                continue
            try:
                offset = inlet.time_correction(timeout=timeout)
            except pylsl.util.TimeoutError:
                continue
            if self._abandoned.is_set():
                return
            self.recording.on_clock_offset(pylsl.local_clock(), offset, stream=name)
            self._measured.add(name)

    def _pull_all(self) -> bool:
        """Forward what each inlet has queued; whether anything came."""
        got = False
        for name, inlet, _fmt in self._inlets:
            values, stamps = inlet.pull_chunk(timeout=0.0)
            if stamps and not self._abandoned.is_set():
                got = True
                self.recording.on_marker(name, values, stamps)
                self.samples[name] += len(stamps)
        return got

    def _run(self) -> None:
        """Pull until stopped, then the last markers and offsets; close the inlets.

        Only this thread touches the inlets once it runs: liblsl's inlet
        queues take one consumer, so a second thread pulling or closing
        while this one waits in ``time_correction`` could corrupt them.
        """
        next_offset = time.monotonic() + self.offset_interval_s
        try:
            self._measure_offsets(2.0)  # the first offsets, off start()'s path
            while not self._stop.is_set():
                got = self._pull_all()
                if time.monotonic() >= next_offset:
                    self._measure_offsets(0.5)
                    next_offset = time.monotonic() + self.offset_interval_s
                if not got:
                    self._stop.wait(0.02)
            if not self._abandoned.is_set():
                self._pull_all()
                # a stream without any offset yet (very short session): one now
                self._measure_offsets(0.5, {name for name, _, _ in self._inlets} - self._measured)
        except Exception as err:  # noqa: BLE001 - a lost marker stream must not take the session down
            self.error = err
            log.warning("stream inlets stopped: %s: %s", type(err).__name__, err)
        finally:
            self._close_all()

    def _close_all(self) -> None:
        for _, inlet, _ in self._inlets:
            try:
                inlet.close_stream()
            except Exception:  # noqa: BLE001 - closing a lost stream may fail; nothing to save
                pass
        self._inlets = []

    def stop(self, timeout: float = 5.0) -> None:
        """Pull what is left, stop the thread and let it close the inlets.

        If the thread does not end within ``timeout`` (stuck in liblsl), it
        is left to close its inlets when it returns and forwards nothing
        more to the recording, which the caller is about to finish.
        """
        if self._thread is None:
            self._close_all()
            return
        time.sleep(0.05)  # let markers pushed just before the end arrive
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandoned.set()
            log.warning("stream inlets thread still busy after %.1f s; it closes its inlets when it returns", timeout)


def _labels(info) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(info.as_xml())
    labels = [(ch.findtext("label") or "") for ch in root.findall("./desc/channels/channel")]
    return labels if len(labels) == info.channel_count() and all(labels) else []
