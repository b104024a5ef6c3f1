"""Read an EEG stream over LSL into a preallocated buffer, newest data first.

Resolution refuses ambiguity; the stream's channel count, rate and labels are
checked against the pipeline; timestamps are corrected into the local LSL
clock; a stalled or lost stream is noticed and reported.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from closedloop.lslconfig import configure_lsl
from closedloop.types import Chunk


class SourceError(RuntimeError):
    """The stream cannot be used: not found, ambiguous, mismatched, or lost."""


def _xml_literal(v: str) -> str:
    if "'" in v:
        raise ValueError(f"stream property {v!r} may not contain a single quote")
    return f"'{v}'"


def predicate(name: str | None = None, type: str | None = None, source_id: str | None = None) -> str:
    """XPath predicate matching the given stream properties."""
    parts = [f"{k}={_xml_literal(v)}" for k, v in (("name", name), ("type", type), ("source_id", source_id)) if v]
    if not parts:
        raise ValueError("give at least one of name, type, source_id")
    return " and ".join(parts)


def channel_labels(info) -> list[str]:
    """Channel labels from a stream's ``desc/channels`` metadata ([] if absent)."""
    root = ET.fromstring(info.as_xml())
    return [(ch.findtext("label") or "") for ch in root.findall("./desc/channels/channel")]


def resolve_one(name=None, type=None, source_id=None, timeout: float = 5.0, settle: float = 1.0):
    """Resolve exactly one stream; refuse none or several, listing what was found."""
    configure_lsl()
    import pylsl

    pred = predicate(name, type, source_id)
    found = pylsl.resolve_bypred(pred, 1, timeout)
    if not found:
        raise SourceError(f"no LSL stream matching {pred} within {timeout} s")
    # wait a little longer for a second match: two fitting streams is an error
    found = pylsl.resolve_bypred(pred, 2, settle) or found
    uniq = {(i.name(), i.source_id(), i.uid()): i for i in found}
    if len(uniq) > 1:
        listing = "; ".join(
            f"name={i.name()!r} type={i.type()!r} source_id={i.source_id()!r} host={i.hostname()!r}"
            for i in uniq.values()
        )
        raise SourceError(f"{len(uniq)} LSL streams match {pred}: {listing}; name them more precisely")
    return next(iter(uniq.values()))


class LSLSource:
    """Pull EEG chunks from one LSL stream.

    Parameters
    ----------
    name, type, source_id : str | None
        Stream properties to resolve by.
    sfreq : float
        Nominal rate the stream must have.
    ch_names : list of str | None
        Labels the stream must carry, in order (checked if given).
    n_channels : int | None
        Channel count the stream must have (checked if given).
    resolve_timeout_s : float
        How long to look for the stream.
    stall_timeout_s : float
        No sample for this long marks the stream stalled.
    max_chunk : int
        Largest block pulled at once; the buffer is allocated once.
    """

    def __init__(
        self,
        name=None,
        type="EEG",
        source_id=None,
        sfreq: float = 500.0,
        ch_names: list[str] | None = None,
        n_channels: int | None = None,
        resolve_timeout_s: float = 5.0,
        stall_timeout_s: float = 0.5,
        max_chunk: int = 4096,
    ) -> None:
        self.query = dict(name=name, type=type, source_id=source_id)
        self.sfreq = float(sfreq)
        self.expected_names = ch_names
        self.expected_n = n_channels
        self.resolve_timeout_s = resolve_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_chunk = max_chunk
        self.ch_names: list[str] = []
        self.inlet = None
        self.info = None
        self.clock_offset = 0.0  # latest measured remote → local offset (s)
        self.pipeline_offset = 0.0  # offset applied to every chunk: the one measured at open()
        self.on_offset = None  # callable(collection_time, offset), e.g. the recorder
        self.raw_timestamps = np.zeros(0)  # the last chunk's timestamps exactly as received
        self._last_offset_time = -1e9
        self.samples_in = 0
        self.newest_time = float("nan")
        self.last_data_wall = float("nan")
        self.data_age = float("nan")
        self.backlog = 0
        self.lost = False
        self.stalled = False

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    def open(self) -> None:
        """Resolve, check the stream against the pipeline, and measure the clock offset."""
        import pylsl
        import pylsl.util

        info = resolve_one(**self.query, timeout=self.resolve_timeout_s)
        n = info.channel_count()
        problems = []
        if self.expected_n is not None and n != self.expected_n:
            problems.append(f"has {n} channels, the pipeline expects {self.expected_n}")
        if abs(info.nominal_srate() - self.sfreq) > 1e-6 * self.sfreq:
            problems.append(f"runs at {info.nominal_srate()} Hz, the pipeline expects {self.sfreq} Hz")
        if info.channel_format() not in (pylsl.cf_float32, pylsl.cf_double64):
            problems.append("is not float32/double64")
        inlet = pylsl.StreamInlet(info, max_buflen=30, max_chunklen=0, recover=False, processing_flags=0)
        full = inlet.info(timeout=self.resolve_timeout_s)
        labels = channel_labels(full)
        if self.expected_names is not None:
            if labels != list(self.expected_names):
                problems.append(f"carries labels {labels}, the pipeline expects {list(self.expected_names)}")
        if problems:
            inlet.close_stream()
            raise SourceError(f"stream {info.name()!r} ({info.source_id()}): " + "; ".join(problems))
        self.ch_names = labels if labels and all(labels) else [f"ch{i}" for i in range(n)]
        self.info = full
        self.inlet = inlet
        dtype = np.float32 if info.channel_format() == pylsl.cf_float32 else np.float64
        self._buf = np.zeros((self.max_chunk, n), dtype=dtype)
        self._stamps = np.zeros(self.max_chunk)
        self._raw = np.zeros(self.max_chunk)
        self._bind_pull()
        inlet.open_stream(timeout=self.resolve_timeout_s)
        self._update_offset(force=True)  # the first call takes ~0.6 s: before the session starts
        # One offset for the whole session keeps the pipeline's time base free of steps, so a
        # replay (raw timestamps + this offset) reproduces it exactly; later measurements are
        # recorded and used for latency and data age only.
        self.pipeline_offset = self.clock_offset
        self.last_data_wall = pylsl.local_clock()

    def _update_offset(self, force: bool = False) -> None:
        import pylsl
        import pylsl.util

        now = pylsl.local_clock()
        if force or now - self._last_offset_time > 5.0:
            self.clock_offset = self.inlet.time_correction(timeout=2.0 if force else 0.05)
            self._last_offset_time = now
            if self.on_offset is not None:
                self.on_offset(now, self.clock_offset)

    def pull(self, timeout: float = 0.05) -> Chunk | None:
        """Wait up to ``timeout`` for new samples; return all that are there (a view), or None.

        Raises
        ------
        SourceError
            When the stream is lost (the outlet went away).
        """
        import pylsl
        import pylsl.util

        try:
            n = self._pull_into(timeout)
            try:
                self._update_offset()
            except pylsl.util.TimeoutError:
                pass
        except pylsl.util.LostError:
            self.lost = True
            raise SourceError(f"stream {self.info.name()!r} lost (its outlet went away)") from None
        now = pylsl.local_clock()
        if n == 0:
            self.stalled = now - self.last_data_wall > self.stall_timeout_s
            self.data_age = now - self.newest_time - self._drift() if self.samples_in else float("nan")
            return None
        self.stalled = False
        raw = self._raw[:n]
        stamps = self._stamps[:n]
        np.add(raw, self.pipeline_offset, out=stamps)
        self.raw_timestamps = raw
        self.samples_in += n
        self.newest_time = stamps[-1]
        self.last_data_wall = now
        self.data_age = now - self.newest_time - self._drift()
        self.backlog = n == self.max_chunk
        return Chunk(self._buf[:n], stamps)

    def _bind_pull(self) -> None:
        """Prepare liblsl chunk pulls straight into the preallocated buffers (no allocation per pull)."""
        import ctypes

        n_ch = self._buf.shape[1]
        fn = self.inlet.do_pull_chunk
        obj = self.inlet.obj
        err = ctypes.c_int()
        item = self._buf.itemsize
        first = (ctypes.c_void_p(self._buf.ctypes.data), ctypes.c_void_p(self._raw.ctypes.data))
        rest = (ctypes.c_void_p(self._buf.ctypes.data + n_ch * item), ctypes.c_void_p(self._raw.ctypes.data + 8))
        one = (ctypes.c_size_t(n_ch), ctypes.c_size_t(1))
        more = (ctypes.c_size_t(n_ch * (self.max_chunk - 1)), ctypes.c_size_t(self.max_chunk - 1))
        zero = ctypes.c_double(0.0)
        from pylsl.util import handle_error

        def pull_into(timeout: float) -> int:
            # wait up to `timeout` for the first sample, then take whatever else is already there
            got = fn(obj, first[0], first[1], one[0], one[1], ctypes.c_double(timeout), ctypes.byref(err))
            handle_error(err)
            if got == 0:
                return 0
            got += fn(obj, rest[0], rest[1], more[0], more[1], zero, ctypes.byref(err))
            handle_error(err)
            return got // n_ch

        self._pull_into = pull_into

    def _drift(self) -> float:
        """How far the remote clock has moved against ours since open() (s)."""
        return self.clock_offset - self.pipeline_offset

    def local_time(self, pipeline_time: float) -> float:
        """Convert a pipeline (sample) time to the local clock, with the latest offset."""
        return pipeline_time + self._drift()

    def flush(self) -> int:
        """Drop samples queued before the session starts; return how many."""
        dropped = self.inlet.flush()
        self.last_data_wall = __import__("pylsl").local_clock()
        return dropped

    def close(self) -> None:
        if self.inlet is not None:
            try:
                self.inlet.close_stream()
            except Exception:  # noqa: BLE001 - closing a lost stream may fail; nothing to save
                pass
            self.inlet = None
