"""Decode XDF chunks: the reading half of :mod:`closedloop.recording.xdf`.

One place for what :class:`~closedloop.recording.reader.XDFReader` and the
repair walk (:mod:`closedloop.recording.repair`) both check while walking a
file: the chunk head (length-size byte, length, tag, stream id), varlen
integers, timestamps, string values and the fixed-size chunk contents. Every
problem raises :class:`ChunkError`; the callers decide whether it ends a read
or a repair.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import BinaryIO, TypeVar

import numpy as np

from closedloop.recording.xdf import BOUNDARY_UUID

_Stream = TypeVar("_Stream")


class ChunkError(Exception):
    """The chunk at the current position is incomplete or invalid."""


def read_varlen(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a varlen integer from ``buf`` at ``pos``; return (value, new pos)."""
    if pos >= len(buf):
        raise ChunkError("varlen integer past the end of the chunk")
    width = buf[pos]
    if width not in (1, 4, 8):
        raise ChunkError(f"invalid varlen width byte {width}")
    end = pos + 1 + width
    if end > len(buf):
        raise ChunkError("varlen integer past the end of the chunk")
    return int.from_bytes(buf[pos + 1 : end], "little"), end


def read_chunk_head(f: BinaryIO, pos: int, size: int) -> tuple[int, int, int]:
    """Check the length of the chunk at ``pos`` and read its tag.

    Returns
    -------
    tag : int
        The chunk tag.
    start : int
        File position of the tag (the chunk's length counts from here).
    end : int
        File position after the chunk.

    ``f`` is left just after the tag.
    """
    f.seek(pos)
    head = f.read(9)
    width = head[0]
    if width not in (1, 4, 8):
        raise ChunkError(f"invalid length-size byte {width}")
    if len(head) < 1 + width:
        raise ChunkError("file ends inside a chunk length")
    length = int.from_bytes(head[1 : 1 + width], "little")
    start = pos + 1 + width
    if length < 2:
        raise ChunkError(f"chunk length {length} is too small")
    if start + length > size:
        raise ChunkError(f"chunk of {length} bytes runs past the end of the file")
    f.seek(start)
    tag = int.from_bytes(f.read(2), "little")
    return tag, start, start + length


def read_stream_id(f: BinaryIO, tag: int, length: int) -> int:
    """Read the stream id after the tag of a chunk of ``length`` bytes."""
    if length < 6:
        raise ChunkError(f"tag {tag} chunk too short for a stream id")
    return int.from_bytes(f.read(4), "little")


def declared_stream(streams: Mapping[int, _Stream], tag: int, stream_id: int) -> _Stream:
    """Return the stream a tag-``tag`` chunk refers to, which must have had its header."""
    stream = streams.get(stream_id)
    if stream is None:
        raise ChunkError(f"tag {tag} chunk for undeclared stream {stream_id}")
    return stream


def parse_xml(raw: bytes, what: str) -> ET.Element:
    """Parse a header or footer's XML (``what`` names it in the error)."""
    try:
        return ET.fromstring(raw)
    except (ET.ParseError, ValueError, LookupError) as err:  # also bad encodings declared in damaged XML
        raise ChunkError(f"{what} XML does not parse ({err})") from None


def check_boundary(content: bytes | memoryview) -> None:
    """Check a Boundary chunk's content is the boundary UUID."""
    if bytes(content) != BOUNDARY_UUID:
        raise ChunkError("boundary chunk without the boundary UUID")


def read_clock_offset(content: bytes | memoryview) -> tuple[float, float]:
    """Return a ClockOffset chunk's (collection time, offset)."""
    if len(content) != 16:
        raise ChunkError(f"clock offset chunk of {len(content)} bytes, expected 16")
    return struct.unpack("<dd", content)


def sample_interval(nominal_srate: float) -> float:
    """Step between deduced timestamps: ``1 / rate``, 0 for irregular streams."""
    return 1.0 / nominal_srate if nominal_srate > 0 else 0.0


def read_timestamp(buf: bytes | memoryview, pos: int, last: float, tdiff: float, what: str) -> tuple[float, int]:
    """Read a sample's timestamp byte (8: a double follows; 0: ``last + tdiff``).

    Returns the timestamp and the position after it; ``what`` names the
    chunk in the errors.
    """
    if pos >= len(buf):
        raise ChunkError(f"{what} ends inside a sample")
    tsbyte = buf[pos]
    if tsbyte == 8:
        if pos + 9 > len(buf):
            raise ChunkError(f"{what} ends inside a timestamp")
        return struct.unpack_from("<d", buf, pos + 1)[0], pos + 9
    if tsbyte == 0:
        return last + tdiff, pos + 1
    raise ChunkError(f"invalid timestamp byte {tsbyte}")


def string_span(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a string value's varlen length; return where its bytes start and end."""
    length, start = read_varlen(buf, pos)
    if start + length > len(buf):
        raise ChunkError("string value runs past the end of the chunk")
    return start, start + length


def check_samples_end(buf: bytes | memoryview, pos: int, what: str) -> None:
    """Check the samples walk ended exactly at the end of the chunk."""
    if pos != len(buf):
        raise ChunkError(f"{what} length does not match its samples")


def explicit_records(buf: bytes | memoryview, pos: int, n: int, record: np.dtype) -> np.ndarray | None:
    """Return the ``n`` samples at ``pos`` as packed records, if all have explicit timestamps.

    ``record`` is :func:`closedloop.recording.xdf.record_dtype` for the
    stream. Returns None when the chunk is not ``n`` such records (mixed or
    deduced timestamps): the caller then walks it sample by sample.
    """
    if len(buf) - pos == n * record.itemsize:
        records = np.frombuffer(buf, dtype=record, count=n, offset=pos)
        if np.all(records["tsbyte"] == 8):  # our writer and LabRecorder
            return records
    return None
