"""Publish a recording over LSL, paced at a multiple of real time.

Any LSL client — closedloop itself, mne-lsl's ``StreamLSL``, LabRecorder —
can then consume a recording as if it came from an amplifier. The EEG stream
carries the file's channels (labels, types and units in its header: ``ECG``
stays ``ECG`` although EDF files type it EEG) and their values in µV; a second
stream, ``f"{name}-markers"``, carries the file's markers and annotations.

Timestamps keep the recording's own spacing (gaps and jitter included),
shifted to start at the LSL clock when playing starts; each loop continues
one sample period after the last. At ``speed`` X the samples are pushed X
times faster than they were recorded, so at X > 1 the timestamps run ahead
of the clock.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from closedloop.lslconfig import configure_lsl
from closedloop.offline.files import RecordingFile, open_recording

__all__ = ["PlayStats", "play"]


@dataclass
class PlayStats:
    """What :func:`play` sent."""

    name: str
    source_id: str
    marker_name: str
    samples: int = 0
    markers: int = 0
    loops: int = 0
    wall_s: float = 0.0


def _eeg_info(rec: RecordingFile, name: str, source_id: str):
    import pylsl

    fmt = pylsl.cf_float32 if rec.channel_format == "float32" else pylsl.cf_double64
    info = pylsl.StreamInfo(name, rec.type or "EEG", len(rec.ch_names), rec.sfreq, fmt, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "closedloop play")
    channels = desc.append_child("channels")
    eeg = rec.eeg_info()
    for label, unit, kind in zip(rec.ch_names, eeg["units"], eeg["ch_types"]):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit or "microvolts")
        ch.append_child_value("type", kind)
    meta = desc.append_child("closedloop")
    meta.append_child_value("played_from", str(rec.path))
    return info


def play(
    path: str | os.PathLike,
    speed: float = 1.0,
    loop: bool = False,
    name: str | None = None,
    source_id: str | None = None,
    *,
    chunk_s: float = 0.02,
    wait_consumer_s: float = 0.0,
    stop: threading.Event | None = None,
    on_start=None,
    recording: RecordingFile | None = None,
    linger_s: float = 1.0,
    encoding: str | None = None,
) -> PlayStats:
    """Publish a recording as LSL streams until its end (or forever with ``loop``).

    Parameters
    ----------
    path : str or Path
        XDF or any file MNE reads.
    speed : float
        Pace as a multiple of real time (2.0: twice as fast).
    loop : bool
        Start again at the end (until ``stop`` is set or Ctrl-C).
    name : str, optional
        EEG stream name (default: the recording's stream name or file stem).
    source_id : str, optional
        LSL source_id (default ``f"closedloop-play-{name}"``).
    chunk_s : float
        Recording time per pushed chunk (scaled by ``speed``).
    wait_consumer_s : float
        Wait up to this long for a consumer before starting (so none of the
        first samples are missed).
    stop : threading.Event, optional
        Set it to stop playing.
    on_start : callable, optional
        Called with the :class:`PlayStats` (stream names) once the outlets exist.
    recording : RecordingFile, optional
        An already opened recording (``path`` is then only a label).
    linger_s : float
        Keep the outlets this long after the last sample, so that consumers
        receive the end of the recording.
    encoding : str, optional
        Text encoding of EDF/BDF annotations (see :func:`~closedloop.offline.files.open_recording`).

    Returns
    -------
    PlayStats
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0, not {speed}")
    configure_lsl()
    import pylsl

    rec = recording or open_recording(path, encoding=encoding)
    name = name or rec.name or Path(path).stem
    source_id = source_id or f"closedloop-play-{name}"
    stats = PlayStats(name, source_id, f"{name}-markers")
    outlet = pylsl.StreamOutlet(_eeg_info(rec, name, source_id))
    marker_info = pylsl.StreamInfo(
        stats.marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{source_id}-markers"
    )
    markers = pylsl.StreamOutlet(marker_info)
    stop = stop or threading.Event()
    if on_start is not None:
        on_start(stats)
    if wait_consumer_s > 0:
        outlet.wait_for_consumers(wait_consumer_s)
    step = max(1, int(round(chunk_s * speed * rec.sfreq)))
    period = 1.0 / rec.sfreq
    t_wall0 = pylsl.local_clock()
    stamp0 = t_wall0  # LSL timestamp of the first sample
    shift = 0.0  # recording time already played in earlier loops
    raw0 = None
    events = rec.events
    wall = time.perf_counter()
    try:
        while not stop.is_set():
            k_event = 0
            last_raw = None
            for data, raw in rec.blocks():
                if raw0 is None:
                    raw0 = float(raw[0])
                for a in range(0, data.shape[0], step):
                    if stop.is_set():
                        break
                    b = min(a + step, data.shape[0])
                    rel = raw[a:b] - raw0 + shift  # recording time since the first sample
                    due = t_wall0 + rel[-1] / speed
                    delay = due - pylsl.local_clock()
                    if delay > 0 and stop.wait(delay):
                        break
                    outlet.push_chunk(np.ascontiguousarray(data[a:b]), (stamp0 + rel).tolist())
                    stats.samples += b - a
                    last_raw = float(raw[b - 1])
                    horizon = last_raw + rec.time_offset
                    while k_event < len(events) and events[k_event].time <= horizon:
                        ev = events[k_event]
                        markers.push_sample([ev.label], stamp0 + ev.time - rec.time_offset - raw0 + shift)
                        stats.markers += 1
                        k_event += 1
                if stop.is_set():
                    break
            stats.loops += 1
            if not loop or last_raw is None:
                break
            shift += last_raw - raw0 + period
    except KeyboardInterrupt:
        pass
    finally:
        stats.wall_s = time.perf_counter() - wall
        if outlet.have_consumers() and not stop.is_set():
            time.sleep(linger_s)  # let the last chunks reach the consumers before the outlets go
        del outlet, markers
    return stats
