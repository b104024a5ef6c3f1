"""Recording sessions to XDF, reading recordings back, and repairing cut files.

- :class:`SessionRecording` writes everything a session produces to
  ``session.xdf`` (live and replayed sessions alike) and ``report.html``.
- :class:`XDFWriter` writes XDF chunk by chunk (one ``os.write`` per chunk).
- :class:`Recorder` owns a writer on a thread, fed by the hot loop through a
  bounded queue; :func:`check_writable` checks a folder before a session.
- :class:`XDFReader` reads XDF incrementally (constant memory).
- :func:`repair_xdf` writes a repaired copy of a damaged file (cut short, a
  damaged chunk or file header), keeping every valid chunk and adding the
  missing footers; :func:`scan_xdf` reports without writing.
- :func:`write_json_atomic` writes a small file (``summary.json``) whole or not
  at all, falling back to other folders when its own fails.
"""

from closedloop.recording.atomic import AtomicWriteError, write_json_atomic
from closedloop.recording.reader import XDFReader, XDFStream
from closedloop.recording.recorder import Recorder, RecorderStats, check_writable
from closedloop.recording.repair import DroppedRange, RepairReport, StreamSummary, repair_xdf, repaired_path, scan_xdf
from closedloop.recording.session import SessionRecording
from closedloop.recording.xdf import XDFWriter

__all__ = [
    "SessionRecording",
    "XDFWriter",
    "XDFReader",
    "XDFStream",
    "Recorder",
    "RecorderStats",
    "check_writable",
    "repair_xdf",
    "scan_xdf",
    "repaired_path",
    "DroppedRange",
    "write_json_atomic",
    "AtomicWriteError",
    "RepairReport",
    "StreamSummary",
]
