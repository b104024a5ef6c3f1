"""Open a recording file — XDF or anything MNE reads — as EEG blocks plus events.

:func:`open_recording` gives a :class:`RecordingFile`: the EEG stream's rate,
channels and units, its events (XDF marker streams, MNE annotations), and
:meth:`RecordingFile.blocks`, which yields the samples block by block
(constant memory) with their raw timestamps. Values are in µV, closedloop's
unit, scaled by :func:`closedloop.units.to_microvolts` from the unit each
channel declares (an XDF header's ``unit``; MNE's volts), exactly as the live
source scales them, so a replay of a recorded session reproduces it bit for bit.
Channel types come from the XDF header or MNE, corrected by the labels
(:func:`closedloop.channels.channel_types`): EDF files type every channel EEG.

Timestamps: ``raw + time_offset`` gives the pipeline's time base. For a file
closedloop recorded, ``time_offset`` is the ``pipeline_offset`` stored in the
EEG stream header, so a replay sees bit-identical timestamps; for other XDF
files (LabRecorder) it is the first recorded clock offset (or 0); for MNE
files raw timestamps are ``sample / sfreq`` from the first sample.

:func:`plan_channels` matches the channels a pipeline names with the file's
(:func:`closedloop.channels.match`: exactly, then ignoring case, then ignoring
prefixes like ``EEG `` and reference suffixes like ``-REF``) and explains any
mismatch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from closedloop.channels import (
    ChannelError,
    average_reference,
    channel_types,
    check_labels,
    describe_excluded,
    generic_names,
    is_generic,
    match,
    named_channels,
)
from closedloop.recording.reader import XDFReader, XDFStream
from closedloop.units import UnitError, microvolts_per, scale_factors, to_microvolts, voltage_channels

__all__ = [
    "Event",
    "RecordingFile",
    "RecordingError",
    "ChannelPlan",
    "open_recording",
    "plan_channels",
    "match_channels",
    "CHUNK_S",
    "chunk_samples_for",
    "ChannelScaling",
    "stream_scaling",
]

#: MNE channel types holding voltages (scaled V -> µV).
_VOLTAGE_TYPES = {"eeg", "eog", "ecg", "emg", "seeg", "ecog", "dbs", "bio"}
#: EDF/BDF: the formats whose annotations may need another text encoding.
_EDF_SUFFIXES = {".edf", ".bdf"}
#: Roles of closedloop's own streams that are outputs, not events of the recording.
_OUTPUT_ROLES = {"safety"}

#: Data per chunk a replay (or an offline feature extraction) feeds the pipeline by default (s). Nothing
#: depends on it but the speed: every call costs some Python glue per chunk, and a chunk's samples and
#: filtered signals still fit the cache (64 channels at 1 kHz: 0.5 -> 2 s per chunk took ~17 % less
#: time per frame; 1.5-4 s alike).
CHUNK_S = 2.0


def chunk_samples_for(cfg) -> int:
    """Return the samples per chunk a replay of pipeline ``cfg`` feeds by default: :data:`CHUNK_S`, at least one hop."""
    return max(cfg.features.hop_samples, int(round(CHUNK_S * cfg.sfreq)))


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
        The file's channels (those :meth:`blocks` yields) and their units as
        the file declares them.
    ch_types : list of str
        Channel types (``EEG``, ``ECG``, ``REF``...): declared, corrected by the labels.
    factors : ndarray
        Per channel: µV per stored unit (what :meth:`blocks` multiplies by).
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
    notes : list of str
        What reading assumed (units, encodings, a cut file, channels left out).
    ref_excluded : list of str
        Channels an average reference leaves out (set by :func:`plan_channels`).
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
    ch_types: list[str] = field(default_factory=list)
    factors: np.ndarray | None = None
    ref_excluded: list[str] = field(default_factory=list)
    _reader: XDFReader | None = field(default=None, repr=False)
    _stream_id: int = field(default=-1, repr=False)
    _raw: object = field(default=None, repr=False)
    _picks: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.ch_types:
            self.ch_types = channel_types(self.ch_names, None, self.type)
        if self.factors is None:
            self.factors = np.ones(len(self.ch_names))

    @property
    def duration_s(self) -> float:
        """Return the recording's length (s)."""
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
            Block size for MNE files; XDF files yield their chunks, joined
            until a block holds at least this many samples.
        """
        sel = None if picks is None else np.asarray(picks, dtype=np.intp)
        factors = self.factors if sel is None else self.factors[sel]
        scale = bool(np.any(factors != 1.0))
        if self.kind == "xdf":
            identity = sel is not None and np.array_equal(sel, np.arange(len(self.ch_names)))
            cast = {}
            picks_read = None if sel is None or identity else sel  # only these columns are copied out
            for values, stamps in self._reader.iter_samples(self._stream_id, block_samples, picks_read):
                if values.dtype.kind != "f":  # integer streams (some amplifiers): as float64
                    values = values.astype(np.float64)
                if scale:  # in the stored dtype, as the live source scales: a replay stays bit-identical
                    f = cast.setdefault(values.dtype, factors.astype(values.dtype))
                    to_microvolts(values, f)
                yield values, stamps
            return
        raw = self._raw
        chans = self._picks if sel is None else self._picks[sel]
        for start in range(0, self.n_samples, block_samples):
            stop = min(self.n_samples, start + block_samples)
            data = raw.get_data(picks=chans, start=start, stop=stop).T
            if scale:
                to_microvolts(data, factors)
            yield np.ascontiguousarray(data), np.arange(start, stop, dtype=np.float64) / self.sfreq

    def eeg_info(self, picks: Sequence[int] | None = None, names: Sequence[str] | None = None) -> dict:
        """Return the ``eeg`` description :class:`~closedloop.recording.SessionRecording` needs."""
        idx = range(len(self.ch_names)) if picks is None else list(picks)
        return {
            "name": self.name,
            "type": self.type or "EEG",
            "source_id": self.source_id,
            "sfreq": self.sfreq,
            "channel_format": self.channel_format,
            "ch_names": list(names) if names is not None else [self.ch_names[i] for i in idx],
            # blocks() yields µV: every voltage channel is recorded as such
            "units": [self._unit_out(i) for i in idx],
            "ch_types": [self.ch_types[i] for i in idx],
            "ref_excluded": list(self.ref_excluded),
            "pipeline_offset": self.time_offset,
            "header_xml": self.header_xml,
        }

    def _unit_out(self, i: int) -> str:
        """Return the unit of channel ``i`` as :meth:`blocks` yields it."""
        unit = self.units[i] if i < len(self.units) else ""
        if self.factors[i] != 1.0 or not unit:
            return "microvolts"
        try:
            return "microvolts" if microvolts_per(unit) is not None else unit
        except UnitError:
            return unit

    def use_units(self, unit: str) -> None:
        """Take every voltage channel as recorded in ``unit`` (a pipeline's ``[source] units``)."""
        self.factors, _ = scale_factors(self.units, self.ch_types, self.ch_names, unit, self._where)
        self.notes = [n for n in self.notes if "declares no unit" not in n]

    @property
    def _where(self) -> str:
        return f"{self.path.name} (stream {self.name!r})"


def open_recording(
    path: str | os.PathLike,
    name: str | None = None,
    type: str | None = None,
    source_id: str | None = None,
    *,
    encoding: str | None = None,
) -> RecordingFile:
    """Open an XDF file or any file :func:`mne.io.read_raw` reads.

    Parameters
    ----------
    path : str or Path
        The recording.
    name, type, source_id : str, optional
        For XDF: which stream is the EEG (by default the stream closedloop
        recorded as EEG, else the first stream of type EEG; ``type`` ignores case).
    encoding : str, optional
        Text encoding of EDF/BDF annotations (e.g. ``"latin1"``). By default
        UTF-8 is tried, then latin1 (with a note) when UTF-8 cannot decode them.

    Raises
    ------
    RecordingError
        If the file has no usable EEG stream (the message lists its streams),
        its labels cannot name channels, or a channel's unit is unknown.
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recording not found: {path}")
    with open(path, "rb") as f:
        is_xdf = f.read(4) == b"XDF:"
    try:
        if is_xdf:
            if encoding is not None:
                raise RecordingError(f"{path}: encoding applies to EDF/BDF annotations, not to XDF files")
            return _open_xdf(path, name, type, source_id)
        return _open_mne(path, encoding)
    except (ChannelError, UnitError) as e:
        raise RecordingError(str(e)) from None


@dataclass(frozen=True)
class ChannelScaling:
    """How a replay reads a recorded stream's channels.

    Attributes
    ----------
    types : list of str
        Channel types (:func:`closedloop.channels.channel_types`).
    factors : ndarray
        µV per value as recorded (1 for channels left as they are).
    volts : list of bool
        Whether each channel's values are voltages (scaled by ``factors``).
    notes : list of str
        What was assumed (voltage channels that declare no unit).
    """

    types: list[str]
    factors: np.ndarray
    volts: list[bool]
    notes: list[str]


def stream_scaling(stream: XDFStream, labels: Sequence[str], where: str) -> ChannelScaling:
    """Type and scale ``stream``'s channels (labelled ``labels``) as a replay does.

    The one rule every reader of a recording uses (replay, recorded dashboard,
    report, BIDS export): types from the header corrected by the labels,
    voltages to µV from the units the header records, other channels as they
    are. Raises :class:`~closedloop.units.UnitError` naming the channel when a
    voltage channel's unit is not a voltage.
    """
    types = channel_types(labels, stream.ch_types, stream.type)
    factors, notes = scale_factors(stream.units, types, labels, None, where)
    return ChannelScaling(types, factors, voltage_channels(stream.units, types), notes)


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
    where = f"{path.name} (stream {stream.name!r})"
    if any(stream.ch_names):
        check_labels(stream.ch_names, where)
        labels = list(stream.ch_names)
    else:
        labels = generic_names(stream.channel_count)
    scaling = stream_scaling(stream, labels, where)
    types, factors = scaling.types, scaling.factors
    notes += scaling.notes
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
        ch_types=types,
        factors=factors,
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


def _read_raw(path: Path, encoding: str | None):
    """Return (raw, encoding used): EDF/BDF annotations in UTF-8, else latin1."""
    import mne

    edf = path.suffix.lower() in _EDF_SUFFIXES
    if encoding is not None and not edf:
        raise RecordingError(f"{path}: encoding applies to EDF/BDF annotations, not to {path.suffix or 'this'} files")
    tries = [encoding] if encoding is not None else (["utf8", "latin1"] if edf else [None])
    for k, enc in enumerate(tries):
        kwargs = {"encoding": enc} if enc is not None else {}
        try:
            return mne.io.read_raw(path, preload=False, verbose="error", **kwargs), enc
        except LookupError:
            raise RecordingError(f"{path}: unknown text encoding {encoding!r}") from None
        except Exception as err:  # noqa: BLE001 - MNE raises many types for unknown formats
            undecodable = "encoding" in str(err) or isinstance(err, UnicodeDecodeError)
            if undecodable and k + 1 < len(tries):
                continue
            if undecodable:
                raise RecordingError(
                    f"{path}: its annotations cannot be decoded as {enc} ({err}); give the file's encoding"
                ) from None
            raise RecordingError(f"{path}: neither XDF nor a format MNE reads ({type(err).__name__}: {err})") from None
    raise AssertionError("unreachable")


def _open_mne(path: Path, encoding: str | None = None) -> RecordingFile:
    from mne.io.constants import FIFF

    raw, used = _read_raw(path, encoding)
    notes = []
    if encoding is None and used == "latin1":
        notes.append("annotations are not UTF-8: read as latin1 (give the encoding if that is wrong)")
    mne_types = raw.get_channel_types()
    picks = [i for i, t in enumerate(mne_types) if t in _VOLTAGE_TYPES or t == "misc"]
    if not picks:
        raise RecordingError(f"{path}: no EEG channels; channel types are {sorted(set(mne_types))}")
    labels = [raw.ch_names[i] for i in picks]
    types = channel_types(labels, [mne_types[i] for i in picks], "EEG")
    if "EEG" not in types and "MISC" in types:  # some formats type everything misc: take those as EEG
        types = ["EEG" if t == "MISC" else t for t in types]
        notes.append("no channel is typed EEG: misc channels taken as EEG")
    if "EEG" not in types:
        raise RecordingError(f"{path}: no EEG channels; channels are typed {dict(zip(labels, types))}")
    # MNE hands out SI units: volts for every voltage channel
    units = ["V" if raw.info["chs"][i]["unit"] == FIFF.FIFF_UNIT_V else "" for i in picks]
    factors, _ = scale_factors(units, types, labels, None, path.name)
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
        ch_names=labels,
        units=units,
        channel_format="double64",
        n_samples=int(raw.n_times),
        time_offset=0.0,
        events=events,
        notes=notes,
        ch_types=types,
        factors=factors,
        _raw=raw,
        _picks=np.array(picks, dtype=np.intp),
    )


# -- channels -----------------------------------------------------------------------
def match_channels(
    wanted: Sequence[str], available: Sequence[str], where: str = "the file", key: str = "channels"
) -> list[int]:
    """Return the index in ``available`` of each ``wanted`` channel (see :func:`closedloop.channels.match`).

    Raises
    ------
    RecordingError
        One line listing the channels not found and every channel ``where`` has.
    """
    try:
        return match(wanted, available, key, where, is_generic(available))
    except ChannelError as e:
        raise RecordingError(str(e)) from None


@dataclass(frozen=True)
class ChannelPlan:
    """Which file channels feed the pipeline.

    Attributes
    ----------
    picks : list of int
        Indices into the file's channels, in the order fed.
    names : list of str
        Their labels (the pipeline's names find them by :func:`closedloop.channels.match`).
    types : list of str
        Their types (``EEG``, ``ECG``, ``REF``...).
    """

    picks: list[int]
    names: list[str]
    types: list[str] = field(default_factory=list)


def plan_channels(recording: RecordingFile, resolved) -> ChannelPlan:
    """Match a pipeline's channels to a recording and check its rate.

    A ``[source]`` that lists ``channels`` gets exactly those, in that order;
    otherwise every channel of the file is fed. Every channel ``[preprocess]``
    and ``[features]`` name must be found (picks, reference, Laplacian, ROI
    members, channels). A ``[source] units`` applies to the file too. Notes
    about channels an average reference leaves out go to ``recording.notes``.

    Raises
    ------
    RecordingError
        On a rate mismatch or missing channels (naming the key and what the file has).
    """
    cfg = resolved.config
    where = recording._where
    if not math.isclose(recording.sfreq, cfg.sfreq, rel_tol=1e-6):
        raise RecordingError(
            f"the pipeline expects {cfg.sfreq:g} Hz ([source] sfreq in {resolved.path}) but {where} "
            f"is sampled at {recording.sfreq:g} Hz; set [source] sfreq = {recording.sfreq:g} or resample the file"
        )
    units = getattr(cfg.source, "units", None)
    if units:
        recording.use_units(units)
    listed = getattr(cfg.source, "channels", None)
    if listed:
        picks = match_channels(listed, recording.ch_names, where, "source.channels")
    else:
        n_expected = getattr(cfg.source, "n_channels", None)
        if (
            getattr(cfg.source, "kind", "") == "lsl"
            and n_expected is not None
            and n_expected != len(recording.ch_names)
        ):
            raise RecordingError(
                f"source.n_channels: the pipeline expects {n_expected} channels but {where} has "
                f"{len(recording.ch_names)}: {recording.ch_names}"
            )
        picks = list(range(len(recording.ch_names)))
    names = [recording.ch_names[i] for i in picks]
    types = [recording.ch_types[i] for i in picks]
    unlabeled = is_generic(names)
    try:
        for key, wanted in named_channels(cfg.features, cfg.preprocess).items():
            match(wanted, names, key, where, unlabeled)
    except ChannelError as e:
        raise RecordingError(str(e)) from None
    pp = cfg.preprocess
    if pp.reference == "average":
        chosen = match(list(pp.picks), names, "preprocess.picks", where) if pp.picks is not None else None
        _, out = average_reference(names, types, chosen)
        recording.ref_excluded = [names[i] for i in out]
        if out:
            recording.notes.append(
                f"left out of the average reference (not EEG): {describe_excluded(names, types, out)}; "
                f"name channels in preprocess.picks to choose them yourself"
            )
    return ChannelPlan(picks, names, types)
