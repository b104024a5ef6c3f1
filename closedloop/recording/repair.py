"""Repair damaged XDF files without losing what is intact.

A recording can be damaged in three ways: cut short (a crash, a kill, a full
disk: a partial last chunk, no footers), a chunk overwritten in the middle
(a bad sector, a faulty copy), or a damaged file header. Repair walks the
chunks from the start and checks each one completely (length, tag, stream,
and the content: XML that parses, samples that parse exactly for the
stream's format and channel count). A chunk that fails is skipped, never
taken for the end of the file: the walk resynchronises on the next valid
chunk, found

- by the damaged chunk's own length, when the chunk there is valid;
- else by scanning forward for a Boundary chunk (written every 10 s for this
  purpose) or a plausible chunk head: a Samples, ClockOffset or StreamFooter
  chunk of a declared stream, or a header's XML.

The repaired file holds the magic, the file header (rebuilt from what is
left of it when damaged), every valid chunk in order, and fresh footers for
the streams that lack one or whose footer no longer matches the kept
samples. :class:`RepairReport` lists every byte range dropped and why.

The original is never modified: the repaired file goes to
``NAME.repaired.xdf`` beside it, or, with ``in_place=True``, replaces the
file after the original was kept as ``NAME.xdf.bak``.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from closedloop.recording import _chunks
from closedloop.recording.xdf import (
    BOUNDARY_UUID,
    CHANNEL_FORMATS,
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

__all__ = [
    "DroppedRange",
    "RepairReport",
    "StreamSummary",
    "repair_xdf",
    "repaired_path",
    "backup_path",
    "scan_xdf",
]

_COPY_BLOCK = 1 << 20
_SCAN_WINDOW = 1 << 20
_BOUNDARY_CHUNK = chunk_bytes(TAG_BOUNDARY, BOUNDARY_UUID)
_XML_STARTS = (b"<?xml", b"<info")
_OPEN_TAG = re.compile(r"<([A-Za-z_][A-Za-z0-9_.-]*)>")
_MAX_OFFSET_S = 1e10  # a clock offset beyond ~300 years is damage, not a clock
_MAX_HEADER = 1 << 22  # bytes of a damaged file header searched for elements to keep (ours are ~10 kB)


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


@dataclass(frozen=True, slots=True)
class DroppedRange:
    """Bytes ``[start, end)`` of the damaged file left out of the repaired one, and why."""

    start: int
    end: int
    reason: str

    @property
    def size(self) -> int:
        """Return the number of bytes dropped."""
        return self.end - self.start

    def __str__(self) -> str:
        return f"bytes {self.start}-{self.end} ({self.size} bytes): {self.reason}"


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
        Bytes of damaged or unusable chunks left out (sum over :attr:`dropped`).
    chunks_kept : int
        Valid chunks kept, the file header included (rebuilt or not).
    streams : dict of int to StreamSummary
        Streams whose header was kept, with counts over the kept chunks.
    footers_added : list of int
        Ids of the streams that got a new footer from the repair.
    footers_replaced : list of int
        Ids of the streams whose footer was replaced (its counts no longer
        matched the kept samples); also in :attr:`footers_added`.
    dropped : list of DroppedRange
        Every byte range left out, in file order, with the reason.
    ok : bool
        True when the file was already complete: nothing dropped, every
        stream has its matching footer.
    cut_reason : str or None
        The reason of the first dropped range (None if nothing was dropped).
    header_rebuilt : bool
        The file header was damaged or missing: a new one was written, with
        the elements that could be recovered from the damaged one.
    magic_restored : bool
        The ``XDF:`` magic bytes were damaged and rewritten.
    out_path : str or None
        The repaired file (None for a scan, or when nothing needed writing).
    backup_path : str or None
        Where the original was kept (``in_place`` only).
    """

    path: str
    bytes_before: int
    bytes_after: int
    bytes_dropped: int
    chunks_kept: int
    streams: dict[int, StreamSummary] = field(default_factory=dict)
    footers_added: list[int] = field(default_factory=list)
    footers_replaced: list[int] = field(default_factory=list)
    dropped: list[DroppedRange] = field(default_factory=list)
    ok: bool = True
    cut_reason: str | None = None
    header_rebuilt: bool = False
    magic_restored: bool = False
    out_path: str | None = None
    backup_path: str | None = None


# -- checking one chunk ---------------------------------------------------------------------
@dataclass(slots=True)
class _Chunk:
    """A chunk that passed every check, and what accepting it changes."""

    pos: int
    end: int
    tag: int
    stream_id: int = -1
    stream: StreamSummary | None = None  # a new stream (tag 2)
    samples: tuple[int, float | None, float | None] | None = None  # n, first, last (tag 3)
    footer_count: int | None = None  # the footer's sample_count (tag 6)
    footer_stamps: tuple[float | None, float | None] = (None, None)


class _Orphan(_chunks.ChunkError):
    """A whole chunk of a stream whose header is missing (lost to damage, or never written)."""


def _head(buf, pos: int, size: int) -> tuple[int, int, int]:
    """Read the chunk head at ``pos``; return (tag, content start after the tag, end)."""
    width = buf[pos]
    if width not in (1, 4, 8):
        raise _chunks.ChunkError(f"invalid length-size byte {width}")
    if pos + 1 + width > size:
        raise _chunks.ChunkError("file ends inside a chunk length")
    length = int.from_bytes(buf[pos + 1 : pos + 1 + width], "little")
    start = pos + 1 + width
    if length < 2:
        raise _chunks.ChunkError(f"chunk length {length} is too small")
    if start + length > size:
        raise _chunks.ChunkError(f"chunk of {length} bytes runs past the end of the file")
    tag = int.from_bytes(buf[start : start + 2], "little")
    if not TAG_FILE_HEADER <= tag <= TAG_STREAM_FOOTER:
        raise _chunks.ChunkError(f"unknown chunk tag {tag}")
    if tag in TAGS_WITH_STREAM_ID and length < 6:
        raise _chunks.ChunkError(f"tag {tag} chunk too short for a stream id")
    return tag, start + 2, start + length


def _info_root(raw: bytes, what: str) -> ET.Element:
    root = _chunks.parse_xml(raw, what)
    if root.tag != "info":
        raise _chunks.ChunkError(f"{what} XML has root <{root.tag}>, not <info>")
    return root


def _stream_from_header(stream_id: int, raw: bytes) -> StreamSummary:
    """Check a stream header is one pyxdf and closedloop can read, and summarise it."""
    root = _info_root(raw, "stream header")
    texts = {k: (root.findtext(k) or "").strip() for k in ("name", "channel_count", "nominal_srate", "channel_format")}
    missing = [k for k, v in texts.items() if not v]
    if missing:
        raise _chunks.ChunkError(f"stream header {stream_id} lacks {', '.join(missing)}")
    if texts["channel_format"] not in CHANNEL_FORMATS:  # the exact names readers know, no aliases
        raise _chunks.ChunkError(f"stream header {stream_id}: unknown channel_format {texts['channel_format']!r}")
    try:
        spec = make_spec(
            stream_id,
            texts["name"],
            int(texts["channel_count"]),
            float(texts["nominal_srate"]),
            texts["channel_format"],
        )
    except ValueError as err:
        raise _chunks.ChunkError(f"stream header {stream_id}: {err}") from None
    return StreamSummary(stream_id, spec.name, spec.channel_format, spec.channel_count, spec.nominal_srate)


def _parse_samples(content: bytes, stream: StreamSummary) -> tuple[int, float | None, float | None]:
    """Check a Samples chunk parses exactly for its stream; return (n, first, last timestamp)."""
    n, pos = _chunks.read_varlen(content, 0)
    if n == 0:
        if pos != len(content):
            raise _chunks.ChunkError("trailing bytes after an empty samples chunk")
        return 0, None, None
    strings = stream.channel_format == "string"
    value_bytes = 0
    if not strings:
        spec = StreamSpec(
            stream.stream_id, stream.name, stream.channel_count, stream.nominal_srate, stream.channel_format
        )
        value_bytes = spec.channel_count * spec.dtype.itemsize
        records = _chunks.explicit_records(content, pos, n, record_dtype(spec.dtype, spec.channel_count))
        if records is not None:  # the common case: explicit timestamps
            return n, float(records["ts"][0]), float(records["ts"][-1])
    if n * (1 + (stream.channel_count if strings else value_bytes)) > len(content) - pos:
        raise _chunks.ChunkError(f"samples chunk too short for {n} samples")
    tdiff = _chunks.sample_interval(stream.nominal_srate)
    last = stream.last_timestamp if stream.last_timestamp is not None else 0.0
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
    return n, first, last


def _footer_counts(raw: bytes) -> tuple[int, float | None, float | None]:
    root = _info_root(raw, "stream footer")
    try:
        count = int(root.findtext("sample_count") or "")
        first = root.findtext("first_timestamp")
        last = root.findtext("last_timestamp")
        return count, None if first is None else float(first), None if last is None else float(last)
    except ValueError:
        raise _chunks.ChunkError("stream footer without a valid sample_count") from None


# -- the walk --------------------------------------------------------------------------------
class _Walker:
    """Walks the chunks of an XDF file, skipping damage, recording what a repair needs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.buf: mmap.mmap | bytes = b""
        self.streams: dict[int, StreamSummary] = {}
        self.kept: list[tuple[int, int]] = []  # (start, end) of kept chunks, file header excluded
        self.header: tuple[int, int] | None = None  # the valid file header chunk
        self.footers: dict[int, list[_Chunk]] = {}
        self.dropped: list[DroppedRange] = []
        self.chunks = 0
        self.magic_restored = False

    # the walk itself
    def run(self) -> None:
        with open(self.path, "rb") as f:
            if self.size:
                self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                self._walk()
            finally:
                if isinstance(self.buf, mmap.mmap):
                    self.buf.close()
                self.buf = b""

    def _walk(self) -> None:
        buf, size = self.buf, self.size
        magic = bytes(buf[:4])
        if magic != MAGIC:
            if size < 4 and MAGIC.startswith(magic):
                if size:
                    self._drop(0, size, "file ends inside the magic bytes")
                return
            self.magic_restored = True
        pos = min(4, size)
        while pos < size:
            try:
                chunk = self._check(pos)
            except _chunks.ChunkError as err:
                nxt, reason = self._resync(pos, err)
                self._drop(pos, nxt, reason)
                pos = nxt
                continue
            self._accept(chunk)
            pos = chunk.end
        if self.magic_restored and self.chunks == 0:
            raise ValueError(f"{self.path} is not an XDF file (it does not start with 'XDF:' and holds no XDF chunk)")

    def _drop(self, start: int, end: int, reason: str) -> None:
        if self.dropped and self.dropped[-1].end == start and self.dropped[-1].reason == reason:
            start = self.dropped.pop().start
        self.dropped.append(DroppedRange(start, end, reason))

    def _check(self, pos: int) -> _Chunk:
        """Check the chunk at ``pos`` completely; change nothing."""
        buf = self.buf
        streams = self.streams
        tag, cstart, end = _head(buf, pos, self.size)
        chunk = _Chunk(pos, end, tag)
        if tag in TAGS_WITH_STREAM_ID:
            chunk.stream_id = int.from_bytes(buf[cstart : cstart + 4], "little")
            cstart += 4
        content = bytes(buf[cstart:end])
        sid = chunk.stream_id
        if tag == TAG_FILE_HEADER:
            if self.header is not None:
                raise _chunks.ChunkError("a second file header")
            _info_root(content, "file header")
        elif tag == TAG_STREAM_HEADER:
            if sid in streams:
                raise _chunks.ChunkError(f"a second header for stream {sid}")
            chunk.stream = _stream_from_header(sid, content)
        elif tag == TAG_BOUNDARY:
            _chunks.check_boundary(content)
        else:
            stream = streams.get(sid)
            if stream is None:
                raise _Orphan(f"tag {tag} chunk for stream {sid}, whose header is missing")
            if tag == TAG_SAMPLES:
                chunk.samples = _parse_samples(content, stream)
            elif tag == TAG_CLOCK_OFFSET:
                t, value = _chunks.read_clock_offset(content)
                if not (math.isfinite(t) and math.isfinite(value) and abs(value) < _MAX_OFFSET_S):
                    raise _chunks.ChunkError(f"clock offset ({t!r}, {value!r}) is not a plausible measurement")
            else:
                count, first, last = _footer_counts(content)
                chunk.footer_count = count
                chunk.footer_stamps = (first, last)
        return chunk

    def _accept(self, chunk: _Chunk) -> None:
        self.chunks += 1
        if chunk.tag == TAG_FILE_HEADER:
            self.header = (chunk.pos, chunk.end)
            return
        self.kept.append((chunk.pos, chunk.end))
        if chunk.tag == TAG_STREAM_HEADER:
            self.streams[chunk.stream_id] = chunk.stream
        elif chunk.tag == TAG_SAMPLES:
            n, first, last = chunk.samples
            stream = self.streams[chunk.stream_id]
            if n:
                if stream.sample_count == 0:
                    stream.first_timestamp = first
                stream.last_timestamp = last
                stream.sample_count += n
        elif chunk.tag == TAG_CLOCK_OFFSET:
            self.streams[chunk.stream_id].clock_offsets += 1
        elif chunk.tag == TAG_STREAM_FOOTER:
            self.footers.setdefault(chunk.stream_id, []).append(chunk)

    # resynchronising after a bad chunk
    def _resync(self, pos: int, err: _chunks.ChunkError) -> tuple[int, str]:
        """Find where the next valid chunk after the bad one at ``pos`` starts; return it and why ``pos`` is dropped."""
        what = self._describe(pos)
        reason = f"{what}: {err}"
        try:  # the damaged chunk's own length may still be right
            _, _, end = _head(self.buf, pos, self.size)
            if self._chain(end):
                return end, reason
        except _chunks.ChunkError:
            pass
        for cand in self._candidates(pos + 1):
            if self._good_resync_point(cand):
                return cand, reason + " (skipped to the next valid chunk)"
        return self.size, reason + " (no valid chunk after it)"

    def _describe(self, pos: int) -> str:
        buf = self.buf
        try:
            tag, cstart, _ = _head(buf, pos, self.size)
        except _chunks.ChunkError:
            return f"chunk at byte {pos}"
        if tag in TAGS_WITH_STREAM_ID:
            sid = int.from_bytes(buf[cstart : cstart + 4], "little")
            return f"chunk at byte {pos} (tag {tag}, stream {sid})"
        return f"chunk at byte {pos} (tag {tag})"

    def _good_resync_point(self, pos: int) -> bool:
        """Tell whether a valid chunk starts at ``pos`` (weak ones: clock offsets, empty samples, need a next one)."""
        try:
            chunk = self._check(pos)
        except _chunks.ChunkError:
            return False
        weak = chunk.tag == TAG_CLOCK_OFFSET or (chunk.tag == TAG_SAMPLES and chunk.samples[0] == 0)
        return not weak or self._chain(chunk.end)

    def _chain(self, pos: int, hops: int = 8) -> bool:
        """Tell whether a valid chunk or the end of the file follows at ``pos``, maybe after whole orphan chunks."""
        for _ in range(hops):
            if pos == self.size:
                return True
            try:
                self._check(pos)
                return True
            except _Orphan:
                pos = _head(self.buf, pos, self.size)[2]
            except _chunks.ChunkError:
                return False
        return True

    def _candidates(self, start: int) -> Iterator[int]:
        """Yield positions after ``start`` where a chunk head could be, in order (a coarse filter)."""
        buf, size = self.buf, self.size
        patterns: list[tuple[bytes, tuple[int, ...]]] = [(_BOUNDARY_CHUNK, (0,))]
        for xml in _XML_STARTS:  # file header (tag, then XML) and stream headers/footers (tag, id, XML)
            patterns.append((xml, tuple(-(3 + w) for w in (1, 4, 8)) + tuple(-(7 + w) for w in (1, 4, 8))))
        for sid in self.streams:
            for tag in (TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_STREAM_FOOTER):
                patterns.append((struct.pack("<HI", tag, sid), tuple(-(1 + w) for w in (1, 4, 8))))
        lo = start
        while lo < size:
            hi = min(size, lo + _SCAN_WINDOW)
            found: set[int] = set()
            for pattern, shifts in patterns:
                stop = hi + 16 + len(pattern)  # heads lie at most 15 bytes before their pattern
                m = buf.find(pattern, lo, stop)
                while m != -1:
                    for shift in shifts:
                        head = m + shift
                        if lo <= head < hi and buf[head] in (1, 4, 8):
                            found.add(head)
                    m = buf.find(pattern, m + 1, stop)
            yield from sorted(found)
            lo = hi

    # results
    def stream_footers(self) -> tuple[list[tuple[int, bytes]], set[tuple[int, int]], list[int]]:
        """Return the new footer chunks, the ranges of the old footers they replace, and the ids replaced."""
        new: list[tuple[int, bytes]] = []
        drop: set[tuple[int, int]] = set()
        replaced: list[int] = []
        for sid, stream in self.streams.items():
            footers = self.footers.get(sid, [])
            keep = next((c for c in footers if self._footer_matches(c, stream)), None)
            for c in footers:
                if c is not keep:
                    drop.add((c.pos, c.end))
            stream.has_footer = keep is not None
            if keep is None:
                if footers:
                    replaced.append(sid)
                xml = footer_xml(stream.first_timestamp, stream.last_timestamp, stream.sample_count)
                new.append((sid, chunk_bytes(TAG_STREAM_FOOTER, xml.encode("utf-8"), sid)))
        return new, drop, replaced

    @staticmethod
    def _footer_matches(chunk: _Chunk, stream: StreamSummary) -> bool:
        if chunk.footer_count != stream.sample_count:
            return False
        for written, found in zip(chunk.footer_stamps, (stream.first_timestamp, stream.last_timestamp)):
            if written is not None and found is not None and not math.isclose(written, found, abs_tol=1e-6):
                return False
        return True

    def rebuilt_header(self) -> bytes:
        """Build a file header chunk from the elements left in the damaged one."""
        damaged = b""
        if self.dropped and self.dropped[0].start == 4:
            end = self.dropped[0].end
            with open(self.path, "rb") as f:
                head = f.read(min(end, 4 + 9))
                if len(head) > 4 and head[4] in (1, 4, 8) and len(head) >= 5 + head[4]:
                    length = int.from_bytes(head[5 : 5 + head[4]], "little")  # the damaged header's own length
                    if 5 + head[4] + length <= end:
                        end = 5 + head[4] + length
                f.seek(4)
                damaged = f.read(min(end - 4, _MAX_HEADER))
            cut = damaged.find(b"</info>")  # nothing of the next chunks
            damaged = damaged if cut < 0 else damaged[:cut]
        parts = ["<version>1.0</version>"]
        recovered = _recover_elements(damaged.decode("utf-8", errors="replace"), skip={"info", "version"})
        parts += recovered
        parts.append(
            f"<closedloop_repair>file header rebuilt by closedloop repair; {len(recovered)} "
            "element(s) recovered from the damaged one</closedloop_repair>"
        )
        xml = '<?xml version="1.0"?><info>' + "".join(parts) + "</info>"
        return chunk_bytes(TAG_FILE_HEADER, xml.encode("utf-8"))


def _recover_elements(text: str, skip: set[str]) -> list[str]:
    """Return the well-formed elements of damaged XML text, outermost first, in order, each name once."""
    out: list[str] = []
    seen: set[str] = set(skip)
    i = 0
    while True:
        m = _OPEN_TAG.search(text, i)
        if m is None:
            return out
        name = m.group(1)
        close = f"</{name}>"
        j = text.find(close, m.end()) if name not in skip else -1
        if j < 0:
            i = m.end()
            continue
        segment = text[m.start() : j + len(close)]
        try:
            ET.fromstring(segment)
        except ET.ParseError:
            i = m.end()
            continue
        if name not in seen:
            seen.add(name)
            out.append(segment)
        i = j + len(close)


def _plan(walker: _Walker) -> tuple[RepairReport, bytes, list[tuple[int, int]], list[bytes]]:
    """Return the report, the file header chunk, the ranges to copy and the footers to append."""
    footers, replaced_ranges, replaced = walker.stream_footers()
    for start, end in sorted(replaced_ranges):
        walker.dropped.append(DroppedRange(start, end, "stream footer no longer matches the kept samples (replaced)"))
    walker.dropped.sort(key=lambda d: d.start)
    header_rebuilt = walker.header is None
    if header_rebuilt:
        header = walker.rebuilt_header()
    else:
        with open(walker.path, "rb") as f:
            f.seek(walker.header[0])
            header = f.read(walker.header[1] - walker.header[0])
    ranges: list[tuple[int, int]] = []
    for start, end in walker.kept:
        if (start, end) in replaced_ranges:
            continue
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    footer_chunks = [chunk for _, chunk in footers]
    bytes_after = len(MAGIC) + len(header) + sum(e - s for s, e in ranges) + sum(map(len, footer_chunks))
    dropped_bytes = sum(d.size for d in walker.dropped)
    header_moved = walker.header is not None and walker.header[0] != 4
    report = RepairReport(
        path=str(walker.path),
        bytes_before=walker.size,
        bytes_after=bytes_after,
        bytes_dropped=dropped_bytes,
        chunks_kept=walker.chunks - len(replaced_ranges) + (1 if header_rebuilt else 0),
        streams=dict(walker.streams),
        footers_added=[sid for sid, _ in footers],
        footers_replaced=replaced,
        dropped=list(walker.dropped),
        ok=not (walker.dropped or footers or header_rebuilt or walker.magic_restored or header_moved),
        cut_reason=walker.dropped[0].reason if walker.dropped else None,
        header_rebuilt=header_rebuilt,
        magic_restored=walker.magic_restored,
    )
    return report, header, ranges, footer_chunks


def scan_xdf(path: str | os.PathLike) -> RepairReport:
    """Report what :func:`repair_xdf` would do, without writing anything.

    Raises
    ------
    ValueError
        If the file is not an XDF file at all (no magic and no XDF chunk).
    """
    walker = _Walker(Path(path))
    walker.run()
    return _plan(walker)[0]


def repaired_path(path: str | os.PathLike) -> Path:
    """Return where :func:`repair_xdf` writes by default: ``NAME.repaired.xdf`` beside ``NAME.xdf``."""
    p = Path(path)
    stem = p.stem if p.suffix.lower() == ".xdf" else p.name
    return p.with_name(f"{stem}.repaired.xdf")


def backup_path(path: str | os.PathLike) -> Path:
    """Return where ``repair_xdf(..., in_place=True)`` keeps the original: ``NAME.xdf.bak``."""
    p = Path(path)
    return p.with_name(p.name + ".bak")


def repair_xdf(
    path: str | os.PathLike, out_path: str | os.PathLike | None = None, *, in_place: bool = False
) -> RepairReport:
    """Write a repaired copy of a damaged XDF file, keeping every valid chunk.

    Damaged chunks are skipped (see the module notes), the file header is
    rebuilt if it is damaged, and streams get footers matching their kept
    samples. A file that needs nothing is left alone and nothing is written.

    Parameters
    ----------
    path : str or Path
        The damaged file. It is never modified unless ``in_place``.
    out_path : str or Path, optional
        Where to write the repaired file; by default :func:`repaired_path`
        (``NAME.repaired.xdf``). It must not exist.
    in_place : bool
        Replace ``path`` with the repaired file, after keeping the original
        as :func:`backup_path` (``NAME.xdf.bak``, which must not exist).

    Returns
    -------
    RepairReport
        What was kept, dropped (byte ranges and reasons) and added, and where
        the repaired file and the backup are.

    Raises
    ------
    ValueError
        If the file is not XDF at all.
    FileExistsError
        If the output or the backup already exists (nothing is overwritten).
    """
    source = Path(path)
    if in_place and out_path is not None:
        raise ValueError("give either out_path or in_place, not both")
    target = source if in_place else Path(out_path) if out_path is not None else repaired_path(source)
    if not in_place and target.resolve() == source.resolve():
        raise ValueError(f"out_path is the damaged file itself ({source}); use in_place=True to replace it")
    walker = _Walker(source)
    walker.run()
    report, header, ranges, footers = _plan(walker)
    if report.ok:
        return report
    backup = backup_path(source) if in_place else None
    for existing in (backup,) if in_place else (target,):
        if existing is not None and (existing.exists() or existing.is_symlink()):
            raise FileExistsError(f"{existing} already exists; move it away first (repair never overwrites a file)")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".repair", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            out.write(MAGIC + header)
            for start, end in ranges:
                src.seek(start)
                remaining = end - start
                while remaining:
                    block = src.read(min(_COPY_BLOCK, remaining))
                    if not block:
                        raise OSError(f"{source} shrank while it was being repaired")
                    out.write(block)
                    remaining -= len(block)
            for chunk in footers:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        if in_place:
            _keep_backup(source, backup)
            report.backup_path = str(backup)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _sync_dir(target.parent)
    report.out_path = str(target)
    return report


def _keep_backup(source: Path, backup: Path) -> None:
    """Keep the original under ``backup`` (a hard link when possible: instant, no extra space)."""
    try:
        os.link(source, backup)
    except OSError:
        shutil.copy2(source, backup)
        with open(backup, "rb") as f:
            os.fsync(f.fileno())


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
