"""Recording sessions to XDF: an incremental writer, a background recorder and repair.

- :class:`XDFWriter` writes XDF chunk by chunk (one ``os.write`` per chunk).
- :class:`Recorder` owns a writer on a thread, fed by the hot loop through a
  bounded queue; :func:`check_writable` checks a folder before a session.
- :func:`repair_xdf` cuts a damaged file back to its last whole chunk and adds
  the missing footers; :func:`scan_xdf` reports without writing.
"""

from closedloop.recording.recorder import Recorder, RecorderStats, check_writable
from closedloop.recording.repair import RepairReport, StreamSummary, repair_xdf, scan_xdf
from closedloop.recording.xdf import XDFWriter

__all__ = [
    "XDFWriter",
    "Recorder",
    "RecorderStats",
    "check_writable",
    "repair_xdf",
    "scan_xdf",
    "RepairReport",
    "StreamSummary",
]
