"""Repair XDF files cut short by a crash, a kill or a full disk.

A recording interrupted mid-write ends in a partial chunk and has no stream
footers. Readers then fail, or (worse) return a wrong last sample. Repair
walks the chunks from the start, keeps every whole chunk up to the first
incomplete or corrupt one, drops the rest and appends the missing footers.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from closedloop.recording import _chunks
from closedloop.recording.xdf import (
    MAGIC,
    TAG_BOUNDARY,
    TAG_CLOCK_OFFSET,
    TAG_FILE_HEADER,
    TAG_SAMPLES,
    TAG_STREAM_FOOTER,
    TAG_STREAM_HEADER,
    TAGS_WITH_STREAM_ID,
    StreamSpec,
    chunk_bytes,
    footer_xml,
    make_spec,
    record_dtype,
)

__all__ = ["RepairReport", "StreamSummary", "repair_xdf", "scan_xdf"]

_MINIMAL_FILE_HEADER = b'<?xml version="1.0"?><info><version>1.0</version></info>'
_COPY_BLOCK = 1 << 20


@dataclass(slots=True)
class StreamSummary:
    """What the walk found for one stream (kept chunks only)."""

    stream_id: int
    name: str
    channel_format: str
    channel_count: int
    nominal_srate: float
    sample_count: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    clock_offsets: int = 0
    has_footer: bool = False


@dataclass(slots=True)
class RepairReport:
    """Outcome of :func:`scan_xdf` or :func:`repair_xdf`.

    Attributes
    ----------
    path : str
        The file examined.
    bytes_before : int
        Size of the file examined.
    bytes_after : int
        Size of the repaired file (for a scan: what it would be).
    bytes_dropped : int
        Bytes cut from the end (everything from the first bad chunk on).
    chunks_kept : int
        Whole chunks kept, the file header included.
    streams : dict of int to StreamSummary
        Streams whose header was kept, with counts over the kept chunks.
    footers_added : list of int
        Ids of the streams that got a footer from the repair.
    ok : bool
        True when the file was already complete: nothing to drop, every
        stream has its footer.
    cut_reason : str or None
        Why the walk stopped before the end of the file.
    header_rebuilt : bool
        The magic or file header itself was cut, so a minimal one is written.
    """

    path: str
    bytes_before: int
    bytes_after: int
    bytes_dropped: int
    chunks_kept: int
    streams: dict[int, StreamSummary] = field(default_factory=dict)
    footers_added: list[int] = field(default_factory=list)
    ok: bool = True
    cut_reason: str | None = None
    header_rebuilt: bool = False


def _stream_from_header(stream_id: int, raw: bytes) -> StreamSummary:
    root = _chunks.parse_xml(raw, "stream header")
    try:
        spec = make_spec(
            stream_id,
            root.findtext("name") or "",
            int(root.findtext("channel_count") or "0"),
            float(root.findtext("nominal_srate") or "nan"),
            root.findtext("channel_format") or "",
        )
    except ValueError as err:
        raise _chunks.ChunkError(f"stream header {stream_id}: {err}") from None
    return StreamSummary(stream_id, spec.name, spec.channel_format, spec.channel_count, spec.nominal_srate)


def _parse_samples(content: memoryview, stream: StreamSummary) -> None:
    """Check a Samples chunk parses completely and update the stream's counts."""
    n, pos = _chunks.read_varlen(content, 0)
    if n == 0:
        if pos != len(content):
            raise _chunks.ChunkError("trailing bytes after an empty samples chunk")
        return
    tdiff = _chunks.sample_interval(stream.nominal_srate)
    last = stream.last_timestamp if stream.last_timestamp is not None else 0.0
    strings = stream.channel_format == "string"
    if not strings:
        spec = StreamSpec(
            stream.stream_id, stream.name, stream.channel_count, stream.nominal_srate, stream.channel_format
        )
        value_bytes = spec.channel_count * spec.dtype.itemsize
        records = _chunks.explicit_records(content, pos, n, record_dtype(spec.dtype, spec.channel_count))
        if records is not None:  # the common case: explicit timestamps
            _count(stream, n, float(records["ts"][0]), float(records["ts"][-1]))
            return
    first = None
    for _ in range(n):  # strings, or mixed or deduced timestamps: walk sample by sample
        last, pos = _chunks.read_timestamp(content, pos, last, tdiff, "samples chunk")
        first = last if first is None else first
        if strings:
            for _ in range(stream.channel_count):
                _, pos = _chunks.string_span(content, pos)
        else:
            pos += value_bytes
    _chunks.check_samples_end(content, pos, "samples chunk")
    _count(stream, n, first, last)


def _count(stream: StreamSummary, n: int, first: float, last: float) -> None:
    if stream.sample_count == 0:
        stream.first_timestamp = first
    stream.last_timestamp = last
    stream.sample_count += n


class _Walker:
    """Walks the chunks of an XDF file, recording what a repair needs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.kept = 0  # bytes of whole, valid chunks (magic included)
        self.chunks = 0
        self.streams: dict[int, StreamSummary] = {}
        self.cut_reason: str | None = None
        self.header_rebuilt = False

    def run(self) -> None:
        with open(self.path, "rb") as f:
            magic = f.read(4)
            if magic != MAGIC:
                if MAGIC.startswith(magic):
                    self._rebuild("file ends inside the magic bytes")
                    return
                raise ValueError(f"{self.path} is not an XDF file (it does not start with 'XDF:')")
            pos = 4
            while pos < self.size:
                try:
                    pos = self._chunk(f, pos)
                except _chunks.ChunkError as err:
                    if self.chunks == 0:
                        self._rebuild(f"file header at byte 4: {err}")
                    else:
                        self.cut_reason = f"chunk at byte {pos}: {err}"
                    return
                self.kept = pos
                self.chunks += 1
            if self.chunks == 0:
                self._rebuild("file has no file header")

    def _rebuild(self, reason: str) -> None:
        self.cut_reason = reason
        self.header_rebuilt = True
        self.kept = 0
        self.chunks = 0
        self.streams.clear()

    def _chunk(self, f, pos: int) -> int:
        """Validate the chunk at ``pos`` and return the position after it."""
        tag, start, end = _chunks.read_chunk_head(f, pos, self.size)
        if self.chunks == 0 and tag != TAG_FILE_HEADER:
            raise _chunks.ChunkError(f"first chunk has tag {tag}, not a file header")
        stream_id = -1
        if tag in TAGS_WITH_STREAM_ID:
            stream_id = _chunks.read_stream_id(f, tag, end - start)
            if tag != TAG_STREAM_HEADER:
                _chunks.declared_stream(self.streams, tag, stream_id)
        content = memoryview(f.read(end - f.tell()))
        if tag == TAG_FILE_HEADER:
            if self.chunks != 0:
                raise _chunks.ChunkError("a second file header")
            _chunks.parse_xml(bytes(content), "file header")
        elif tag == TAG_STREAM_HEADER:
            if stream_id in self.streams:
                raise _chunks.ChunkError(f"a second header for stream {stream_id}")
            self.streams[stream_id] = _stream_from_header(stream_id, bytes(content))
        elif tag == TAG_SAMPLES:
            _parse_samples(content, self.streams[stream_id])
        elif tag == TAG_CLOCK_OFFSET:
            _chunks.read_clock_offset(content)
            self.streams[stream_id].clock_offsets += 1
        elif tag == TAG_BOUNDARY:
            _chunks.check_boundary(content)
        elif tag == TAG_STREAM_FOOTER:
            _chunks.parse_xml(bytes(content), "stream footer")
            self.streams[stream_id].has_footer = True
        else:
            raise _chunks.ChunkError(f"unknown chunk tag {tag}")
        return end

    def footers(self) -> list[tuple[int, bytes]]:
        out = []
        for stream_id, stream in self.streams.items():
            if not stream.has_footer:
                xml = footer_xml(stream.first_timestamp, stream.last_timestamp, stream.sample_count)
                out.append((stream_id, chunk_bytes(TAG_STREAM_FOOTER, xml.encode("utf-8"), stream_id)))
        return out

    def report(self) -> RepairReport:
        footers = self.footers()
        prefix = (
            len(MAGIC) + len(chunk_bytes(TAG_FILE_HEADER, _MINIMAL_FILE_HEADER)) if self.header_rebuilt else self.kept
        )
        dropped = self.size - self.kept
        return RepairReport(
            path=str(self.path),
            bytes_before=self.size,
            bytes_after=prefix + sum(len(chunk) for _, chunk in footers),
            bytes_dropped=dropped,
            chunks_kept=self.chunks + (1 if self.header_rebuilt else 0),
            streams=dict(self.streams),
            footers_added=[stream_id for stream_id, _ in footers],
            ok=dropped == 0 and not footers and not self.header_rebuilt,
            cut_reason=self.cut_reason,
            header_rebuilt=self.header_rebuilt,
        )


def scan_xdf(path: str | os.PathLike) -> RepairReport:
    """Report what :func:`repair_xdf` would do, without writing anything.

    Raises
    ------
    ValueError
        If the file is not an XDF file at all.
    """
    walker = _Walker(Path(path))
    walker.run()
    return walker.report()


def repair_xdf(path: str | os.PathLike, out_path: str | os.PathLike | None = None) -> RepairReport:
    """Cut an XDF file back to its last whole chunk and add missing footers.

    Chunks are checked from the start: a length running past the end of the
    file, an unknown tag, or a samples chunk that does not parse exactly for
    its stream's format and channel count ends the walk, and everything from
    there on is dropped (including any later intact chunks). Streams without
    a footer get one with the counts of the kept samples.

    Parameters
    ----------
    path : str or Path
        The damaged file.
    out_path : str or Path, optional
        Where to write the repaired file. By default the file is repaired in
        place, through a temporary file and an atomic rename; an intact file
        is then left untouched.

    Returns
    -------
    RepairReport
        What was kept, dropped and added.
    """
    source = Path(path)
    walker = _Walker(source)
    walker.run()
    report = walker.report()
    target = Path(out_path) if out_path is not None else source
    if target == source and report.ok:
        return report
    if target == source and report.bytes_dropped == 0 and not report.header_rebuilt:
        # only footers are missing: append them, whole chunk by whole chunk
        fd = os.open(source, os.O_WRONLY | os.O_APPEND)
        try:
            for _, chunk in walker.footers():
                os.write(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        return report
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".repair", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if walker.header_rebuilt:
                out.write(MAGIC + chunk_bytes(TAG_FILE_HEADER, _MINIMAL_FILE_HEADER))
            else:
                with open(source, "rb") as src:
                    remaining = walker.kept
                    while remaining:
                        block = src.read(min(_COPY_BLOCK, remaining))
                        if not block:
                            raise OSError(f"{source} shrank while it was being repaired")
                        out.write(block)
                        remaining -= len(block)
            for _, chunk in walker.footers():
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return report
