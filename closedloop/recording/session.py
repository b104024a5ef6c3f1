"""Everything a session writes: ``session.xdf`` (and ``report.html`` at the end).

:class:`SessionRecording` is used by the live runtime and by the offline
replay alike, so both write the same streams:

============================ =========== ==================================================
stream (name)                type        content, one sample per ...
============================ =========== ==================================================
the EEG source's own name    EEG         ... raw sample, values and LSL timestamps as received
``closedloop-features``      Features    ... frame: feature values, quality flags, frame index
``closedloop-controller``    Controller  ... frame: the controller's state after the frame
``closedloop-commands``      Commands    ... frame: desired and allowed command
``closedloop-applied``       Commands    ... command the adapter issued (issue time, latency)
``closedloop-safety``        Events      ... safety event, as JSON text
``closedloop-applied-extra`` Commands    ... applied command's modality parameters, as JSON
``closedloop-device-io``     DeviceIO    ... byte sent to or received from the device, state
                                         change or fault: JSON ``{"kind", "hex", "note"}``
other names (markers, ...)   as declared ... sample of that LSL stream, raw timestamps
============================ =========== ==================================================

Frame-based streams are stamped with the frame time (the pipeline's time
base), so a replay of the file reproduces them exactly. The EEG stream keeps
the raw LSL timestamps; the clock offset the pipeline added to them is in the
EEG stream header under ``desc/closedloop/pipeline_offset``, and every later
clock measurement is a ClockOffset chunk. Every stream has ClockOffset chunks
(at its start, every 5 s and at the end), as LabRecorder writes them, so that
pyxdf synchronises the file without a warning: 0 for the streams stamped in
the recording machine's clock, the measured offsets for the live EEG and the
other LSL streams, the pipeline offset for a replayed EEG. The file header
and the features stream header carry the resolved pipeline (JSON and the
TOML text), the device profile and the closedloop version; the file header
and every stream's ``desc/closedloop`` carry the session identity
(participant, session, ...) when one is given.

Every ``on_*`` method only copies into the :class:`~closedloop.recording.Recorder`
queue and returns: it never blocks the loop and never raises because of the
disk; a disk error shows up in :attr:`SessionRecording.error`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from closedloop.recording.recorder import Recorder, check_writable
from closedloop.recording.xdf import check_xml_name

__all__ = ["SessionRecording", "COMMAND_CHANNELS", "APPLIED_CHANNELS"]

log = logging.getLogger(__name__)

#: Channels of the ``closedloop-commands`` stream.
COMMAND_CHANNELS = (
    "desired_on",
    "desired_amplitude_mA",
    "desired_frequency_Hz",
    "allowed_on",
    "allowed_amplitude_mA",
    "allowed_frequency_Hz",
    "safety_time",  # the safety layer's clock when it allowed the command (a replay runs the layer on it)
)
#: Channels of the ``closedloop-applied`` stream.
APPLIED_CHANNELS = ("amplitude_mA", "frequency_Hz", "on", "frame_time", "latency_s")

FEATURES_STREAM = "closedloop-features"
CONTROLLER_STREAM = "closedloop-controller"
COMMANDS_STREAM = "closedloop-commands"
APPLIED_STREAM = "closedloop-applied"
APPLIED_EXTRA_STREAM = "closedloop-applied-extra"
SAFETY_STREAM = "closedloop-safety"
DEVICE_IO_STREAM = "closedloop-device-io"


def _version() -> str:
    from closedloop import __version__

    return __version__


class SessionRecording:
    """Write one session's ``session.xdf`` incrementally, and its report at the end.

    Parameters
    ----------
    out_dir : Path
        The session folder (created). It must not hold a ``session.xdf`` yet.
    resolved : ResolvedPipeline
        The pipeline and device profile of the session (written to the headers).
    eeg : dict
        The EEG stream as received: ``name``, ``type``, ``source_id``,
        ``sfreq``, ``channel_format`` (``"float32"`` or ``"double64"``),
        ``ch_names``, ``units`` (one string or one per channel),
        ``pipeline_offset`` (the clock offset the pipeline added to every
        raw timestamp, s) and optionally ``header_xml`` (the source's LSL
        header, embedded as text), ``created_at`` and ``offset_measured``
        (True when the clock offsets are measured and given to
        :meth:`on_clock_offset`, as for a live source; otherwise the
        pipeline offset is written as the stream's constant offset).
    feature_names : tuple of str
        Feature names, in frame order.
    controller_state_names : list of str, optional
        Keys of the controller's ``state()``; by default those of a
        controller built from ``resolved``.
    extra_streams : list of dict, optional
        Further streams to record (markers, ratings): ``name`` and optionally
        ``type`` (``"Markers"``), ``channel_count`` (1), ``nominal_srate`` (0),
        ``channel_format`` (``"string"``), ``source_id``, ``ch_names``,
        ``header_xml``. Streams not declared here are added as one-channel
        string streams the first time :meth:`on_marker` names them.
    block : bool
        Wait for the writer instead of dropping data when its queue is full
        (offline replays only; a live loop must never block).
    min_free_bytes : int
        Free space the folder must have before the session starts.
    flush_interval_s : float
        Longest time data wait in memory before they are written (the
        recorder also writes a boundary chunk and syncs every 10 s).
    report : bool
        Write ``report.html`` on :meth:`close`.
    session_info : dict, optional
        Facts about the session for the file header (e.g.
        ``requested_duration_s``, so a replay ends where the session did).
    identity : dict of str to str, optional
        Who and what the session is (``participant``, ``session``, ...):
        written to the file header and to every stream's ``desc/closedloop``
        under ``identity``, and shown in the report's title. Keys must be
        XML names (letters, digits, ``_ . -``).
    clock : callable, optional
        The recording machine's clock, for the collection times of the
        ClockOffset chunks; :meth:`for_source` passes ``pylsl.local_clock``
        (default :func:`time.monotonic`).
    copy_raw : bool
        False: the arrays given to :meth:`on_chunk` are never written to
        afterwards (a replay's file blocks), so they are recorded without a
        copy. A live source reuses its buffers: keep True.

    Raises
    ------
    OSError
        Naming the folder, if it cannot be created or written, lacks free
        space, or already holds a ``session.xdf`` — before the session starts.
    ValueError
        For an identity key that is not an XML name.
    """

    FILE_NAME = "session.xdf"
    REPORT_NAME = "report.html"

    def __init__(
        self,
        out_dir: str | os.PathLike,
        resolved,
        eeg: Mapping[str, object],
        feature_names: Sequence[str],
        controller_state_names: Sequence[str] | None = None,
        extra_streams: Sequence[Mapping[str, object]] | None = None,
        *,
        block: bool = False,
        min_free_bytes: int = 100_000_000,
        flush_interval_s: float = 0.1,
        report: bool = True,
        session_info: Mapping[str, object] | None = None,
        identity: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        copy_raw: bool = True,
    ) -> None:
        self.identity = _check_identity(identity)
        self.out_dir = Path(out_dir)
        check_writable(self.out_dir, min_free_bytes)
        self.path = self.out_dir / self.FILE_NAME
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} already exists: a session folder holds one recording; choose another folder"
            )
        self.resolved = resolved
        self.feature_names = tuple(feature_names)
        if controller_state_names is None:
            from closedloop.control import build_controller

            controller_state_names = list(build_controller(resolved.config.controller).state())
        self.controller_state_names = tuple(controller_state_names)
        self.report_enabled = report
        self.report_path: Path | None = None
        self.report_error: BaseException | None = None
        self._closed = False
        self._finished = False
        self.session_id = uuid.uuid4().hex[:12]
        version = _version()
        self.started = datetime.now().astimezone().isoformat(timespec="seconds")
        pipeline_meta = _pipeline_meta(resolved)
        file_info: dict[str, object] = {
            "closedloop_version": version,
            "session_id": self.session_id,
            "session_started": self.started,
            **{str(k): str(v) for k, v in (session_info or {}).items()},
            **pipeline_meta,
        }
        if self.identity:
            file_info["identity"] = dict(self.identity)
        # offline (block=True) the writer is fed as fast as the CPU allows: keep what waits in memory
        # small (a 32-item queue, batches of about 1 MB) so memory stays flat and low
        item = 4 if str(eeg.get("channel_format", "float32")) == "float32" else 8
        sample_bytes = len(eeg["ch_names"]) * item + 9
        self.recorder = Recorder(
            self.path,
            file_info,
            flush_interval_s=flush_interval_s,
            block_when_full=block,
            max_queue=32 if block else 10_000,
            max_batch_samples=max(1000, 1_000_000 // sample_bytes) if block else 100_000,
            clock=clock or time.monotonic,
        )
        self._copy_raw = bool(copy_raw)
        self._held = None  # the last chunk's EEG part, queued with that chunk's frames (one queue item per chunk)
        self._ids: dict[str, int] = {}
        self._strings: set[int] = set()  # ids of string streams
        self._n_state = len(self.controller_state_names)

        # -- EEG as received -------------------------------------------------------
        ch_names = [str(c) for c in eeg["ch_names"]]
        units = eeg.get("units", "microvolts")
        units = [str(units)] * len(ch_names) if isinstance(units, str) else [str(u) for u in units]
        ch_types = eeg.get("ch_types") or ["EEG"] * len(ch_names)
        self.eeg_name = str(eeg["name"])
        self.pipeline_offset = float(eeg.get("pipeline_offset", 0.0))
        meta = {
            **self._meta("eeg"),
            "session_id": self.session_id,
            "pipeline_offset": repr(self.pipeline_offset),
        }
        if eeg.get("header_xml"):
            meta["source_header_xml"] = str(eeg["header_xml"])
        if eeg.get("ref_excluded"):  # channels the average reference left out (not EEG)
            meta["average_reference_excludes"] = ", ".join(str(c) for c in eeg["ref_excluded"])
        self._eeg_id = self.recorder.add_stream(
            self.eeg_name,
            str(eeg.get("type", "EEG")),
            len(ch_names),
            float(eeg["sfreq"]),
            str(eeg.get("channel_format", "float32")),
            source_id=str(eeg.get("source_id", "")),
            channels=[{"label": n, "unit": u, "type": t} for n, u, t in zip(ch_names, units, ch_types)],
            desc_extra={"closedloop": meta},
            created_at=_float_or_none(eeg.get("created_at")),
            clock_offset=None if eeg.get("offset_measured") else self.pipeline_offset,
        )
        self._ids[self.eeg_name] = self._eeg_id

        # -- what the pipeline made of it -------------------------------------------
        cfg = resolved.config
        hop_rate = cfg.sfreq / cfg.features.hop_samples
        unit = "log10(uV^2)" if cfg.features.log10 else "uV^2"
        feat_channels = [{"label": n, "unit": unit, "type": "feature"} for n in self.feature_names]
        feat_channels += [
            {"label": "flags", "unit": "Quality", "type": "flags"},
            {"label": "frame_index", "unit": "", "type": "index"},
        ]
        self._feat_id = self._add(FEATURES_STREAM, "Features", feat_channels, hop_rate, "features", pipeline_meta)
        self._state_id = self._add(
            CONTROLLER_STREAM,
            "Controller",
            [{"label": n, "unit": "", "type": "state"} for n in self.controller_state_names]
            or [{"label": "none", "unit": "", "type": "state"}],
            hop_rate,
            "controller",
        )
        self._cmd_id = self._add(
            COMMANDS_STREAM,
            "Commands",
            [{"label": n, "unit": _unit(n), "type": "command"} for n in COMMAND_CHANNELS],
            hop_rate,
            "commands",
        )
        self._applied_id = self._add(
            APPLIED_STREAM,
            "Commands",
            [{"label": n, "unit": _unit(n), "type": "command"} for n in APPLIED_CHANNELS],
            0.0,
            "applied",
        )
        self._safety_id = self._add_json(SAFETY_STREAM, "Events", "event", "event", "safety")
        # modality-specific parameters (rTMS train, TUS sonication: Command.extra) of every applied command
        self._extra_id = self._add_json(APPLIED_EXTRA_STREAM, "Commands", "extra", "command", "applied-extra")
        # every byte the device adapter sends and receives, its state changes and faults: the lab's audit trail
        self._io_id = self._add_json(DEVICE_IO_STREAM, "DeviceIO", "io", "io", "device-io")
        self._feat_row = np.empty(len(self.feature_names) + 2)
        for spec in extra_streams or ():
            self.add_stream(**dict(spec))
        self.recorder.start()  # OSError naming the file if it cannot be created

    @classmethod
    def for_source(cls, out_dir, resolved, source, pipeline, extra_streams=None, **kwargs) -> SessionRecording:
        """Record a live session on an opened :class:`~closedloop.sources.LSLSource`.

        Also hooks the recording in: the source's later clock offsets
        (``source.on_offset``) and the pipeline's safety events
        (``pipeline.safety.on_event``) are recorded, and the offset
        measured at ``open()`` is written first.
        """
        import pylsl

        kwargs.setdefault("clock", pylsl.local_clock)
        rec = cls(
            out_dir,
            resolved,
            source.stream_info(),
            pipeline.feature_names,
            list(pipeline.controller.state()),
            extra_streams,
            **kwargs,
        )
        rec.on_clock_offset(source.last_offset_time, source.clock_offset)
        source.on_offset = _chain(source.on_offset, rec.on_clock_offset)
        pipeline.safety.on_event = _chain(pipeline.safety.on_event, rec.on_event)
        return rec

    def _meta(self, role: str) -> dict[str, object]:
        """Return the ``desc/closedloop`` of a stream: role, version and identity."""
        meta: dict[str, object] = {"role": role, "version": _version()}
        if self.identity:
            meta["identity"] = dict(self.identity)
        return meta

    def _add(
        self, name: str, type_: str, channels: list[dict], srate: float, role: str, extra: Mapping | None = None
    ) -> int:
        """Declare one of closedloop's numeric streams (stamped in the recording clock: offset 0)."""
        sid = self.recorder.add_stream(
            name,
            type_,
            len(channels),
            srate,
            "double64",
            source_id=f"closedloop-{self.session_id}-{name[11:]}",
            channels=channels,
            desc_extra={"closedloop": {**self._meta(role), **(extra or {})}},
            clock_offset=0.0,
        )
        self._ids[name] = sid
        return sid

    def _add_json(self, name: str, type_: str, label: str, ch_type: str, role: str) -> int:
        """Declare one of closedloop's one-channel JSON text streams (recording clock: offset 0)."""
        sid = self.recorder.add_stream(
            name,
            type_,
            1,
            0.0,
            "string",
            source_id=f"closedloop-{self.session_id}-{name[11:]}",
            channels=[{"label": label, "unit": "json", "type": ch_type}],
            desc_extra={"closedloop": self._meta(role)},
            clock_offset=0.0,
        )
        self._ids[name] = sid
        self._strings.add(sid)
        return sid

    def add_stream(
        self,
        name: str,
        type: str = "Markers",
        channel_count: int = 1,
        nominal_srate: float = 0.0,
        channel_format: str = "string",
        source_id: str = "",
        ch_names: Sequence[str] | None = None,
        header_xml: str | None = None,
        clock_offset: float | None = 0.0,
    ) -> int:
        """Declare another stream to record (also possible while recording).

        ``clock_offset`` is the stream's constant offset to the recording
        machine's clock, written as its ClockOffset chunks: 0 (default) for
        a stream stamped in this machine's clock; None when the offsets are
        measured and given to :meth:`on_clock_offset` (an LSL stream from
        another machine, as :class:`~closedloop.recording.inlets.StreamInlets`
        records them).
        """
        if name in self._ids:
            raise ValueError(f"stream {name!r} is already recorded in {self.path}")
        meta = self._meta("extra")
        if header_xml:
            meta["source_header_xml"] = header_xml
        channels = [{"label": str(n)} for n in ch_names] if ch_names else None
        sid = self.recorder.add_stream(
            name,
            type,
            int(channel_count),
            float(nominal_srate),
            channel_format,
            source_id=source_id,
            channels=channels,
            desc_extra={"closedloop": meta},
            clock_offset=clock_offset,
        )
        self._ids[name] = sid
        if channel_format == "string":
            self._strings.add(sid)
        return sid

    # -- the loop's calls (cheap, non-blocking) ------------------------------------
    def on_chunk(self, data: np.ndarray, raw_timestamps: np.ndarray) -> None:
        """EEG exactly as received: values and raw LSL timestamps (copied unless ``copy_raw`` is False).

        Queued together with the chunk's frames by :meth:`on_steps` (one queue
        item per chunk); a chunk without frames is queued at the next chunk
        or at :meth:`finish`.
        """
        held = self._held
        self._held = self.recorder.prepare(self._eeg_id, data, raw_timestamps, copy=self._copy_raw)
        if held is not None:
            self.recorder.push_parts((held,))

    def on_clock_offset(self, collection_time: float, offset: float, stream: str | None = None) -> None:
        """Record a clock offset measurement of the EEG stream (or of another recorded stream)."""
        sid = self._eeg_id if stream is None else self._ids[stream]
        self.recorder.push_clock_offset(sid, collection_time, offset)

    def on_steps(self, steps: Sequence) -> None:
        """Per frame: features with flags and index, controller state, desired and allowed command."""
        n = len(steps)
        if n == 0:
            return
        # built column-wise from lists (one conversion per array, not a numpy item assignment per value)
        nf = len(self.feature_names)
        frames = [step.frame for step in steps]
        times = np.array([f.time for f in frames], dtype=np.float64)
        feats = np.empty((n, nf + 2))
        feats[:, :nf] = [f.values for f in frames]
        feats[:, nf] = [int(f.flags) for f in frames]
        feats[:, nf + 1] = [f.index for f in frames]
        names = self.controller_state_names
        states = [getattr(step, "state", None) for step in steps] if names else []
        if states and all(states):  # every frame has its state (a session records them all): one conversion
            k = len(names)
            state = np.fromiter([st.get(key, math.nan) for st in states for key in names], np.float64, n * k)
            state = state.reshape(n, k)
        else:
            state = np.full((n, max(self._n_state, 1)), np.nan)
            rows = [i for i, st in enumerate(states) if st]
            if rows:
                state[rows, : len(names)] = [[states[i].get(key, math.nan) for key in names] for i in rows]
        cmds = np.array(
            [
                (d.on, d.amplitude_mA, d.frequency_Hz, a.on, a.amplitude_mA, a.frequency_Hz, t)
                for d, a, t in ((s.desired, s.allowed, getattr(s, "safety_time", math.nan)) for s in steps)
            ],
            dtype=np.float64,
        ).reshape(n, len(COMMAND_CHANNELS))
        prepare = self.recorder.prepare  # arrays built here for the recorder alone: handed over, not copied
        held, self._held = self._held, None
        self.recorder.push_parts(
            (
                held,
                prepare(self._feat_id, feats, times, copy=False),
                prepare(self._state_id, state, times, copy=False),
                prepare(self._cmd_id, cmds, times, copy=False),
            )
        )

    def on_applied(self, command, issue_time: float, latency_s: float) -> None:
        """Record a command the adapter issued at ``issue_time`` (local LSL clock)."""
        row = np.array([[command.amplitude_mA, command.frequency_Hz, float(command.on), command.time, latency_s]])
        self.recorder.push(self._applied_id, row, (issue_time,))
        if command.extra or command.fire or command.abort:
            doc = {
                **command.extra,
                **({"fire": True} if command.fire else {}),
                **({"abort": True} if command.abort else {}),
            }
            self.recorder.push(self._extra_id, [[json.dumps(doc, sort_keys=True)]], (issue_time,))

    def on_applied_rows(self, rows: np.ndarray, issue_times: np.ndarray, commands: Sequence) -> None:
        """Record a chunk's applied commands at once: ``rows`` as :meth:`on_applied` builds them, one per command.

        The hot loop's form of :meth:`on_applied` (one push per chunk, not per command); the
        commands are needed only for their rare extras (fire, abort, phase...).
        """
        texts, times = [], []
        for command, t in zip(commands, issue_times.tolist()):
            if command.extra or command.fire or command.abort:
                doc = {
                    **command.extra,
                    **({"fire": True} if command.fire else {}),
                    **({"abort": True} if command.abort else {}),
                }
                texts.append([json.dumps(doc, sort_keys=True)])
                times.append(t)
        prepare = self.recorder.prepare  # rows and issue_times are the caller's buffers: copied
        self.recorder.push_parts(
            (
                prepare(self._applied_id, rows, issue_times),
                prepare(self._extra_id, texts, times) if texts else None,
            )
        )

    def on_event(self, event) -> None:
        """Record a :class:`~closedloop.safety.SafetyEvent`, as JSON text stamped at its time."""
        text = json.dumps(
            {
                "time": event.time,
                "kind": event.kind,
                "reason": event.reason,
                "desired_mA": event.desired_mA,
                "applied_mA": event.applied_mA,
            }
        )
        self.recorder.push(self._safety_id, [[text]], (event.time,))

    def on_io(self, record) -> None:
        """Record one entry of a device adapter's I/O log (non-blocking; safe from the adapter's I/O thread).

        Parameters
        ----------
        record : closedloop.adapters.iolog.IORecord
            Stamped with the adapter's clock (the LSL clock by default): one
            sample of ``closedloop-device-io``, JSON ``{"kind", "hex", "note"}``
            (``hex``: the bytes on the wire, empty for state changes).
        """
        text = json.dumps({"kind": record.kind, "hex": bytes(record.data).hex(), "note": record.note})
        self.recorder.push(self._io_id, [[text]], (record.time,))

    def on_marker(self, stream: str, labels, timestamps) -> None:
        """Record samples of another stream (markers: a list of str; numeric: an array), raw timestamps."""
        sid = self._ids.get(stream)
        if sid is None:
            sid = self.add_stream(stream)
        stamps = np.atleast_1d(np.asarray(timestamps, dtype=np.float64))
        if sid in self._strings:
            rows = [[str(x)] if isinstance(x, str) else [str(v) for v in x] for x in labels]
            self.recorder.push(sid, rows, stamps)
        else:
            self.recorder.push(sid, np.asarray(labels), stamps)

    # -- state and end -------------------------------------------------------------
    @property
    def error(self) -> BaseException | None:
        """Why recording failed (disk full, folder gone, ...); the session should then stop."""
        return self.recorder.error

    def summary_fields(self) -> dict:
        """Return ``{"recording": {...}}`` for ``summary.json``: file, bytes, drops, error, completeness.

        ``complete`` (the file ends with every stream's footer, so readers
        need no repair) is known once :meth:`finish` has returned.
        """
        st = self.recorder.stats
        return {
            "recording": {
                "file": self.FILE_NAME,
                "bytes": st.bytes_written,
                "dropped_samples": st.dropped_samples,
                "dropped_pushes": st.dropped_pushes,
                "error": st.last_error,
                "complete": st.footers_written,
            }
        }

    def finish(self, timeout: float = 30.0) -> None:
        """Write what is queued, the clock offsets and the footers, and close ``session.xdf``.

        Never raises and returns within about ``timeout`` s, even after a
        disk error (the file is then cut back to whole chunks and the
        footers are tried once more). Safe to call twice; :meth:`close`
        calls it.
        """
        if not self._finished:
            self._finished = True
            held, self._held = self._held, None
            try:
                if held is not None:
                    self.recorder.push_parts((held,))
                self.recorder.close(timeout=timeout)
            except Exception as err:  # noqa: BLE001 - the end of a session must go on
                log.warning("closing %s failed: %s: %s", self.path, type(err).__name__, err)

    def close(self, summary: Mapping[str, object] | None = None, stats=None) -> None:
        """Finish ``session.xdf`` (:meth:`finish`), then write ``report.html`` next to it.

        Parameters
        ----------
        summary : dict, optional
            The session summary (shown in the report).
        stats : closedloop.session.summary.SessionStats, optional
            Its latency and data-age histograms are drawn in the report;
            without it the latencies recorded with :meth:`on_applied` are used.

        Never raises: a failed report is logged and kept in :attr:`report_error`.
        """
        if self._closed:
            return
        self._closed = True
        self.finish()
        if not self.report_enabled:
            return
        try:
            from closedloop.offline.report import write_report

            self.report_path = write_report(
                self.path, self.out_dir / self.REPORT_NAME, dict(summary or {}), self.resolved, stats
            )
        except Exception as err:  # noqa: BLE001 - a report must never break the end of a session
            self.report_error = err
            log.warning("report for %s failed: %s: %s", self.path, type(err).__name__, err)

    def __enter__(self) -> SessionRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_identity(identity: Mapping[str, str] | None) -> dict[str, str]:
    """Return the identity as a plain dict of text, checking its keys are XML names."""
    if identity is None:
        return {}
    if not isinstance(identity, Mapping):
        raise ValueError(f"identity must be a mapping such as {{'participant': 'P01'}}, not {type(identity).__name__}")
    out = {}
    for key, value in identity.items():
        try:
            check_xml_name(key, "identity key")
        except ValueError:
            raise ValueError(
                f"identity key {key!r} is not allowed: use letters, digits, '_', '.' and '-', "
                "starting with a letter or '_' (e.g. 'participant', 'session')"
            ) from None
        if value is not None:
            out[key] = str(value)
    return out


def _pipeline_meta(resolved) -> dict[str, str]:
    """Return the resolved pipeline as text: JSON of the validated config, the TOML file, the device profile."""
    meta = {
        "pipeline_name": resolved.config.pipeline.name,
        "pipeline_file": str(resolved.path),
        "pipeline_json": json.dumps(resolved.config.model_dump(mode="json"), sort_keys=True),
        "device_profile_json": json.dumps(resolved.profile.model_dump(mode="json"), sort_keys=True),
        "safety_envelope_json": json.dumps(resolved.envelope(), sort_keys=True),
    }
    try:
        meta["pipeline_toml"] = Path(resolved.path).read_text(encoding="utf-8")
    except OSError:
        meta["pipeline_toml"] = ""
    pain = resolved.config.features.pain_index
    if pain is not None:  # the calibrated model and its training data hashes travel with every session using it
        from closedloop.pain.index import model_facts

        meta["pain_model_json"] = json.dumps(model_facts(pain.model), sort_keys=True)
        try:
            meta["pain_model_file"] = Path(pain.model).read_text(encoding="utf-8")
        except OSError:
            meta["pain_model_file"] = ""
    return meta


def _unit(name: str) -> str:
    for suffix in ("mA", "Hz"):
        if name.endswith(f"_{suffix}"):
            return suffix
    return "s" if name.endswith(("_s", "_time")) else ""


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def _chain(first, second):
    """Return a callable calling ``first`` (if any) then ``second`` with the same arguments."""
    if first is None:
        return second

    def both(*args):
        first(*args)
        second(*args)

    return both
