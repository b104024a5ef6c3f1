"""Read an EEG stream over LSL into a preallocated buffer, newest data first.

Resolution refuses ambiguity; the stream's channel count, rate and labels are
checked against the pipeline; timestamps are corrected into the local LSL
clock; a stalled or lost stream is noticed and reported.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import numpy as np

from closedloop.channels import (
    ChannelError,
    average_reference,
    channel_types,
    check_labels,
    describe_excluded,
    generic_names,
    match,
    named_channels,
)
from closedloop.lslconfig import configure_lsl, scope_help
from closedloop.types import Chunk
from closedloop.units import UnitError, scale_factors, to_microvolts, unit_name, units_as_received

log = logging.getLogger(__name__)

_FORMATS = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16", 6: "int8", 7: "int64"}


class SourceError(RuntimeError):
    """The stream cannot be used: not found, ambiguous, mismatched, or lost."""


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _xml_literal(v: str) -> str:
    if "'" not in v:
        return f"'{v}'"
    if '"' not in v:
        return f'"{v}"'
    raise SourceError(f"stream property {v!r} contains both kinds of quote; LSL cannot search for it")


def predicate(name: str | None = None, type: str | None = None, source_id: str | None = None) -> str:
    """Return the XPath predicate matching the given stream properties (``type`` ignoring case)."""
    parts = [f"{k}={_xml_literal(v)}" for k, v in (("name", name), ("source_id", source_id)) if v]
    if type:
        parts.append(f"translate(type,'{_UPPER}','{_UPPER.lower()}')={_xml_literal(type.lower())}")
    if not parts:
        raise ValueError("give at least one of name, type, source_id")
    return " and ".join(parts)


def _wanted(name, type, source_id) -> str:
    return ", ".join(f"{k} {v!r}" for k, v in (("name", name), ("type", type), ("source_id", source_id)) if v)


def channel_labels(info) -> list[str]:
    """Return the channel labels of a stream's ``desc/channels`` metadata ([] if absent)."""
    return [lab for lab, _, _ in channel_desc(info)]


def channel_desc(info) -> list[tuple[str, str, str]]:
    """Return (label, type, unit) of each channel in a stream's ``desc/channels`` ([] if absent).

    Raises
    ------
    SourceError
        When the header is not valid XML (liblsl writes a control character
        in a label as a character reference XML does not allow).
    """
    try:
        root = ET.fromstring(info.as_xml())
    except ET.ParseError as e:
        raise SourceError(
            f"stream {info.name()!r}: its header is not valid XML ({e}); a channel label or another field "
            f"holds a control character"
        ) from None
    return [
        ((ch.findtext("label") or ""), (ch.findtext("type") or "").strip(), (ch.findtext("unit") or "").strip())
        for ch in root.findall("./desc/channels/channel")
    ]


def _describe(i) -> str:
    return (
        f"name={i.name()!r} type={i.type()!r} source_id={i.source_id()!r} uid={i.uid()!r} "
        f"host={i.hostname()!r} created_at={i.created_at():.3f}"
    )


def resolve_one(
    name=None, type=None, source_id=None, timeout: float = 5.0, settle: float = 1.0, scope: str | None = None
):
    """Resolve exactly one stream; refuse none or several, listing what was found.

    ``type`` is compared ignoring case (mne-lsl publishes ``"eeg"``). ``scope``
    (``"machine"`` or ``"lab"``) is where to look; see :mod:`closedloop.lslconfig`.

    Raises
    ------
    SourceError
        One line: no stream (saying where discovery looked and how to widen
        it), or several (each with name, type, source_id, uid, host and
        creation time).
    """
    try:
        scope = configure_lsl(scope)
    except ValueError as e:
        raise SourceError(str(e)) from None
    import pylsl

    pred = predicate(name, type, source_id)
    found = pylsl.resolve_bypred(pred, 1, timeout)
    if not found:
        raise SourceError(
            f"no LSL stream matching {_wanted(name, type, source_id)} within {timeout:g} s; {scope_help(scope)}"
        )
    if settle > 0:  # wait a little longer for a second match: two fitting streams is an error
        error = _several(pylsl.resolve_bypred(pred, 2, settle) or found, name, type, source_id)
        if error is not None:
            raise error
    return found[0]


def _several(found, name, type, source_id) -> SourceError | None:
    """Return the error for more than one stream in ``found`` (None: one)."""
    uniq = {i.uid(): i for i in found}
    if len(uniq) < 2:
        return None
    listing = "; ".join(f"({k}) {_describe(i)}" for k, i in enumerate(uniq.values(), 1))
    return SourceError(
        f"{len(uniq)} LSL streams match {_wanted(name, type, source_id)}: {listing}; "
        f"give [source] name and source_id that fit only one (or stop the other)"
    )


class _SecondMatch:
    """Look for a second stream matching a query for ``settle`` seconds, in a thread.

    :meth:`LSLSource.open` runs it while the inlet opens and the first
    ``time_correction`` runs: all three wait inside liblsl, so the settle time
    no longer adds to the start-up.
    """

    def __init__(self, query: dict, first, settle: float) -> None:
        import threading

        self.query, self.first, self.settle = query, first, settle
        self.error: SourceError | None = None
        self._thread = threading.Thread(target=self._run, name="closedloop-resolve-settle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import pylsl

        found = pylsl.resolve_bypred(predicate(**self.query), 2, self.settle)
        self.error = _several([self.first, *found], **self.query)

    def join(self) -> SourceError | None:
        """Wait for the settle time to end; return the error if a second stream matched."""
        self._thread.join()
        return self.error


class LSLSource:
    """Pull EEG chunks from one LSL stream, in µV.

    Parameters
    ----------
    name, type, source_id : str | None
        Stream properties to resolve by (``type`` ignoring case).
    sfreq : float
        Nominal rate the stream must have.
    ch_names : list of str | None
        Channels the stream must carry, in order (checked if given; matched
        like every channel name, see :func:`closedloop.channels.match`).
    n_channels : int | None
        Channel count the stream must have (checked if given).
    resolve_timeout_s : float
        How long to look for the stream, and then how long each of its answers
        may take at :meth:`open` (header, data connection, first clock offset).
    stall_timeout_s : float
        No sample for this long marks the stream stalled.
    max_chunk : int
        Largest block pulled at once; the buffers are allocated once.
    units : str | None
        Unit of every voltage channel, replacing what the stream declares (a
        pipeline's ``[source] units``, for streams that omit or misstate it).
    scope : {"machine", "lab"}
        Where to discover the stream (see :mod:`closedloop.lslconfig`).
    features, preprocess : optional
        A pipeline's ``[features]`` and ``[preprocess]``: every channel they
        name is checked at :meth:`open`, and channels an average reference
        leaves out are reported in :attr:`notes`.
    poll : {"wait", "busy"}
        How :meth:`pull` waits for the first sample: ``"wait"`` sleeps in
        liblsl until it arrives; ``"busy"`` asks liblsl without a timeout
        again and again until it does (or ``timeout`` passes) — no wake-up
        delay, at the cost of one CPU core kept at 100 %.
    settle_s : float
        After the stream is found, how long to look for a second stream that
        matches too (an error: the query must pick one). It runs while the
        inlet opens and the first ``time_correction`` runs. 0 skips it, for
        a stream this process created under a unique name (the built-in
        synthetic source).

    Attributes
    ----------
    ch_names, ch_types, units : list of str
        The stream's channel labels (``ch0``... when it declares none), types
        (:func:`closedloop.channels.channel_types`) and declared units.
    factors : ndarray
        Per channel: µV per unit received (1 where nothing is scaled).
    notes : list of str
        What the source assumed or left out (missing units, channels kept out
        of an average reference); also logged as warnings.
    raw_data : ndarray
        The last chunk exactly as received (before scaling), like ``raw_timestamps``.
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
        *,
        units: str | None = None,
        scope: str = "machine",
        features=None,
        preprocess=None,
        poll: str = "wait",
        settle_s: float = 1.0,
    ) -> None:
        if poll not in ("wait", "busy"):
            raise ValueError(f"poll must be 'wait' or 'busy', not {poll!r}")
        self.poll = poll
        self.settle_s = float(settle_s)
        self.query = dict(name=name, type=type, source_id=source_id)
        self.sfreq = float(sfreq)
        self.expected_names = ch_names
        self.expected_n = n_channels
        self.resolve_timeout_s = resolve_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_chunk = max_chunk
        self.units_override = units
        self.scope = scope
        self._features = features
        self._preprocess = preprocess
        self.ch_names: list[str] = []
        self.ch_types: list[str] = []
        self.units: list[str] = []
        self.factors = np.ones(0)
        self.notes: list[str] = []
        self.ref_excluded: list[str] = []
        self.inlet = None
        self.info = None
        self.clock_offset = 0.0  # latest measured remote → local offset (s)
        self.pipeline_offset = 0.0  # offset applied to every chunk: the one measured at open()
        self.on_offset = None  # callable(collection_time, offset), e.g. the recorder
        self.raw_timestamps = np.zeros(0)  # the last chunk's timestamps exactly as received
        self.raw_data = np.zeros((0, 0))  # the last chunk's values exactly as received
        self._scale = False
        self.last_offset_time = -1e9
        self.samples_in = 0
        self.newest_time = float("nan")
        self.last_data_wall = float("nan")
        self.data_age = float("nan")
        self.backlog = 0
        self._kept: tuple[np.ndarray, np.ndarray] | None = None  # samples flush() kept for the first pulls
        self.kept = False
        self.lost = False
        self.stalled = False

    @property
    def n_channels(self) -> int:
        """Return the stream's channel count (after :meth:`open`)."""
        return len(self.ch_names)

    def open(self) -> None:
        """Resolve, check the stream against the pipeline, and measure the clock offset.

        Raises
        ------
        SourceError
            One line saying what does not fit: no stream or several, channel
            count, rate, value format, labels (missing, empty, duplicate,
            with control characters), channels the pipeline names, units.
        """
        info = resolve_one(**self.query, timeout=self.resolve_timeout_s, scope=self.scope, settle=0.0)
        if self.settle_s <= 0:
            self._open(info)
            return
        second = _SecondMatch(self.query, info, settle=self.settle_s)  # meanwhile: header, inlet, time_correction
        try:
            self._open(info)
        except SourceError:
            ambiguous = second.join()
            if ambiguous is not None:
                raise ambiguous from None
            raise
        ambiguous = second.join()
        if ambiguous is not None:
            self.close()
            raise ambiguous

    def _open(self, info) -> None:
        """Check the stream ``info`` against the pipeline, open its inlet and measure the clock offset."""
        import pylsl
        import pylsl.util

        where = f"stream {info.name()!r}"
        n = info.channel_count()
        problems = []
        if self.expected_n is not None and n != self.expected_n:
            problems.append(f"has {n} channels, the pipeline expects {self.expected_n}")
        if abs(info.nominal_srate() - self.sfreq) > 1e-6 * self.sfreq:
            rate = "an irregular rate" if info.nominal_srate() == 0 else f"{info.nominal_srate():g} Hz"
            problems.append(f"runs at {rate}, the pipeline expects {self.sfreq:g} Hz ([source] sfreq)")
        fmt = info.channel_format()
        if fmt not in (pylsl.cf_float32, pylsl.cf_double64):
            problems.append(f"carries {_FORMATS.get(fmt, str(fmt))} values; closedloop reads float32 or double64 EEG")
        if problems:
            raise SourceError(f"{where} ({info.source_id()}): " + "; ".join(problems))
        inlet = pylsl.StreamInlet(info, max_buflen=30, max_chunklen=0, recover=False, processing_flags=0)
        try:
            full = inlet.info(timeout=self.resolve_timeout_s)
            self._describe_channels(full, where, n)
        except pylsl.util.TimeoutError:
            inlet.close_stream()
            raise SourceError(f"{where} did not send its header within {self.resolve_timeout_s:g} s") from None
        except (ChannelError, UnitError, SourceError) as e:
            inlet.close_stream()
            raise SourceError(str(e)) from None
        self.info = full
        self.inlet = inlet
        dtype = np.float32 if fmt == pylsl.cf_float32 else np.float64
        self._raw_buf = np.zeros((self.max_chunk, n), dtype=dtype)
        self._scale = bool(np.any(self.factors != 1.0))
        self._buf = np.zeros_like(self._raw_buf) if self._scale else self._raw_buf
        self._factors = self.factors.astype(dtype)  # cast once: the multiply stays in the stream's dtype
        self._stamps = np.zeros(self.max_chunk)
        self._raw = np.zeros(self.max_chunk)
        self._bind_pull()
        for note in self.notes:
            log.warning("%s", note)
        timeout = self.resolve_timeout_s
        try:
            inlet.open_stream(timeout=timeout)
        except pylsl.util.TimeoutError:
            self.close()
            raise SourceError(f"{where} did not open its data connection within {timeout:g} s") from None
        try:
            self._update_offset(force=True)  # ~0.6 s (seconds on a busy machine): before the session starts
        except pylsl.util.TimeoutError:
            self.close()
            raise SourceError(
                f"{where} did not answer the clock-offset query (time_correction) within {timeout:g} s"
            ) from None
        # One offset for the whole session keeps the pipeline's time base free of steps, so a
        # replay (raw timestamps + this offset) reproduces it exactly; later measurements are
        # recorded and used for latency and data age only.
        self.pipeline_offset = self.clock_offset
        self.last_data_wall = pylsl.local_clock()

    def _describe_channels(self, full, where: str, n: int) -> None:
        """Labels, types, units and scale factors from the header; check what the pipeline names."""
        desc = channel_desc(full)
        if len(desc) not in (0, n):
            desc = []  # a malformed header (labels for some channels only): treated as unlabelled
        labels = [d[0] for d in desc]
        unlabeled = not any(labels)
        if not unlabeled:
            check_labels(labels, where)
        names = generic_names(n) if unlabeled else labels
        types = channel_types(names, [d[1] for d in desc] or None, full.type())
        if self.expected_names is not None:
            idx = match(list(self.expected_names), names, "source.channels", where, unlabeled)
            if len(names) != len(idx) or idx != list(range(len(names))):
                raise ChannelError(
                    f"source.channels: {where} carries labels {names}, the pipeline expects "
                    f"{list(self.expected_names)} (the same channels, in this order)"
                )
        named = named_channels(self._features, self._preprocess)
        for key, wanted in named.items():
            match(wanted, names, key, where, unlabeled)
        units = [d[2] for d in desc] or [""] * n
        self.factors, self.notes = scale_factors(units, types, names, self.units_override, where)
        self.ch_names, self.ch_types, self.units = names, types, units
        pp = self._preprocess
        if pp is not None and pp.reference == "average":
            picks = match(list(pp.picks), names, "preprocess.picks", where) if pp.picks is not None else None
            _, out = average_reference(names, types, picks)
            self.ref_excluded = [names[i] for i in out]
            if out:
                self.notes.append(
                    f"{where}: left out of the average reference (not EEG): {describe_excluded(names, types, out)}; "
                    f"name channels in preprocess.picks to choose them yourself"
                )

    def stream_info(self) -> dict:
        """Return the stream as the recording describes it: identity, rate, format, channels, units, header.

        The values are described as received: their declared units, or the
        pipeline's ``[source] units`` on the channels it overrides (the
        stream's own header, in ``header_xml``, keeps what it declared); the
        pipeline's offset is recorded so a replay rebuilds the time base.
        """
        import pylsl

        info = self.info
        xml = info.as_xml()
        return {
            "name": info.name(),
            "type": info.type(),
            "source_id": info.source_id(),
            "sfreq": info.nominal_srate(),
            "channel_format": "float32" if info.channel_format() == pylsl.cf_float32 else "double64",
            "ch_names": list(self.ch_names),
            "units": units_as_received(self.units, self.ch_types, self.units_override),
            "pipeline_offset": float(self.pipeline_offset),
            "header_xml": xml,
            "created_at": info.created_at(),
            "ch_types": list(self.ch_types) or None,
            "ref_excluded": list(self.ref_excluded),
            "offset_measured": True,  # the source measures the offset every 5 s (for_source records them)
        }

    def describe(self) -> str:
        """Return one line about the opened stream: identity, channels, rate, units."""
        i = self.info
        scaled = sorted({unit_name(f) for f in self.factors if f != 1.0})
        unit = f"values in {', '.join(scaled)} scaled to µV" if scaled else "values in µV"
        if any("declares no unit" in note for note in self.notes):
            unit += " (no unit declared: taken as µV)"
        return (
            f"stream {i.name()!r} (type {i.type()!r}, source_id {i.source_id()!r}, host {i.hostname()!r}): "
            f"{len(self.ch_names)} channels at {i.nominal_srate():g} Hz, {unit}"
        )

    def _update_offset(self, force: bool = False) -> None:
        import pylsl

        now = pylsl.local_clock()
        if force or now - self.last_offset_time > 5.0:
            self.clock_offset = self.inlet.time_correction(timeout=self.resolve_timeout_s if force else 0.05)
            self.last_offset_time = now
            if self.on_offset is not None:
                self.on_offset(now, self.clock_offset)

    def pull(self, timeout: float = 0.05) -> Chunk | None:
        """Wait up to ``timeout`` for new samples; return all that are there (a view), or None.

        Raises
        ------
        SourceError
            When the stream is lost (the outlet went away).
        """
        local_clock = self._local_clock
        try:
            self.kept = self._kept is not None
            n = self._pull_kept() if self.kept else self._pull_into(timeout)
            now = local_clock()
            if now - self.last_offset_time > 5.0:  # a new clock offset every 5 s
                try:
                    self._update_offset()
                except self._timeout_error:
                    pass
                now = local_clock()
        except self._lost_error:
            self.lost = True
            raise SourceError(f"stream {self.info.name()!r} lost (its outlet went away)") from None
        if n == 0:
            self.stalled = now - self.last_data_wall > self.stall_timeout_s
            self.data_age = now - self.newest_time - self._drift() if self.samples_in else float("nan")
            return None
        self.stalled = False
        self.raw_data = self._raw_buf[:n]
        if self._scale:
            to_microvolts(self.raw_data, self._factors, out=self._buf[:n])
        raw = self._raw[:n]
        stamps = self._stamps[:n]
        np.add(raw, self.pipeline_offset, out=stamps)
        self.raw_timestamps = raw
        self.samples_in += n
        self.newest_time = stamps[-1]
        self.last_data_wall = now
        self.data_age = now - self.newest_time - self._drift()
        self.backlog = n == self.max_chunk and not self.kept
        return Chunk(self._buf[:n], stamps)

    def _bind_pull(self) -> None:
        """Prepare liblsl chunk pulls straight into the preallocated buffers (no allocation per pull)."""
        import ctypes

        import pylsl
        import pylsl.util

        self._local_clock = pylsl.local_clock  # looked up once, not on every pull
        self._timeout_error = pylsl.util.TimeoutError
        self._lost_error = pylsl.util.LostError

        buf = self._raw_buf
        n_ch = buf.shape[1]
        fn = self.inlet.do_pull_chunk
        obj = self.inlet.obj
        err = ctypes.c_int()
        item = buf.itemsize
        first = (ctypes.c_void_p(buf.ctypes.data), ctypes.c_void_p(self._raw.ctypes.data))
        rest = (ctypes.c_void_p(buf.ctypes.data + n_ch * item), ctypes.c_void_p(self._raw.ctypes.data + 8))
        one = (ctypes.c_size_t(n_ch), ctypes.c_size_t(1))
        more = (ctypes.c_size_t(n_ch * (self.max_chunk - 1)), ctypes.c_size_t(self.max_chunk - 1))
        zero = ctypes.c_double(0.0)
        from pylsl.util import handle_error

        if self.poll == "busy":
            from time import perf_counter

            def pull_busy(timeout: float) -> int:
                # ask again and again without a timeout: no wake-up delay, one core kept busy
                deadline = perf_counter() + timeout
                while True:
                    got = fn(obj, first[0], first[1], one[0], one[1], zero, ctypes.byref(err))
                    handle_error(err)
                    if got:
                        break
                    if perf_counter() >= deadline:
                        return 0
                got += fn(obj, rest[0], rest[1], more[0], more[1], zero, ctypes.byref(err))
                handle_error(err)
                return got // n_ch

            self._pull_into = pull_busy
            return

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

    def flush(self, keep: int = 0) -> int:
        """Drop the samples queued before the session starts but the newest ``keep``; return how many were dropped.

        A session keeps its first feature window: the samples that queued while
        it started are no older than that start, and the newest ``keep`` of them
        let the first frame come as soon as the loop runs instead of one window
        later. Older ones are dropped (a frame is never computed on them), and so
        is everything when the newest sample is older than ``stall_timeout_s``
        (the stream went quiet meanwhile: that is stale data). The
        kept samples come back from the next :meth:`pull` calls, oldest first,
        at most ``max_chunk`` at a time, exactly as they would have been pulled.
        """
        import pylsl

        if keep <= 0:
            dropped = self.inlet.flush()
            self.last_data_wall = pylsl.local_clock()
            return dropped
        data = self._raw_buf[:0].copy()
        stamps = np.empty(0)
        pulled = 0
        while True:  # what is queued now; a pull that does not fill the buffer emptied the queue
            n = self._pull_into(0.0)
            pulled += n
            data = np.concatenate([data, self._raw_buf[:n]])[-keep:]
            stamps = np.concatenate([stamps, self._raw[:n]])[-keep:]
            if n < self.max_chunk:
                break
        now = pylsl.local_clock()
        if len(stamps) and now - (stamps[-1] + self.pipeline_offset) - self._drift() > self.stall_timeout_s:
            stamps = stamps[:0]  # the stream went quiet while the session started: nothing is fresh enough
        self._kept = (data[-len(stamps) :], stamps) if len(stamps) else None
        self.last_data_wall = now
        return pulled - len(stamps)

    def _pull_kept(self) -> int:
        """Move up to ``max_chunk`` of the samples kept by :meth:`flush` into the pull buffers; return how many."""
        assert self._kept is not None
        data, stamps = self._kept
        n = min(len(stamps), self.max_chunk)
        self._raw_buf[:n] = data[:n]
        self._raw[:n] = stamps[:n]
        self._kept = (data[n:], stamps[n:]) if n < len(stamps) else None
        return n

    def close(self) -> None:
        """Close the inlet (a lost stream is closed quietly)."""
        if self.inlet is not None:
            try:
                self.inlet.close_stream()
            except Exception:  # noqa: BLE001 - closing a lost stream may fail; nothing to save
                pass
            self.inlet = None
