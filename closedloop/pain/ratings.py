"""Pain ratings as data: a rating stream aligned to frames, live and in replay alike.

A :class:`RatingTrack` holds ratings in the pipeline's time base and answers,
for each frame, the latest rating and its age (``rating``, ``rating_age_s``).
Each rating has its own time (when it was given: its LSL timestamp, clock
corrected) and an *effective* time, from which frames use it. Normally the two
are equal. Live, a rating can arrive after a frame newer than its own time was
processed (a network delay); that frame did not see it, so the rating takes
effect just after it. Effective times are recorded (``closedloop-ratings-aligned``:
one sample per rating, stamped at its effective time, holding the rating and
its own time), so a replay of ``session.xdf`` feeds the same ratings to the
same frames and reproduces the live values exactly.

:class:`RatingInlet` pulls the rating stream in the loop thread, before each
chunk (non-blocking), records it as received (values, raw timestamps, clock
offsets, like every other stream) and adds each rating to the track.
:func:`ratings_from_recording` reads them back: the aligned stream when the
file has it, otherwise the rating stream itself (own time = effective time),
e.g. for a LabRecorder file.

A rating is a number on the configured scale (default 0-10): a numeric
channel, or text such as ``"7"``, ``"7.5"``, ``"rating: 7"`` or JSON
``{"rating": 7}`` (also ``value``, ``nrs``, ``vas``, ``pain``). Anything else,
or a number off the scale, is counted as rejected and ignored.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ALIGNED_STREAM",
    "RATING_CHANNELS",
    "RatingInlet",
    "RatingTrack",
    "RecordedRatings",
    "parse_rating",
    "ratings_from_recording",
]

log = logging.getLogger(__name__)

#: The stream of ratings as the pipeline used them (stamped at their effective time).
ALIGNED_STREAM = "closedloop-ratings-aligned"
#: Its channels: the rating, and its own time (pipeline time base).
RATING_CHANNELS = ("rating", "rating_time")

_JSON_KEYS = ("rating", "value", "nrs", "vas", "pain")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_rating(value: object) -> float | None:
    """Return the number a rating sample holds, or None.

    Numbers pass as they are; text may be a number (``"7"``), a label and a
    number (``"rating: 7"``, ``"NRS=7"``; exactly one number) or a JSON object
    with one of the keys ``rating``, ``value``, ``nrs``, ``vas``, ``pain``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.number):
        x = float(value)
        return x if math.isfinite(x) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        x = float(text)
        return x if math.isfinite(x) else None
    except ValueError:
        pass
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(doc, dict):
            for key in _JSON_KEYS:
                if key in doc:
                    return parse_rating(doc[key])
        return None
    numbers = _NUMBER.findall(text)
    if len(numbers) == 1:
        x = float(numbers[0])
        return x if math.isfinite(x) else None
    return None


class RatingTrack:
    """Ratings in the pipeline's time base, and the latest one at each frame.

    Parameters
    ----------
    scale : (float, float)
        Ratings outside ``[low, high]`` are rejected.
    max_age_s : float, optional
        Older ratings read NaN.
    on_rating : callable, optional
        Called ``(effective_time, own_time, value)`` for every accepted
        rating (the live session records it).

    Attributes
    ----------
    accepted, rejected, late : int
        Ratings taken; ratings refused (not a number, off the scale); ratings
        that arrived after a frame newer than their own time (they took
        effect at the next frame).
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.0, 10.0),
        max_age_s: float | None = None,
        on_rating: Callable[[float, float, float], None] | None = None,
    ) -> None:
        self.scale = (float(scale[0]), float(scale[1]))
        self.max_age_s = max_age_s
        self.on_rating = on_rating
        self.effective: list[float] = []
        self.times: list[float] = []
        self.values: list[float] = []
        self._next = 0  # first rating not yet in force
        self._current = -1  # the rating in force
        self.last_frame_time = -math.inf
        self.accepted = 0
        self.rejected = 0
        self.late = 0

    def __len__(self) -> int:
        return len(self.values)

    def add(self, own_time: float, value: float | None, effective: float | None = None) -> float | None:
        """Add a rating given at ``own_time``; return its effective time (None if rejected).

        Parameters
        ----------
        own_time : float
            When it was given (pipeline time base).
        value : float or None
            The rating (None: not a number).
        effective : float, optional
            From which frame time it counts (a replay passes the recorded
            one); by default its own time, or just after the newest frame
            already processed when it comes too late for that.
        """
        lo, hi = self.scale
        if value is None or not math.isfinite(value) or not lo <= value <= hi or not math.isfinite(own_time):
            self.rejected += 1
            return None
        if effective is None:
            effective = own_time
            if own_time <= self.last_frame_time:
                effective = math.nextafter(self.last_frame_time, math.inf)
        if effective > own_time:
            self.late += 1
        if self.effective and effective < self.effective[-1]:
            effective = self.effective[-1]  # out-of-order arrivals: the newer arrival wins from then on
        self.effective.append(float(effective))
        self.times.append(float(own_time))
        self.values.append(float(value))
        self.accepted += 1
        if self.on_rating is not None:
            self.on_rating(effective, own_time, value)
        return effective

    def at(self, t: float) -> tuple[float, float]:
        """Return ``(rating, age_s)`` at frame time ``t`` (NaN, NaN before the first rating).

        Frames must come in time order (the pipeline's do).
        """
        eff = self.effective
        n = len(eff)
        i = self._next
        while i < n and eff[i] <= t:
            i += 1
        if i != self._next:
            self._current = i - 1
            self._next = i
        if t > self.last_frame_time:
            self.last_frame_time = t
        j = self._current
        if j < 0:
            return math.nan, math.nan
        age = t - self.times[j]
        if self.max_age_s is not None and age > self.max_age_s:
            return math.nan, age
        return self.values[j], age

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(effective times, own times, values)``."""
        return np.array(self.effective), np.array(self.times), np.array(self.values)


@dataclass
class RecordedRatings:
    """The ratings a recording holds, in the pipeline's time base.

    Attributes
    ----------
    effective, times, values : ndarray
        Effective time, own time and value of each rating.
    source : str
        ``"aligned"`` (the recorded ``closedloop-ratings-aligned``: live values
        reproduced exactly), ``"stream"`` (the rating stream itself) or
        ``"none"``.
    stream : str
        The name of the stream read.
    rejected : int
        Samples that were not a rating on the scale.
    notes : list of str
        What was assumed.
    """

    effective: np.ndarray
    times: np.ndarray
    values: np.ndarray
    source: str = "none"
    stream: str = ""
    rejected: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def fill(self, track: RatingTrack) -> None:
        """Add every rating to ``track`` with its effective time."""
        for e, t, v in zip(self.effective.tolist(), self.times.tolist(), self.values.tolist()):
            track.add(t, v, effective=e)


def _empty(notes: list[str]) -> RecordedRatings:
    z = np.zeros(0)
    return RecordedRatings(z, z.copy(), z.copy(), "none", "", 0, notes)


def _channel_index(channel: int | str, labels: Sequence[str], count: int, where: str) -> int:
    if isinstance(channel, str):
        if channel not in labels:
            raise ValueError(f"ratings.channel: {where} has no channel {channel!r}; its channels: {list(labels)}")
        return list(labels).index(channel)
    if channel >= count:
        raise ValueError(f"ratings.channel: {where} has {count} channel(s); index {channel} does not exist")
    return channel


def ratings_from_recording(path: str | Path, ratings_cfg) -> RecordedRatings:
    """Read the ratings of an XDF recording, in the pipeline's time base.

    Parameters
    ----------
    path : str or Path
        The recording (a file that is not XDF holds no ratings).
    ratings_cfg : RatingsConfig
        The pipeline's ``[ratings]``: which stream and channel, the scale.

    Raises
    ------
    ValueError
        If the rating stream has no such channel.
    """
    from closedloop.recording.reader import XDFReader

    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"XDF:":
            return _empty([f"{path.name} is not an XDF file: it holds no rating stream"])
    reader = XDFReader(path)
    lo, hi = ratings_cfg.scale
    for stream in reader.find(name=ALIGNED_STREAM):
        if stream.channel_format == "string" or stream.channel_count != len(RATING_CHANNELS):
            continue
        values, stamps = reader.read_stream(stream.stream_id)
        v = np.asarray(values[:, 0], dtype=float)
        ok = np.isfinite(v) & (v >= lo) & (v <= hi)
        notes = [] if ok.any() else [f"{path.name}: no rating arrived during the session: rating is NaN throughout"]
        return RecordedRatings(
            np.asarray(stamps, dtype=float)[ok],
            np.asarray(values[:, 1], dtype=float)[ok],
            v[ok],
            "aligned",
            ALIGNED_STREAM,
            int((~ok).sum()),
            notes,
        )
    q = ratings_cfg.stream
    found = [
        s
        for s in reader.streams.values()
        if s.name != ALIGNED_STREAM
        and (q.name is None or s.name == q.name)
        and (q.type is None or s.type.lower() == q.type.lower())
        and (q.source_id is None or s.source_id == q.source_id)
    ]
    wanted = ", ".join(f"{k} {v!r}" for k, v in q.model_dump(exclude={"required"}, exclude_none=True).items())
    if not found:
        return _empty([f"{path.name} has no rating stream ({wanted}): rating is NaN throughout"])
    stream = found[0]
    notes = [] if len(found) == 1 else [f"{len(found)} streams match {wanted}; read the first, {stream.name!r}"]
    idx = _channel_index(ratings_cfg.channel, stream.ch_names, stream.channel_count, f"stream {stream.name!r}")
    shift = stream.clock_offsets[0][1] if stream.clock_offsets else 0.0
    if stream.channel_format == "string":
        raw = [parse_rating(row[idx]) for row in stream.strings]
        stamps = np.asarray(stream.string_stamps, dtype=float)
    else:
        values, stamps = reader.read_stream(stream.stream_id)
        raw = [parse_rating(float(x)) for x in values[:, idx]]
    v = np.array([math.nan if x is None else x for x in raw], dtype=float)
    ok = np.isfinite(v) & (v >= lo) & (v <= hi)
    times = np.asarray(stamps, dtype=float)[ok] + shift
    order = np.argsort(times, kind="stable")
    times, v = times[order], v[ok][order]
    return RecordedRatings(times, times.copy(), v, "stream", stream.name, int((~ok).sum()), notes)


class RatingInlet:
    """Pull a rating stream live, record it, and add each rating to a track.

    :meth:`poll` is meant for the loop thread, before each chunk: it never
    blocks (``pull_chunk(timeout=0)``) and never raises; a lost stream is
    logged and kept in :attr:`error`, and ratings simply stop.

    Parameters
    ----------
    config : RatingsConfig
        The pipeline's ``[ratings]``.
    track : RatingTrack
        Where the ratings go (the pipeline's).
    recording : SessionRecording, optional
        Records the stream as received, its clock offsets and ``closedloop-ratings-aligned``.
    resolve_timeout_s : float
        How long :meth:`open` looks for the stream.
    offset_interval_s : float
        Interval between clock offset measurements.
    """

    def __init__(
        self,
        config,
        track: RatingTrack,
        recording=None,
        resolve_timeout_s: float = 2.0,
        offset_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.track = track
        self.recording = recording
        self.resolve_timeout_s = resolve_timeout_s
        self.offset_interval_s = offset_interval_s
        self.clock = clock
        self.name: str | None = None
        self.samples = 0
        self.error: BaseException | None = None
        self._inlet = None
        self._index = 0
        self._offset = 0.0
        self._next_offset = math.inf
        self._records_raw = False  # whether this inlet records the stream as received (or another one does)

    def open(self) -> RatingInlet:
        """Resolve the stream and start recording it.

        Raises
        ------
        closedloop.sources.SourceError
            If the stream is required and not found, or has no such channel.
        """
        from closedloop.lslconfig import configure_lsl

        configure_lsl()
        import pylsl

        from closedloop.recording.inlets import _FORMATS, _labels
        from closedloop.sources.lsl import SourceError, resolve_one

        query = self.config.stream.model_dump(exclude={"required"}, exclude_none=True)
        try:
            info = resolve_one(**query, timeout=self.resolve_timeout_s, settle=0.2)
        except SourceError as err:
            if self.config.stream.required:
                raise SourceError(f"ratings.stream: {err}") from None
            log.warning("no ratings this session: %s", err)
            return self
        inlet = pylsl.StreamInlet(info, max_buflen=60, recover=False, processing_flags=0)
        full = inlet.info(timeout=self.resolve_timeout_s)
        labels = _labels(full)
        try:
            self._index = _channel_index(
                self.config.channel, labels, full.channel_count(), f"LSL stream {full.name()!r}"
            )
        except ValueError as e:
            raise SourceError(str(e)) from None
        self.name = full.name()
        inlet.open_stream(timeout=self.resolve_timeout_s)
        self._offset = inlet.time_correction(timeout=2.0)
        self._inlet = inlet
        self._next_offset = self.clock() + self.offset_interval_s
        rec = self.recording
        if rec is not None:
            try:
                rec.add_stream(
                    self.name,
                    full.type(),
                    full.channel_count(),
                    full.nominal_srate(),
                    _FORMATS.get(full.channel_format(), "double64"),
                    full.source_id(),
                    labels or None,
                    full.as_xml(),
                    clock_offset=None,  # measured: below and every offset_interval_s
                )
                self._records_raw = True
                rec.on_clock_offset(pylsl.local_clock(), self._offset, stream=self.name)
            except ValueError:  # already recorded ([recording] streams, the dashboard's ratings): not twice
                self._records_raw = False
            rec.add_stream(ALIGNED_STREAM, "Ratings", len(RATING_CHANNELS), 0.0, "double64", ch_names=RATING_CHANNELS)
            self.track.on_rating = _chain(self.track.on_rating, self._record_aligned)
        return self

    def _record_aligned(self, effective: float, own: float, value: float) -> None:
        self.recording.on_marker(ALIGNED_STREAM, np.array([[value, own]]), (effective,))

    def poll(self) -> int:
        """Pull what has arrived, record it and add it to the track; return the ratings pulled."""
        inlet = self._inlet
        if inlet is None:
            return 0
        try:
            values, stamps = inlet.pull_chunk(timeout=0.0)
        except Exception as err:  # noqa: BLE001 - a lost rating stream must not take the session down
            self.error = err
            self._inlet = None
            log.warning("rating stream %s stopped: %s: %s", self.name, type(err).__name__, err)
            return 0
        if self.clock() >= self._next_offset:
            self._measure_offset(inlet)
        if not stamps:
            return 0
        if self._records_raw:
            self.recording.on_marker(self.name, values, stamps)
        i = self._index
        for row, stamp in zip(values, stamps):
            self.track.add(stamp + self._offset, parse_rating(row[i]))
        self.samples += len(stamps)
        return len(stamps)

    def _measure_offset(self, inlet) -> None:
        import pylsl

        self._next_offset = self.clock() + self.offset_interval_s
        try:
            self._offset = inlet.time_correction(timeout=0.0)
        except Exception:  # noqa: BLE001 - no new estimate yet (or the stream went): keep the last one
            return
        if self._records_raw:
            self.recording.on_clock_offset(pylsl.local_clock(), self._offset, stream=self.name)

    def close(self) -> None:
        """Pull what is left and close the inlet."""
        if self._inlet is None:
            return
        self.poll()
        try:
            self._inlet.close_stream()
        except Exception:  # noqa: BLE001 - closing a lost stream may fail; nothing to save
            pass
        self._inlet = None


def _chain(first, second):
    if first is None:
        return second

    def both(*args):
        first(*args)
        second(*args)

    return both
