"""Read XDF files incrementally: headers first, then one stream's samples block by block.

:func:`pyxdf.load_xdf` reads a whole file into memory. A replay of a long
recording needs constant memory, so :class:`XDFReader` makes one pass over
the chunk headers (seeking past numeric sample data) to collect stream
headers, footers, clock offsets and the (small) string streams, and then
reads a numeric stream's Samples chunks one at a time with
:meth:`XDFReader.iter_samples`.

Values and timestamps come out exactly as stored: no clock synchronisation,
no dejitter (the same as ``pyxdf.load_xdf(..., synchronize_clocks=False,
dejitter_timestamps=False)``). Samples whose timestamp was omitted (timestamp
byte 0) get the previous timestamp plus ``1 / nominal_srate``, as in pyxdf.

A file cut short (a crash, a full disk) is read up to its last whole chunk;
:attr:`XDFReader.truncated` says where and why it stopped.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.recording import _chunks
from closedloop.recording.xdf import (
    CHANNEL_FORMATS,
    FORMAT_ALIASES,
    MAGIC,
    TAG_BOUNDARY,
    TAG_CLOCK_OFFSET,
    TAG_FILE_HEADER,
    TAG_STREAM_FOOTER,
    TAG_STREAM_HEADER,
    TAGS_WITH_STREAM_ID,
    record_dtype,
)

__all__ = ["XDFReader", "XDFStream", "xml_to_dict"]


def xml_to_dict(element: ET.Element) -> dict | str:
    """Return an XML element as nested dicts (repeated children become lists; leaves are text)."""
    children = list(element)
    if not children:
        return element.text or ""
    out: dict[str, object] = {}
    for child in children:
        value = xml_to_dict(child)
        if child.tag in out:
            previous = out[child.tag]
            if isinstance(previous, list):
                previous.append(value)
            else:
                out[child.tag] = [previous, value]
        else:
            out[child.tag] = value
    return out


@dataclass
class XDFStream:
    """One stream of an XDF file, as its header, footer and clock offsets describe it.

    Attributes
    ----------
    stream_id : int
        Id in the file.
    name, type, source_id : str
        LSL stream properties.
    channel_count : int
        Number of channels.
    nominal_srate : float
        Nominal rate (0 for irregular streams).
    channel_format : str
        XDF channel format (``float32``, ``double64``, ``string``, ...).
    ch_names, units, ch_types : list of str
        Per-channel labels, units and types from ``desc/channels`` (empty
        strings where absent).
    header : xml.etree.ElementTree.Element
        The stream header's ``<info>`` element.
    footer : Element or None
        The stream footer's ``<info>`` element, if the file has one.
    clock_offsets : list of (float, float)
        ``(collection time, offset)`` pairs in file order.
    sample_count : int
        Samples found in the file (whole chunks only).
    strings : list of list of str
        Values of a string stream (read in the header pass); empty otherwise.
    string_stamps : ndarray
        Timestamps of a string stream.
    """

    stream_id: int
    name: str
    type: str
    source_id: str
    channel_count: int
    nominal_srate: float
    channel_format: str
    ch_names: list[str]
    units: list[str]
    ch_types: list[str]
    header: ET.Element
    footer: ET.Element | None = None
    clock_offsets: list[tuple[float, float]] = field(default_factory=list)
    sample_count: int = 0
    strings: list[list[str]] = field(default_factory=list)
    string_stamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _chunks: array = field(default_factory=lambda: array("q"), repr=False)  # (pos, length) pairs
    _string_stamps: list[float] = field(default_factory=list, repr=False)
    _last_stamp: float = field(default=0.0, repr=False)

    @property
    def dtype(self) -> np.dtype | None:
        """Little-endian numpy dtype of the values (None for strings)."""
        code = CHANNEL_FORMATS[self.channel_format]
        return None if code is None else np.dtype(code)

    def desc(self, path: str) -> str | None:
        """Text at ``path`` below ``<desc>`` (e.g. ``"closedloop/pipeline_offset"``), or None."""
        return self.header.findtext(f"./desc/{path}")


@numba.njit(cache=True)
def _parse_samples_kernel(buf, pos, n, value_bytes, tdiff, last, out_ts_bytes, out_has_ts, out_values):
    """Walk ``n`` samples with mixed timestamp bytes; copy raw bytes out. Returns the end position or -1."""
    size = buf.shape[0]
    for i in range(n):
        if pos >= size:
            return -1
        tb = buf[pos]
        pos += 1
        if tb == 8:
            if pos + 8 > size:
                return -1
            for b in range(8):
                out_ts_bytes[i, b] = buf[pos + b]
            out_has_ts[i] = True
            pos += 8
        elif tb == 0:
            out_has_ts[i] = False
        else:
            return -1
        if pos + value_bytes > size:
            return -1
        for b in range(value_bytes):
            out_values[i, b] = buf[pos + b]
        pos += value_bytes
    return pos


def _join(parts: list[tuple[np.ndarray, np.ndarray, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Return the parts' values and timestamps as new contiguous arrays (one copy; none for one new part)."""
    if len(parts) == 1:
        values, stamps, new = parts[0]
        return (values, stamps) if new else (values.copy(), stamps.copy())
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@numba.njit(cache=True)
def _fill_deduced(stamps, has_ts, tdiff, last):
    """Timestamps omitted from the file: previous + 1/rate (pyxdf's rule)."""
    for i in range(stamps.shape[0]):
        if has_ts[i]:
            last = stamps[i]
        else:
            last = last + tdiff
            stamps[i] = last
    return last


class XDFReader:
    """An XDF file opened for incremental reading.

    Parameters
    ----------
    path : str or Path
        The file.

    Attributes
    ----------
    streams : dict of int to XDFStream
        Every stream whose header was found.
    file_header : Element
        The file header's ``<info>`` element.
    truncated : str or None
        Why the header pass stopped before the end of the file (a cut or
        corrupt chunk), or None for a complete file.
    valid_bytes : int
        Bytes of whole, valid chunks from the start.

    Raises
    ------
    ValueError
        If the file is not XDF.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.streams: dict[int, XDFStream] = {}
        self.file_header = ET.Element("info")
        self.truncated: str | None = None
        self.valid_bytes = 0
        self._scan()

    # -- header pass -------------------------------------------------------------
    def _scan(self) -> None:
        with open(self.path, "rb") as f:
            if f.read(4) != MAGIC:
                raise ValueError(f"{self.path} is not an XDF file (it does not start with 'XDF:')")
            pos = 4
            while pos < self.size:
                try:
                    pos = self._chunk(f, pos)
                except _chunks.ChunkError as err:
                    self.truncated = f"chunk at byte {pos}: {err}"
                    break
                self.valid_bytes = pos
        for stream in self.streams.values():
            stream.string_stamps = np.array(stream._string_stamps, dtype=np.float64)
            stream._string_stamps = []

    def _chunk(self, f, pos: int) -> int:
        tag, start, end = _chunks.read_chunk_head(f, pos, self.size)
        length = end - start
        if tag == TAG_FILE_HEADER:
            self.file_header = _chunks.parse_xml(f.read(length - 2), "file header")
            return end
        if tag == TAG_BOUNDARY:
            _chunks.check_boundary(f.read(length - 2))
            return end
        if tag not in TAGS_WITH_STREAM_ID:
            raise _chunks.ChunkError(f"unknown chunk tag {tag}")
        stream_id = _chunks.read_stream_id(f, tag, length)
        content_len = length - 6
        if tag == TAG_STREAM_HEADER:
            header = _chunks.parse_xml(f.read(content_len), "stream header")
            self.streams[stream_id] = _stream_from_header(stream_id, header)
            return end
        stream = _chunks.declared_stream(self.streams, tag, stream_id)
        if tag == TAG_CLOCK_OFFSET:
            stream.clock_offsets.append(_chunks.read_clock_offset(f.read(content_len)))
        elif tag == TAG_STREAM_FOOTER:
            stream.footer = _chunks.parse_xml(f.read(content_len), "stream footer")
        elif stream.channel_format == "string":
            self._strings(stream, f.read(content_len))
        else:
            n, _ = _chunks.read_varlen(f.read(min(9, content_len)), 0)
            if n:
                stream._chunks.extend((start + 6, content_len))
                stream.sample_count += n
        return end

    def _strings(self, stream: XDFStream, buf: bytes) -> None:
        n, pos = _chunks.read_varlen(buf, 0)
        tdiff = _chunks.sample_interval(stream.nominal_srate)
        rows, stamps = [], []
        last = stream._last_stamp
        for _ in range(n):
            last, pos = _chunks.read_timestamp(buf, pos, last, tdiff, "string samples chunk")
            row = []
            for _ in range(stream.channel_count):
                start, pos = _chunks.string_span(buf, pos)
                row.append(buf[start:pos].decode("utf-8", errors="replace"))
            rows.append(row)
            stamps.append(last)
        _chunks.check_samples_end(buf, pos, "string samples chunk")
        stream._last_stamp = last
        stream.strings.extend(rows)
        stream._string_stamps.extend(stamps)
        stream.sample_count += n

    # -- data pass ---------------------------------------------------------------
    def iter_samples(
        self, stream_id: int, min_samples: int = 1, picks: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(values, timestamps)`` per Samples chunk of a numeric stream.

        ``values`` has shape (n, channel_count) and the stream's dtype;
        both arrays are new for each chunk (callers may keep them).
        With ``min_samples``, consecutive chunks are joined until they hold at
        least that many samples (the last block may hold fewer): fewer, larger
        blocks for a reader that cuts its own chunks (a replay), at the cost
        of the one copy each chunk's values get anyway. With ``picks``
        (channel indices), ``values`` holds only those columns, in that
        order: only they are copied out of the file's bytes.
        """
        stream = self.streams[stream_id]
        dtype = stream.dtype
        if dtype is None:
            raise ValueError(f"stream {stream.name!r} holds strings; read XDFStream.strings instead")
        value_bytes = dtype.itemsize * stream.channel_count
        record = record_dtype(dtype, stream.channel_count)
        tdiff = _chunks.sample_interval(stream.nominal_srate)
        last = 0.0
        chunks = stream._chunks
        parts: list[tuple[np.ndarray, np.ndarray, bool]] = []  # read, not yet yielded: values, stamps, new arrays?
        have = 0
        with open(self.path, "rb") as f:
            for k in range(0, len(chunks), 2):
                f.seek(chunks[k])
                buf = f.read(chunks[k + 1])
                n, pos = _chunks.read_varlen(buf, 0)
                recs = _chunks.explicit_records(buf, pos, n, record)
                if recs is not None:
                    values = recs["values"]  # a view into the file's bytes
                    if picks is None:
                        parts.append((values, recs["ts"], False))
                    else:  # the picked columns are a new array already: only the stamps need their own
                        parts.append((np.take(values, picks, axis=1), recs["ts"].copy(), True))
                    last = float(recs["ts"][-1])
                    have += n
                    if have >= min_samples:
                        yield _join(parts)
                        parts, have = [], 0
                    continue
                raw = np.frombuffer(buf, dtype=np.uint8)
                ts_bytes = np.zeros((n, 8), dtype=np.uint8)
                has_ts = np.zeros(n, dtype=np.bool_)
                values = np.empty((n, value_bytes), dtype=np.uint8)
                end = _parse_samples_kernel(raw, pos, n, value_bytes, tdiff, last, ts_bytes, has_ts, values)
                if end != len(buf):
                    raise ValueError(
                        f"{self.path}: samples chunk at byte {chunks[k]} of stream {stream.name!r} does not parse"
                    )
                stamps = ts_bytes.view("<f8").reshape(n).copy()
                last = _fill_deduced(stamps, has_ts, tdiff, last)
                values = values.view(dtype).reshape(n, stream.channel_count)
                parts.append((values if picks is None else np.take(values, picks, axis=1), stamps, True))
                have += n
                if have >= min_samples:
                    yield _join(parts)
                    parts, have = [], 0
        if parts:
            yield _join(parts)

    def read_stream(self, stream_id: int) -> tuple[np.ndarray, np.ndarray]:
        """All of a numeric stream's samples at once (for small streams)."""
        stream = self.streams[stream_id]
        parts = list(self.iter_samples(stream_id))
        if not parts:
            return np.zeros((0, stream.channel_count), dtype=stream.dtype), np.zeros(0)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def find(self, name: str | None = None, type: str | None = None) -> list[XDFStream]:
        """Streams matching a name and/or type (type compared case-insensitively)."""
        return [
            s
            for s in self.streams.values()
            if (name is None or s.name == name) and (type is None or s.type.lower() == type.lower())
        ]


def _stream_from_header(stream_id: int, root: ET.Element) -> XDFStream:
    fmt = (root.findtext("channel_format") or "").strip()
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in CHANNEL_FORMATS:
        raise _chunks.ChunkError(f"stream {stream_id}: unknown channel_format {fmt!r}")
    try:
        count = int(root.findtext("channel_count") or "0")
        srate = float(root.findtext("nominal_srate") or "0")
    except ValueError:
        raise _chunks.ChunkError(f"stream {stream_id}: bad channel_count or nominal_srate") from None
    channels = root.findall("./desc/channels/channel")
    labels = [(ch.findtext("label") or "").strip() for ch in channels]
    units = [(ch.findtext("unit") or "").strip() for ch in channels]
    types = [(ch.findtext("type") or "").strip() for ch in channels]
    if len(labels) != count:
        labels, units, types = [""] * count, [""] * count, [""] * count
    return XDFStream(
        stream_id=stream_id,
        name=root.findtext("name") or "",
        type=root.findtext("type") or "",
        source_id=root.findtext("source_id") or "",
        channel_count=count,
        nominal_srate=srate,
        channel_format=fmt,
        ch_names=labels,
        units=units,
        ch_types=types,
        header=root,
    )
