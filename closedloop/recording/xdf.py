"""A minimal, incremental XDF writer.

XDF (the file format of LabRecorder, read by pyxdf, EEGLAB and MNE users) is
the magic bytes ``XDF:`` followed by chunks::

    [length-size byte: 1, 4 or 8][length][2-byte tag][content]

where ``length`` counts the tag and the content. Tags 2, 3, 4 and 6 start
their content with a 4-byte stream id. All numbers are little-endian.
Tags (XDF 1.0 specification, https://github.com/sccn/xdf/wiki/Specifications):

==== ============= ==========================================================
tag  name          content
==== ============= ==========================================================
1    FileHeader    XML ``<info><version>1.0</version>...</info>``
2    StreamHeader  stream id + XML (name, type, channel count/format, rate)
3    Samples       stream id + sample count (varlen) + samples; each sample
                   is a timestamp byte (0: previous + 1/rate, 8: a double
                   follows) and its values (strings: varlen length + bytes)
4    ClockOffset   stream id + collection time (double) + offset (double)
5    Boundary      a fixed 16-byte UUID, so readers can resync after damage
6    StreamFooter  stream id + XML (first/last timestamp, sample count)
==== ============= ==========================================================

Every chunk is assembled in memory and handed to the kernel with a single
``os.write`` on an ``O_APPEND`` descriptor, so a killed process leaves whole
chunks behind (unless the kernel itself cuts a write, which
:func:`closedloop.recording.repair.repair_xdf` fixes).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

__all__ = [
    "BOUNDARY_UUID",
    "CHANNEL_FORMATS",
    "TAG_FILE_HEADER",
    "TAG_STREAM_HEADER",
    "TAG_SAMPLES",
    "TAG_CLOCK_OFFSET",
    "TAG_BOUNDARY",
    "TAG_STREAM_FOOTER",
    "XDFWriter",
    "StreamSpec",
    "encode_varlen",
    "chunk_bytes",
    "encode_samples",
    "samples_chunk",
    "footer_xml",
    "make_spec",
    "record_dtype",
    "stream_header_xml",
]

MAGIC = b"XDF:"
TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6
TAGS_WITH_STREAM_ID = (TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_STREAM_FOOTER)

#: The boundary chunk's fixed content (XDF 1.0 specification, "Boundary Chunk").
BOUNDARY_UUID = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")

#: XDF channel formats and their little-endian numpy dtypes (``None``: strings).
CHANNEL_FORMATS: dict[str, str | None] = {
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "float32": "<f4",
    "double64": "<f8",
    "string": None,
}

#: Other common names accepted for the XDF formats (numpy and pylsl spellings).
FORMAT_ALIASES = {"float64": "double64", "double": "double64", "float": "float32"}

_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# characters XML 1.0 forbids (control characters but tab, newline and carriage return; lone surrogates; U+FFFE/F)
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def encode_varlen(value: int) -> bytes:
    """Encode a non-negative integer as XDF's variable-length integer.

    Uses the smallest width the specification allows: 1, 4 or 8 bytes,
    preceded by a byte holding that width.
    """
    if value < 0:
        raise ValueError(f"varlen integers are non-negative, got {value}")
    if value < 1 << 8:
        return bytes((1, value))
    if value < 1 << 32:
        return b"\x04" + struct.pack("<I", value)
    return b"\x08" + struct.pack("<Q", value)


def chunk_bytes(tag: int, content: bytes, stream_id: int | None = None) -> bytes:
    """Assemble one whole chunk: length, tag, optional stream id, content."""
    head = struct.pack("<H", tag)
    if stream_id is not None:
        head += struct.pack("<I", stream_id)
    return encode_varlen(len(head) + len(content)) + head + content


def _xml_text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    # a control character would make the whole header unreadable: replace it, keep the rest
    return escape(_XML_INVALID.sub("\ufffd", str(value)))


def check_xml_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid XML element name; raise ValueError naming ``what`` otherwise."""
    if not isinstance(name, str) or not _XML_NAME.match(name) or name.lower().startswith("xml"):
        raise ValueError(f"{what} {name!r} is not a valid XML element name")
    return name


def dict_to_xml(values: Mapping[str, object]) -> str:
    """Render a mapping as XML elements.

    Nested mappings become nested elements, lists repeat the element, other
    values become escaped text.
    """
    parts: list[str] = []
    for key, value in values.items():
        check_xml_name(key, "key")
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, Mapping):
                parts.append(f"<{key}>{dict_to_xml(item)}</{key}>")
            elif item is None:
                parts.append(f"<{key}/>")
            else:
                parts.append(f"<{key}>{_xml_text(item)}</{key}>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What a writer or reader needs to know to encode a stream's samples."""

    stream_id: int
    name: str
    channel_count: int
    nominal_srate: float
    channel_format: str

    @property
    def dtype(self) -> np.dtype | None:
        """Little-endian value dtype, or ``None`` for string streams."""
        code = CHANNEL_FORMATS[self.channel_format]
        return None if code is None else np.dtype(code)


def stream_header_xml(
    spec: StreamSpec,
    type: str = "",
    source_id: str = "",
    channels: Sequence[Mapping[str, str]] | None = None,
    desc_extra: str | Mapping[str, object] | None = None,
    created_at: float | None = None,
) -> str:
    """Validate a stream's description and render its StreamHeader XML."""
    if channels is not None and len(channels) != spec.channel_count:
        raise ValueError(
            f"stream {spec.name!r}: {len(channels)} channel descriptions for channel_count={spec.channel_count}"
        )
    desc = ""
    if channels:
        rows = "".join(f"<channel>{dict_to_xml(dict(ch))}</channel>" for ch in channels)
        desc += f"<channels>{rows}</channels>"
    if isinstance(desc_extra, Mapping):
        desc += dict_to_xml(desc_extra)
    elif desc_extra:
        try:
            ET.fromstring(f"<desc>{desc_extra}</desc>")
        except ET.ParseError as err:
            raise ValueError(f"stream {spec.name!r}: desc_extra is not well-formed XML: {err}") from None
        desc += desc_extra
    info = {
        "name": spec.name,
        "type": type,
        "channel_count": spec.channel_count,
        "nominal_srate": repr(float(spec.nominal_srate)),
        "channel_format": spec.channel_format,
        "source_id": source_id,
        "version": "1.1",
        "created_at": repr(float(created_at)) if created_at is not None else "0",
    }
    body = "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in info.items())
    return f'<?xml version="1.0"?><info>{body}<desc>{desc}</desc></info>'


def footer_xml(
    first_timestamp: float | None,
    last_timestamp: float | None,
    sample_count: int,
    clock_offsets: Sequence[tuple[float, float]] | None = None,
) -> str:
    """Render a StreamFooter XML (timestamps are left out for empty streams)."""
    body = ""
    if sample_count > 0 and first_timestamp is not None and last_timestamp is not None:
        body += f"<first_timestamp>{float(first_timestamp)!r}</first_timestamp>"
        body += f"<last_timestamp>{float(last_timestamp)!r}</last_timestamp>"
    body += f"<sample_count>{int(sample_count)}</sample_count>"
    if clock_offsets:
        offsets = "".join(
            f"<offset><time>{float(t)!r}</time><value>{float(v)!r}</value></offset>" for t, v in clock_offsets
        )
        body += f"<clock_offsets>{offsets}</clock_offsets>"
    return f'<?xml version="1.0"?><info>{body}</info>'


def record_dtype(value_dtype: np.dtype, channel_count: int) -> np.dtype:
    """Packed per-sample record: timestamp byte, double timestamp, values."""
    return np.dtype([("tsbyte", "u1"), ("ts", "<f8"), ("values", value_dtype, (channel_count,))])


def encode_samples(
    spec: StreamSpec, data: np.ndarray | Sequence[Sequence[str]], timestamps: np.ndarray
) -> tuple[bytes, int]:
    """Encode samples as a Samples chunk content (after the stream id).

    Every sample carries its explicit timestamp (timestamp byte 8).

    Returns
    -------
    content : bytes
        The chunk content without the stream id.
    n_samples : int
        Number of samples encoded.
    """
    stamps = np.ascontiguousarray(timestamps, dtype="<f8").reshape(-1)
    n = stamps.shape[0]
    if spec.channel_format == "string":
        rows = list(data)
        if len(rows) != n:
            raise ValueError(f"stream {spec.name!r}: {len(rows)} samples but {n} timestamps")
        parts = [encode_varlen(n)]
        for stamp, row in zip(stamps.tolist(), rows):
            if isinstance(row, str) or len(row) != spec.channel_count:
                raise ValueError(
                    f"stream {spec.name!r}: each sample must be a list of {spec.channel_count} strings, got {row!r}"
                )
            parts.append(b"\x08" + struct.pack("<d", stamp))
            for value in row:
                raw = str(value).encode("utf-8")
                parts.append(encode_varlen(len(raw)) + raw)
        return b"".join(parts), n
    arr, stamps = _checked(spec, data, stamps)
    return _sample_records(spec, [(arr, stamps)], encode_varlen(n)).tobytes(), n


def _checked(spec: StreamSpec, data: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return numeric ``data`` (n, channel_count) and ``timestamps`` (n,) float64, checked against ``spec``."""
    stamps = np.ascontiguousarray(timestamps, dtype="<f8").reshape(-1)
    n = stamps.shape[0]
    arr = np.asarray(data)
    if arr.ndim == 1 and spec.channel_count == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape != (n, spec.channel_count):
        raise ValueError(
            f"stream {spec.name!r}: data of shape {arr.shape} does not match "
            f"({n} timestamps, {spec.channel_count} channels)"
        )
    if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
        raise TypeError(f"stream {spec.name!r}: cannot store {arr.dtype} values as {spec.channel_format}")
    return arr, stamps


def samples_chunk(spec: StreamSpec, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Return one whole numeric Samples chunk (tag 3) holding ``parts`` in order, as a byte array.

    Each part is ``(values (n, channel_count), timestamps (n,))``, checked by
    :func:`_checked`. The bytes are those :func:`chunk_bytes` makes of
    :func:`encode_samples` of the parts' concatenation.
    """
    n = sum(p[1].shape[0] for p in parts)
    body = struct.pack("<HI", TAG_SAMPLES, spec.stream_id) + encode_varlen(n)
    record = 9 + spec.dtype.itemsize * spec.channel_count
    return _sample_records(spec, parts, encode_varlen(len(body) + n * record) + body)


def _sample_records(spec: StreamSpec, parts: Sequence[tuple[np.ndarray, np.ndarray]], head: bytes) -> np.ndarray:
    """Return ``head`` then the samples of ``parts`` as records (:func:`record_dtype`), in one byte array.

    Each value and timestamp is copied once, straight into its place: no
    record array, concatenation or ``bytes`` in between (the recorder
    thread writes every EEG sample through here).
    """
    value_dtype = spec.dtype
    width = value_dtype.itemsize * spec.channel_count
    n = sum(p[1].shape[0] for p in parts)
    k = len(head)
    buf = np.empty(k + n * (9 + width), dtype=np.uint8)
    buf[:k] = np.frombuffer(head, dtype=np.uint8)
    records = buf[k:].reshape(n, 9 + width)
    records[:, 0] = 8  # an explicit timestamp follows
    a = 0
    for values, stamps in parts:
        b = a + stamps.shape[0]
        records[a:b, 1:9] = np.ascontiguousarray(stamps, dtype="<f8").view(np.uint8).reshape(-1, 8)
        # cast like the record array's assignment did (same_kind, checked), then copied as bytes
        v = np.ascontiguousarray(values, dtype=value_dtype)
        records[a:b, 9:] = v.view(np.uint8).reshape(-1, width)
        a = b
    return buf


class XDFWriter:
    """Write an XDF file incrementally, one whole chunk per ``os.write``.

    The writer holds no sample data: per stream it only keeps the first and
    last timestamp and the sample count, for the footers. It is not thread
    safe; :class:`closedloop.recording.Recorder` owns one on its thread.

    Parameters
    ----------
    path : str or Path
        File to create.
    file_info : dict of str to str, optional
        Extra elements for the FileHeader XML (e.g. ``{"session": "S01"}``).
    overwrite : bool
        Replace an existing file. By default an existing file is an error,
        so that a session never silently overwrites another.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        file_info: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.bytes_written = 0
        self._whole = 0  # bytes up to the end of the last whole chunk
        self._streams: dict[int, StreamSpec] = {}
        self._offsets: dict[int, list[tuple[float, float]]] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self._footed: set[int] = set()
        info = {"version": "1.0", "datetime": _dt.datetime.now(_dt.UTC).astimezone().isoformat()}
        for key, value in (file_info or {}).items():
            if key in info:
                raise ValueError(f"file_info may not set {key!r}: the writer sets it")
            info[check_xml_name(key, "file_info key")] = value
        header = '<?xml version="1.0"?><info>' + dict_to_xml(info) + "</info>"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite else os.O_EXCL)
        flags |= getattr(os, "O_BINARY", 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        try:
            self._write(MAGIC + chunk_bytes(TAG_FILE_HEADER, header.encode("utf-8")))
        except BaseException:
            self.close_fd()
            raise

    # -- low level ---------------------------------------------------------
    def _write(self, payload: bytes | np.ndarray) -> None:
        if self._fd is None:
            raise ValueError(f"XDF file {self.path} is closed")
        view = memoryview(payload)
        while view:  # one call in practice; loop only if the kernel writes short
            written = os.write(self._fd, view)
            self.bytes_written += written
            view = view[written:]
        self._whole = self.bytes_written

    def _spec(self, stream_id: int) -> StreamSpec:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise KeyError(f"no stream with id {stream_id} in {self.path}") from None

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._fd is None

    @property
    def streams(self) -> dict[int, StreamSpec]:
        """The streams declared so far, by id."""
        return dict(self._streams)

    def sample_count(self, stream_id: int) -> int:
        """Return the number of samples written to a stream."""
        return self._count[stream_id]

    def fileno(self) -> int:
        """Return the raw file descriptor (e.g. for ``os.fstat``)."""
        if self._fd is None:
            raise ValueError(f"XDF file {self.path} is closed")
        return self._fd

    # -- chunks --------------------------------------------------------------
    def add_stream(
        self,
        stream_id: int,
        name: str,
        type: str,
        channel_count: int,
        nominal_srate: float,
        channel_format: str,
        source_id: str = "",
        channels: Sequence[Mapping[str, str]] | None = None,
        desc_extra: str | Mapping[str, object] | None = None,
        created_at: float | None = None,
    ) -> None:
        """Declare a stream (StreamHeader chunk, tag 2).

        Parameters
        ----------
        stream_id : int
            Unsigned 32-bit id, unique in the file.
        name, type : str
            LSL stream name and content type (e.g. ``"EEG"``, ``"Markers"``).
        channel_count : int
            Number of channels.
        nominal_srate : float
            Nominal rate in Hz; 0 for irregular streams (markers, commands).
        channel_format : str
            One of ``float32``, ``double64``, ``int8``, ``int16``, ``int32``,
            ``int64``, ``string`` (``float64`` is accepted for ``double64``).
        source_id : str
            LSL source id.
        channels : list of dict, optional
            One dict per channel (``label``, ``unit``, ``type``), written
            under ``desc/channels/channel``.
        desc_extra : str or dict, optional
            More metadata inside ``<desc>``: well-formed XML, or a dict.
        created_at : float, optional
            Stream creation time (LSL clock).
        """
        spec = make_spec(stream_id, name, channel_count, nominal_srate, channel_format)
        xml = stream_header_xml(spec, type, source_id, channels, desc_extra, created_at)
        self.add_stream_xml(spec, xml)

    def add_stream_xml(self, spec: StreamSpec, xml: str) -> None:
        """Declare a stream from a header already rendered by :func:`stream_header_xml`."""
        if spec.stream_id in self._streams:
            raise ValueError(f"stream id {spec.stream_id} is already used in {self.path}")
        self._write(chunk_bytes(TAG_STREAM_HEADER, xml.encode("utf-8"), spec.stream_id))
        self._streams[spec.stream_id] = spec
        self._count[spec.stream_id] = 0

    def write_samples(
        self,
        stream_id: int,
        data: np.ndarray | Sequence[Sequence[str]],
        timestamps: np.ndarray | Sequence[float],
    ) -> None:
        """Write one Samples chunk (tag 3), timestamps exactly as given.

        Parameters
        ----------
        stream_id : int
            A declared stream.
        data : ndarray, shape (n, channel_count), or list of lists of str
            Values (cast to the stream's format; string streams take lists).
        timestamps : array of float64, shape (n,)
            One timestamp per sample, written explicitly.
        """
        spec = self._spec(stream_id)
        if stream_id in self._footed:
            raise ValueError(f"stream {spec.name!r} already has its footer")
        if spec.channel_format != "string":
            self.write_sample_parts(stream_id, [_checked(spec, data, timestamps)])
            return
        content, n = encode_samples(spec, data, timestamps)
        if n == 0:
            return
        self._write(chunk_bytes(TAG_SAMPLES, content, stream_id))
        stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        self._counted(stream_id, float(stamps[0]), float(stamps[-1]), n)

    def write_sample_parts(self, stream_id: int, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Write the numeric samples of ``parts`` (checked ``(values, timestamps)`` pairs) as one Samples chunk.

        What :meth:`write_samples` writes for their concatenation, without
        concatenating them first (:func:`samples_chunk`).
        """
        spec = self._spec(stream_id)
        if stream_id in self._footed:
            raise ValueError(f"stream {spec.name!r} already has its footer")
        parts = [p for p in parts if p[1].shape[0]]
        if not parts:
            return
        self._write(samples_chunk(spec, parts))
        self._counted(stream_id, float(parts[0][1][0]), float(parts[-1][1][-1]), sum(p[1].shape[0] for p in parts))

    def _counted(self, stream_id: int, first: float, last: float, n: int) -> None:
        """Note ``n`` samples written, from ``first`` to ``last`` (for the footer)."""
        if self._count[stream_id] == 0:
            self._first[stream_id] = first
        self._last[stream_id] = last
        self._count[stream_id] += n

    def write_clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        """Write a ClockOffset chunk (tag 4).

        ``offset`` is what to add to the stream's timestamps to get the
        recording machine's clock, measured at ``collection_time``
        (as ``pylsl.StreamInlet.time_correction`` returns it).
        """
        self._spec(stream_id)
        content = struct.pack("<dd", float(collection_time), float(offset))
        self._write(chunk_bytes(TAG_CLOCK_OFFSET, content, stream_id))
        self._offsets.setdefault(stream_id, []).append((float(collection_time), float(offset)))

    def write_boundary(self) -> None:
        """Write a Boundary chunk (tag 5), a resync point for damaged files."""
        self._write(chunk_bytes(TAG_BOUNDARY, BOUNDARY_UUID))

    def write_footer(
        self,
        stream_id: int,
        first_timestamp: float | None = None,
        last_timestamp: float | None = None,
        sample_count: int | None = None,
        clock_offsets: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        """Write a StreamFooter chunk (tag 6); ``None`` fields use the counters.

        ``clock_offsets`` is a list of ``(time, value)`` pairs for the footer;
        by default those written with :meth:`write_clock_offset` (as
        LabRecorder does; readers take offsets from the ClockOffset chunks).
        """
        self._spec(stream_id)
        if stream_id in self._footed:
            raise ValueError(f"stream {stream_id} already has its footer")
        if sample_count is None:
            sample_count = self._count[stream_id]
        if first_timestamp is None:
            first_timestamp = self._first.get(stream_id)
        if last_timestamp is None:
            last_timestamp = self._last.get(stream_id)
        if clock_offsets is None:
            clock_offsets = self._offsets.get(stream_id)
        xml = footer_xml(first_timestamp, last_timestamp, sample_count, clock_offsets)
        self._write(chunk_bytes(TAG_STREAM_FOOTER, xml.encode("utf-8"), stream_id))
        self._footed.add(stream_id)

    def sync(self) -> None:
        """Ask the kernel to put the written bytes on disk (``fsync``)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        """Write the missing footers, fsync and close. Safe to call twice.

        If a footer cannot be written, the file is cut back to its last
        whole chunk before the error is raised.
        """
        if self._fd is None:
            return
        try:
            for stream_id in self._streams:
                if stream_id not in self._footed:
                    self.write_footer(stream_id)
            os.fsync(self._fd)
        except BaseException:
            self.salvage()  # leave whole chunks only
            raise
        finally:
            self.close_fd()

    def salvage(self) -> bool:
        """After a failed write: cut the file back to its last whole chunk and try the missing footers.

        Never raises and never closes the file (call :meth:`close_fd`, or
        call this again later: space may have been freed). A write that
        failed part-way (disk full, file size limit) leaves a partial chunk
        that would hide everything written after it from readers; cutting
        it off also frees room for the footers (a few hundred bytes each).

        Returns
        -------
        bool
            True if the file now ends with every stream's footer.
        """
        if self._fd is None:
            return False
        try:
            if self.bytes_written != self._whole:
                os.ftruncate(self._fd, self._whole)
                self.bytes_written = self._whole
            for stream_id in self._streams:
                if stream_id not in self._footed:
                    self.write_footer(stream_id)
            os.fsync(self._fd)
            return True
        except Exception:  # noqa: BLE001 - disk still full, file gone: what is written stays whole
            try:
                if self.bytes_written != self._whole:
                    os.ftruncate(self._fd, self._whole)
                    self.bytes_written = self._whole
            except OSError:
                pass
            return False

    def close_fd(self) -> None:
        """Close the descriptor without writing anything (after an error)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> XDFWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<XDFWriter {self.path} {state}, {len(self._streams)} streams, {self.bytes_written} bytes>"


def make_spec(stream_id: int, name: str, channel_count: int, nominal_srate: float, channel_format: str) -> StreamSpec:
    """Validate the basic stream parameters and return a :class:`StreamSpec`."""
    if not isinstance(stream_id, int | np.integer) or not 0 <= int(stream_id) < 1 << 32:
        raise ValueError(f"stream id must be an unsigned 32-bit integer, got {stream_id!r}")
    channel_format = FORMAT_ALIASES.get(channel_format, channel_format)
    if channel_format not in CHANNEL_FORMATS:
        raise ValueError(
            f"stream {name!r}: unknown channel_format {channel_format!r}; use one of {sorted(CHANNEL_FORMATS)}"
        )
    if int(channel_count) < 1:
        raise ValueError(f"stream {name!r}: channel_count must be >= 1, got {channel_count}")
    rate = float(nominal_srate)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"stream {name!r}: nominal_srate must be >= 0 (0 = irregular), got {nominal_srate}")
    return StreamSpec(int(stream_id), str(name), int(channel_count), rate, channel_format)
