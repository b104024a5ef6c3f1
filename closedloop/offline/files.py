"""Open a recording file — XDF or anything MNE reads — as EEG blocks plus events.

:func:`open_recording` gives a :class:`RecordingFile`: the EEG stream's rate,
channels and units, its events (XDF marker streams, MNE annotations), and
:meth:`RecordingFile.blocks`, which yields the samples block by block
(constant memory) with their raw timestamps. Values are in µV, closedloop's
unit: MNE's volts are scaled by 1e6.

Timestamps: ``raw + time_offset`` gives the pipeline's time base. For a file
closedloop recorded, ``time_offset`` is the ``pipeline_offset`` stored in the
EEG stream header, so a replay sees bit-identical timestamps; for other XDF
files (LabRecorder) it is the first recorded clock offset (or 0); for MNE
files raw timestamps are ``sample / sfreq`` from the first sample.

:func:`plan_channels` matches the channels a pipeline names with the file's
(exactly, then ignoring case, then ignoring prefixes like ``EEG `` and
reference suffixes like ``-REF``) and explains any mismatch.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from closedloop.recording.reader import XDFReader, XDFStream

__all__ = [
    "Event",
    "RecordingFile",
    "RecordingError",
    "ChannelPlan",
    "open_recording",
    "plan_channels",
    "match_channels",
]

#: MNE channel types holding voltages (scaled V -> µV).
_VOLTAGE_TYPES = {"eeg", "eog", "ecg", "emg", "seeg", "ecog", "dbs", "bio"}
#: Roles of closedloop's own streams that are outputs, not events of the recording.
_OUTPUT_ROLES = {"safety"}


class RecordingError(ValueError):
    """A recording cannot be used with a pipeline (stream, channels, rate)."""


@dataclass(frozen=True, slots=True)
class Event:
    """A marker or annotation, in the pipeline's time base.

    Attributes
    ----------
    time : float
        Onset (s).
    duration : float
        Length (s); 0 for point markers.
    label : str
        The marker text or annotation description.
    stream : str
        Where it came from (marker stream name, or ``"annotations"``).
    """

    time: float
    duration: float
    label: str
    stream: str


@dataclass
class RecordingFile:
    """The EEG of one recording file, read block by block.

    Attributes
    ----------
    path : Path
        The file.
    kind : str
        ``"xdf"`` or ``"mne"``.
    name, type, source_id : str
        Stream identity (for MNE files: the file name, ``"EEG"``, ``""``).
    sfreq : float
        Sampling rate (Hz).
    ch_names, units : list of str
        The file's channels (those :meth:`blocks` yields) and their units.
    channel_format : str
        ``"float32"`` or ``"double64"`` (values as stored).
    n_samples : int
        Samples in the file.
    time_offset : float
        Added to raw timestamps to get the pipeline's time base.
    header_xml : str or None
        The stream's original header XML (XDF).
    events : list of Event
        Markers and annotations, sorted by time.
    """

    path: Path
    kind: str
    name: str
    type: str
    source_id: str
    sfreq: float
    ch_names: list[str]
    units: list[str]
    channel_format: str
    n_samples: int
    time_offset: float = 0.0
    header_xml: str | None = None
    events: list[Event] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _reader: XDFReader | None = field(default=None, repr=False)
    _stream_id: int = field(default=-1, repr=False)
    _raw: object = field(default=None, repr=False)
    _picks: np.ndarray | None = field(default=None, repr=False)
    _scale: np.ndarray | None = field(default=None, repr=False)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sfreq if self.sfreq > 0 else 0.0

    def blocks(
        self, picks: Sequence[int] | None = None, block_samples: int = 10_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(data (n, n_picks) in µV, raw timestamps (n,))`` in file order.

        Parameters
        ----------
        picks : list of int, optional
            Indices into :attr:`ch_names` (default: all), in the wanted order.
        block_samples : int
            Block size for MNE files (XDF files yield their own chunks).
        """
        sel = None if picks is None else np.asarray(picks, dtype=np.intp)
        if self.kind == "xdf":
            identity = sel is not None and np.array_equal(sel, np.arange(len(self.ch_names)))
            for values, stamps in self._reader.iter_samples(self._stream_id):
                if values.dtype.kind != "f":  # integer streams (some amplifiers): as float64
                    values = values.astype(np.float64)
                yield (values if sel is None or identity else np.ascontiguousarray(values[:, sel])), stamps
            return
        raw = self._raw
        chans = self._picks if sel is None else self._picks[sel]
        scale = (self._scale if sel is None else self._scale[sel])[:, None]
        for start in range(0, self.n_samples, block_samples):
            stop = min(self.n_samples, start + block_samples)
            data = raw.get_data(picks=chans, start=start, stop=stop)
            data *= scale
            yield np.ascontiguousarray(data.T), np.arange(start, stop, dtype=np.float64) / self.sfreq

    def eeg_info(self, picks: Sequence[int] | None = None, names: Sequence[str] | None = None) -> dict:
        """The ``eeg`` description for :class:`~closedloop.recording.SessionRecording`."""
        idx = range(len(self.ch_names)) if picks is None else list(picks)
        return {
            "name": self.name,
            "type": self.type or "EEG",
            "source_id": self.source_id,
            "sfreq": self.sfreq,
            "channel_format": self.channel_format,
            "ch_names": list(names) if names is not None else [self.ch_names[i] for i in idx],
            "units": ["microvolts" if self.kind == "mne" else (self.units[i] or "microvolts") for i in idx],
            "pipeline_offset": self.time_offset,
            "header_xml": self.header_xml,
        }


def open_recording(
    path: str | os.PathLike, name: str | None = None, type: str | None = None, source_id: str | None = None
) -> RecordingFile:
    """Open an XDF file or any file :func:`mne.io.read_raw` reads.

    Parameters
    ----------
    path : str or Path
        The recording.
    name, type, source_id : str, optional
        For XDF: which stream is the EEG (by default the stream closedloop
        recorded as EEG, else the first stream of type EEG).

    Raises
    ------
    RecordingError
        If the file has no usable EEG stream (the message lists its streams).
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recording not found: {path}")
    with open(path, "rb") as f:
        is_xdf = f.read(4) == b"XDF:"
    return _open_xdf(path, name, type, source_id) if is_xdf else _open_mne(path)


def _open_xdf(path: Path, name, type_, source_id) -> RecordingFile:
    reader = XDFReader(path)
    stream = _pick_eeg_stream(reader, name, type_, source_id)
    ours = stream.desc("closedloop/role") == "eeg"
    notes = []
    if reader.truncated:
        notes.append(
            f"file ends early ({reader.truncated}); reading up to its last whole chunk "
            f"(`closedloop repair` fixes the file)"
        )
    if ours:
        offset = float(stream.desc("closedloop/pipeline_offset") or 0.0)
        header_xml = stream.desc("closedloop/source_header_xml") or None
    else:
        offset = stream.clock_offsets[0][1] if stream.clock_offsets else 0.0
        import xml.etree.ElementTree as ET

        header_xml = ET.tostring(stream.header, encoding="unicode")
    labels = [lab or f"ch{i}" for i, lab in enumerate(stream.ch_names)]
    events = []
    for other in reader.streams.values():
        if other.channel_format != "string" or other.stream_id == stream.stream_id:
            continue
        if other.desc("closedloop/role") in _OUTPUT_ROLES:
            continue
        shift = other.clock_offsets[0][1] if other.clock_offsets else 0.0
        with_duration = other.ch_names[:2] == ["label", "duration"]
        for row, t in zip(other.strings, other.string_stamps.tolist()):
            if with_duration:  # annotations as closedloop records them: label, duration (s)
                events.append(Event(t + shift, _duration(row[1]), row[0], other.name))
            else:
                events.append(Event(t + shift, 0.0, row[0] if len(row) == 1 else "|".join(row), other.name))
    events.sort(key=lambda e: e.time)
    fmt = stream.channel_format
    if fmt not in ("float32", "double64"):
        notes.append(f"values stored as {fmt}; converted to float64")
    return RecordingFile(
        path=path,
        kind="xdf",
        name=stream.name,
        type=stream.type,
        source_id=stream.source_id,
        sfreq=stream.nominal_srate,
        ch_names=labels,
        units=stream.units,
        channel_format=fmt if fmt in ("float32", "double64") else "double64",
        n_samples=stream.sample_count,
        time_offset=offset,
        header_xml=header_xml,
        events=events,
        notes=notes,
        _reader=reader,
        _stream_id=stream.stream_id,
    )


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _pick_eeg_stream(reader: XDFReader, name, type_, source_id) -> XDFStream:
    numeric = [s for s in reader.streams.values() if s.channel_format != "string" and s.nominal_srate > 0]
    candidates: list[XDFStream] = []
    if name or source_id:
        candidates = [
            s for s in numeric if (not name or s.name == name) and (not source_id or s.source_id == source_id)
        ]
    if not candidates:
        candidates = [s for s in numeric if s.desc("closedloop/role") == "eeg"]
    if not candidates:
        wanted = (type_ or "EEG").lower()
        candidates = [s for s in numeric if s.type.lower() == wanted]
    if not candidates:
        listing = (
            "; ".join(
                f"{s.name!r} (type {s.type!r}, {s.channel_count} ch, {s.nominal_srate:g} Hz, {s.channel_format})"
                for s in reader.streams.values()
            )
            or "no streams"
        )
        want = f"name {name!r}" if name else f"type {(type_ or 'EEG')!r}"
        raise RecordingError(f"{reader.path}: no regularly sampled numeric stream with {want}; the file has: {listing}")
    return candidates[0]


def _open_mne(path: Path) -> RecordingFile:
    import mne

    try:
        raw = mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as err:  # noqa: BLE001 - MNE raises many types for unknown formats
        raise RecordingError(f"{path}: neither XDF nor a format MNE reads ({type(err).__name__}: {err})") from None
    types = raw.get_channel_types()
    picks = [i for i, t in enumerate(types) if t == "eeg"]
    if not picks:
        picks = [i for i, t in enumerate(types) if t in _VOLTAGE_TYPES or t == "misc"]
    if not picks:
        raise RecordingError(f"{path}: no EEG channels; channel types are {sorted(set(types))}")
    scale = np.array([1e6 if types[i] in _VOLTAGE_TYPES else 1.0 for i in picks])
    ann = raw.annotations
    events = [
        Event(float(on - raw.first_time), float(dur), str(desc), "annotations")
        for on, dur, desc in zip(ann.onset, ann.duration, ann.description)
    ]
    events.sort(key=lambda e: e.time)
    return RecordingFile(
        path=path,
        kind="mne",
        name=path.stem,
        type="EEG",
        source_id="",
        sfreq=float(raw.info["sfreq"]),
        ch_names=[raw.ch_names[i] for i in picks],
        units=["µV" if s == 1e6 else "" for s in scale],
        channel_format="double64",
        n_samples=int(raw.n_times),
        time_offset=0.0,
        events=events,
        _raw=raw,
        _picks=np.array(picks, dtype=np.intp),
        _scale=scale,
    )


# -- channels -----------------------------------------------------------------------
_PREFIX = re.compile(r"^(eeg|eog|ecg|emg)[\s_:-]+", re.IGNORECASE)
_SUFFIX = re.compile(r"[\s_]*-\s*(ref|le|re|avg|ar|a1|a2|m1|m2|cz|lm|rm)$", re.IGNORECASE)


def _normal(name: str) -> str:
    n = _SUFFIX.sub("", _PREFIX.sub("", name.strip()))
    return n.replace(" ", "").replace(".", "").lower()


def match_channels(wanted: Sequence[str], available: Sequence[str], where: str = "the file") -> list[int]:
    """Index in ``available`` of each ``wanted`` channel.

    Matching is exact first, then case-insensitive, then on normalised names
    (``EEG O1-REF`` matches ``O1``); a normalised match must be unique.

    Raises
    ------
    RecordingError
        Listing the channels not found and every channel ``where`` has.
    """
    exact = {n: i for i, n in enumerate(available)}
    lower: dict[str, list[int]] = {}
    normal: dict[str, list[int]] = {}
    for i, n in enumerate(available):
        lower.setdefault(n.lower(), []).append(i)
        normal.setdefault(_normal(n), []).append(i)
    out, missing = [], []
    for w in wanted:
        if w in exact:
            out.append(exact[w])
        elif len(lower.get(w.lower(), [])) == 1:
            out.append(lower[w.lower()][0])
        elif len(normal.get(_normal(w), [])) == 1:
            out.append(normal[_normal(w)][0])
        else:
            missing.append(w)
    if missing:
        raise RecordingError(
            f"channels {missing} named by the pipeline are not in {where}; "
            f"it has {len(available)} channels: {list(available)}"
        )
    return out


@dataclass(frozen=True)
class ChannelPlan:
    """Which file channels feed the pipeline, and under which names.

    Attributes
    ----------
    picks : list of int
        Indices into the file's channels, in the order fed.
    names : list of str
        Channel names as the pipeline knows them (matched channels renamed).
    """

    picks: list[int]
    names: list[str]


def plan_channels(recording: RecordingFile, resolved) -> ChannelPlan:
    """Match a pipeline's channels to a recording and check its rate.

    A ``[source]`` that lists ``channels`` gets exactly those, in that order;
    otherwise every EEG channel of the file is fed, and the channels of
    ``[features]`` must be among them.

    Raises
    ------
    RecordingError
        On a rate mismatch or missing channels (naming what the file has).
    """
    cfg = resolved.config
    where = f"{recording.path.name} (stream {recording.name!r})"
    if not math.isclose(recording.sfreq, cfg.sfreq, rel_tol=1e-6):
        raise RecordingError(
            f"the pipeline expects {cfg.sfreq:g} Hz ([source] sfreq in {resolved.path}) but {where} "
            f"is sampled at {recording.sfreq:g} Hz; set [source] sfreq = {recording.sfreq:g} or resample the file"
        )
    listed = getattr(cfg.source, "channels", None)
    if listed:
        picks = match_channels(listed, recording.ch_names, where)
        return ChannelPlan(picks, list(listed))
    n_expected = getattr(cfg.source, "n_channels", None)
    if getattr(cfg.source, "kind", "") == "lsl" and n_expected is not None and n_expected != len(recording.ch_names):
        raise RecordingError(
            f"the pipeline expects {n_expected} channels but {where} has "
            f"{len(recording.ch_names)}: {recording.ch_names}"
        )
    names = list(recording.ch_names)
    wanted = list(cfg.features.channels)
    for w, i in zip(wanted, match_channels(wanted, recording.ch_names, where)):
        names[i] = w
    return ChannelPlan(list(range(len(names))), names)
