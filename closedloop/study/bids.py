"""BIDS export of recorded sessions (``closedloop bids SESSION... --root R``), with NIBS-BIDS sidecars.

For each session folder (``session.xdf``, ``summary.json``) this writes, with
``mne-bids``:

- ``sub-P/[ses-S/]eeg/``: the EEG as received (BrainVision or EDF), ``*_eeg.json``
  (with BIDS's ``ElectricalStimulation`` fields for tES), ``*_channels.tsv`` and
  ``*_events.tsv`` — stimulation on/off, amplitude and frequency changes,
  rTMS trains and pulses, TUS sonications (from the commands the device was
  given), safety events, ratings and the recording's own annotations, each
  with its onset from the first EEG sample; the stimulation rows carry the
  NIBS-BIDS link column ``nibs_event_id``.
- ``sub-P/[ses-S/]nibs/``: ``*_nibs.tsv`` and ``*_nibs.json`` after the NIBS-BIDS
  proposal (BEP037, v6.3: one row per stimulation parameter set, the
  timeline in the concurrent recording's ``events.tsv``), the stimulator,
  and a ``ClosedLoopParameters`` block (the name proposed for closed-loop
  metadata in bids-specification issue 2417). BIDS does not know ``nibs/``
  yet, so ``.bidsignore`` lists it (docs/study.md says which fields are
  invented).
- ``derivatives/closedloop/sub-P/[ses-S/]``: the pipeline file, the resolved
  pipeline, ``summary.json`` and ``report.html``; ``sourcedata/`` keeps the
  original ``session.xdf`` (every stream, device bytes included).

The export reads the recording only; a session is never changed.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = ["BidsExportError", "Exported", "export_session", "export_sessions", "session_events"]

#: nibs_event_id of a closedloop session's stimulation, per modality.
NIBS_TYPE = {"tes": "tES", "rtms": "TMS", "tus": "TUS"}
_MNE_TYPES = {"EEG": "eeg", "EOG": "eog", "ECG": "ecg", "EMG": "emg", "MISC": "misc", "STIM": "stim", "REF": "misc"}


class BidsExportError(ValueError):
    """A session cannot be exported; the message names it and why."""


@dataclass(frozen=True)
class Exported:
    """One exported session: where it came from and where its EEG went."""

    source: Path
    eeg: Path
    subject: str
    session: str | None


@dataclass(frozen=True)
class Event:
    """One row of ``events.tsv``: onset and duration (s from the first EEG sample), type, extra columns."""

    onset: float
    duration: float
    trial_type: str
    extras: dict


# -- columns of events.tsv besides onset, duration, trial_type, value, sample ----------------
EVENT_COLUMNS = {
    "nibs_event_id": "NIBS-BIDS link to the row of *_nibs.tsv (nibs/ folder) with this stimulation's parameters",
    "stimulus_intensity": "Amplitude the device was set to from this onset: mA (tES), %MT (rTMS), W/cm^2 ISPPA (TUS)",
    "frequency": "Stimulation frequency from this onset (Hz): tACS frequency, rTMS train rate",
    "pulses": "rTMS: pulses in the train",
    "source": "closedloop stream the row comes from (applied, safety, rating stream name, annotations)",
    "detail": "Safety event reason, rating stream, or the command's modality parameters (JSON)",
    "rating": "Rating value (as recorded)",
}


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", str(text))


def _session_paths(path: Path) -> tuple[Path, Path]:
    path = Path(path)
    xdf = path / "session.xdf" if path.is_dir() else path
    if not xdf.is_file():
        raise BidsExportError(f"{path}: no session.xdf (give a session folder closedloop wrote)")
    return xdf.parent, xdf


def _eeg_t0(eeg, stamps: np.ndarray) -> float:
    offset = float(eeg.desc("closedloop/pipeline_offset") or 0.0)
    return float(stamps[0]) + offset


def _stream_offset(stream) -> float:
    """Return the stream's last measured clock offset (raw timestamps to the recording clock), 0 if none."""
    return float(stream.clock_offsets[-1][1]) if stream.clock_offsets else 0.0


def session_events(reader, t0: float, duration_s: float, modality: str) -> list[Event]:
    """Return a recording's events for ``events.tsv``, onsets relative to ``t0`` (the first EEG sample).

    ``duration_s`` is the time of the last EEG sample from the first;
    events outside ``[0, duration_s]`` are dropped.

    Stimulation rows come from the commands the adapter issued
    (``closedloop-applied``, ``closedloop-applied-extra``), at their issue
    times; safety events from ``closedloop-safety``; ratings from rating
    streams (:mod:`closedloop.study.ratings`); annotations from a replayed
    file's ``annotations`` stream.
    """
    from closedloop.study.ratings import read_ratings

    roles = {s.desc("closedloop/role"): s for s in reader.streams.values()}
    nibs_id = f"closedloop_{modality}"
    events: list[Event] = []
    applied = roles.get("applied")
    if applied is not None and applied.sample_count:
        values, stamps = reader.read_stream(applied.stream_id)
        extras = _applied_extras(roles.get("applied-extra"))
        replayed = bool(reader.file_header.findtext("replay_of"))
        prev_on, prev_amp, prev_freq = False, 0.0, math.nan
        for (amp, freq, on, frame_t, _lat), issued in zip(values.tolist(), stamps.tolist()):
            # live: when the device was told; a replay issues a chunk's commands at once: its frame's time
            t = frame_t if replayed and math.isfinite(frame_t) else issued
            on, amp = bool(on), round(amp, 6)
            base = {"nibs_event_id": nibs_id, "stimulus_intensity": amp, "frequency": freq, "source": "applied"}
            extra = extras.get(round(issued, 9))
            if extra is not None and extra.get("fire"):
                events += _fired(t - t0, modality, amp, freq, extra, base)
            if on and not prev_on:
                events.append(Event(t - t0, 0.0, "stim/on", base))
            elif prev_on and not on:
                events.append(Event(t - t0, 0.0, "stim/off", {**base, "stimulus_intensity": 0.0}))
            elif on and prev_on:
                if amp != prev_amp:
                    events.append(Event(t - t0, 0.0, "stim/amplitude", base))
                if freq != prev_freq and not (math.isnan(freq) and math.isnan(prev_freq)):
                    events.append(Event(t - t0, 0.0, "stim/frequency", base))
            prev_on, prev_amp, prev_freq = on, amp, freq
    safety = roles.get("safety")
    if safety is not None:
        for row, t in zip(safety.strings, safety.string_stamps.tolist()):
            try:
                ev = json.loads(row[0])
            except (json.JSONDecodeError, IndexError):
                ev = {"kind": "unknown", "reason": row[0] if row else ""}
            extras = {"source": "safety", "detail": str(ev.get("reason", ""))}
            if ev.get("applied_mA") is not None:
                extras["stimulus_intensity"] = round(float(ev["applied_mA"]), 6)
            events.append(Event(float(ev.get("time", t)) - t0, 0.0, f"safety/{ev.get('kind', 'event')}", extras))
    for stream in reader.streams.values():
        if stream.name == "annotations" and stream.source_id.startswith("closedloop-replay-"):
            for row, t in zip(stream.strings, stream.string_stamps.tolist()):
                dur = _float(row[1]) if len(row) > 1 else 0.0
                events.append(Event(t - t0, dur or 0.0, f"annotation/{row[0]}", {"source": "annotations"}))
    offsets = {s.name: _stream_offset(s) for s in reader.streams.values()}
    for r in read_ratings(reader):
        events.append(
            Event(r.time + offsets.get(r.stream, 0.0) - t0, 0.0, "rating", {"rating": r.value, "source": r.stream})
        )
    kept = [e for e in events if -1e-9 <= e.onset <= duration_s]
    kept.sort(key=lambda e: e.onset)
    return kept


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _applied_extras(stream) -> dict[float, dict]:
    if stream is None:
        return {}
    out = {}
    for row, t in zip(stream.strings, stream.string_stamps.tolist()):
        try:
            out[round(t, 9)] = json.loads(row[0])
        except (json.JSONDecodeError, IndexError):
            continue
    return out


def _fired(onset: float, modality: str, amp: float, freq: float, extra: dict, base: dict) -> list[Event]:
    """Events of a fired rTMS train (the train and each pulse) or TUS sonication."""
    detail = json.dumps({k: v for k, v in extra.items() if k != "fire"}, sort_keys=True)
    if modality == "rtms":
        pulses = int(extra.get("pulses") or 0)
        dur = float(extra.get("train_duration_s") or (pulses / freq if freq else 0.0))
        intensity = extra.get("intensity_pct", amp)
        row = {**base, "stimulus_intensity": intensity, "pulses": pulses, "detail": detail}
        out = [Event(onset, dur, "stim/train", row)]
        if freq and pulses:
            out += [
                Event(onset + k / freq, 0.0, "stim/pulse", {**base, "stimulus_intensity": intensity})
                for k in range(pulses)
            ]
        return out
    return [Event(onset, float(extra.get("burst_s") or 0.0), "stim/sonication", {**base, "detail": detail})]


# -- the EEG ----------------------------------------------------------------------------
def _raw_from_xdf(reader, eeg, meas_date: datetime | None, line_freq: float | None):
    import mne
    from mne.io.constants import FIFF

    from closedloop.offline.files import stream_scaling
    from closedloop.units import UnitError

    values, stamps = reader.read_stream(eeg.stream_id)
    if values.shape[0] < 2:
        raise BidsExportError(f"{reader.path}: the EEG stream {eeg.name!r} holds {values.shape[0]} samples")
    try:  # the rule the session scaled them with: voltages to µV (none declared: µV), other channels as they are
        scaling = stream_scaling(eeg, eeg.ch_names, f"{reader.path} (stream {eeg.name!r})")
    except UnitError as err:
        raise BidsExportError(str(err)) from None
    kinds, volts = scaling.types, scaling.volts
    scale = np.where(volts, scaling.factors * 1e-6, 1.0)
    info = mne.create_info(list(eeg.ch_names), float(eeg.nominal_srate), [_MNE_TYPES.get(k, "misc") for k in kinds])
    for ch, volt in zip(info["chs"], volts):  # MNE makes a misc channel (a REF one) unitless, a stim one volts:
        ch["unit"] = FIFF.FIFF_UNIT_V if volt else FIFF.FIFF_UNIT_NONE  # say what the values are
    raw = mne.io.RawArray((values.astype(np.float64) * scale).T, info, verbose="error")
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    raw.info["line_freq"] = line_freq
    return raw, stamps


def _meas_date(reader, summary: dict) -> datetime | None:
    text = reader.file_header.findtext("session_started") or summary.get("started")
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text)).astimezone(UTC)
    except ValueError:
        return None


def _identity(reader, summary: dict) -> dict[str, str]:
    node = reader.file_header.find("identity")
    if node is not None:
        return {child.tag: (child.text or "") for child in node}
    given = summary.get("identity")
    return {str(k): str(v) for k, v in given.items() if v} if isinstance(given, dict) else {}


# -- export -----------------------------------------------------------------------------
def export_sessions(
    sessions: Sequence[str | Path],
    root: str | Path,
    task: str = "closedloop",
    eeg_format: str = "BrainVision",
    participant: str | None = None,
) -> list[Exported]:
    """Export session folders to the BIDS dataset at ``root`` (created, or added to).

    Sessions of the same participant, session label and task become runs
    1, 2, ... in the order given.

    Raises
    ------
    BidsExportError
        For a folder that is not a closedloop session, or one without a participant label.
    """
    root = Path(root)
    keys = []
    for path in sessions:
        _folder, xdf = _session_paths(Path(path))
        keys.append(_keys(xdf, participant))
    counts: dict[tuple, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    seen: dict[tuple, int] = {}
    out = []
    for path, k in zip(sessions, keys):
        run = None
        if counts[k] > 1:
            seen[k] = seen.get(k, 0) + 1
            run = seen[k]
        out.append(export_session(path, root, task=task, eeg_format=eeg_format, participant=participant, run=run))
    _write_bidsignore(root)
    return out


def _keys(xdf: Path, participant: str | None) -> tuple[str, str | None]:
    from closedloop.recording.reader import XDFReader

    ident = _identity(XDFReader(xdf), _summary(xdf.parent))
    sub = _label(ident.get("participant") or participant or "")
    if not sub:
        raise BidsExportError(f"{xdf}: recorded without a participant label; give --participant")
    ses = _label(ident.get("session") or "") or None
    return sub, ses


def _summary(folder: Path) -> dict:
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def export_session(
    path: str | Path,
    root: str | Path,
    task: str = "closedloop",
    eeg_format: str = "BrainVision",
    participant: str | None = None,
    run: int | None = None,
) -> Exported:
    """Export one session folder (see the module docstring); return where its EEG went."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids

    from closedloop.recording.reader import XDFReader

    folder, xdf = _session_paths(Path(path))
    root = Path(root)
    reader = XDFReader(xdf)
    summary = _summary(folder)
    sub, ses = _keys(xdf, participant)
    roles = {s.desc("closedloop/role"): s for s in reader.streams.values()}
    eeg = roles.get("eeg")
    if eeg is None or eeg.sample_count == 0:
        raise BidsExportError(f"{xdf}: no EEG samples recorded")
    cfg = _pipeline_json(reader)
    profile = _profile_json(reader)
    modality = (profile.get("device") or {}).get("modality") or "tes"
    line = ((cfg.get("preprocess") or {}).get("notch_hz")) if cfg else None
    raw, stamps = _raw_from_xdf(reader, eeg, _meas_date(reader, summary), line)
    t0 = _eeg_t0(eeg, stamps)
    events = session_events(reader, t0, (raw.n_times - 1) / raw.info["sfreq"], modality)
    columns = sorted({k for e in events for k in e.extras}, key=list(EVENT_COLUMNS).index)
    if events:
        raw.set_annotations(
            mne.Annotations(
                [e.onset for e in events],
                [e.duration for e in events],
                [e.trial_type for e in events],
                orig_time=raw.info["meas_date"],
                extras=[{c: _cell(e.extras.get(c)) for c in columns} for e in events],
            )
        )
    event_id = {d: i + 1 for i, d in enumerate(sorted({e.trial_type for e in events}))}
    bp = BIDSPath(subject=sub, session=ses, task=_label(task), run=run, datatype="eeg", root=root)
    with warnings.catch_warnings():
        # a channel that is not a voltage (a trigger channel) is written as it is, its unit n/a in channels.tsv
        warnings.filterwarnings("ignore", message="Encountered unsupported non-voltage units")
        write_raw_bids(
            raw,
            bp,
            event_id=event_id or None,
            format=eeg_format,
            allow_preload=True,
            overwrite=True,
            verbose="error",
        )
    _finish_eeg_sidecar(bp, cfg, profile, summary, modality)
    _finish_events_sidecar(bp, columns, event_id)
    _write_nibs(bp, cfg, profile, summary, modality, reader)
    _write_derivatives(root, bp, folder, xdf, reader)
    return Exported(Path(path), Path(bp.fpath), sub, ses)


def _cell(v):
    if v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _pipeline_json(reader) -> dict:
    text = reader.file_header.findtext("pipeline_json")
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def _profile_json(reader) -> dict:
    for key in ("profile_json", "device_profile_json"):
        text = reader.file_header.findtext(key)
        if text:
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                pass
    return {}


def _update_json(path: Path, changes: dict) -> None:
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _stim_text(cfg: dict, profile: dict, modality: str) -> str:
    ctl = cfg.get("controller") or {}
    device = (profile.get("device") or {}).get("name", "?")
    kind = ctl.get("kind", "?")
    return (
        f"closed-loop {NIBS_TYPE.get(modality, modality)} by closedloop: controller {kind} on feature "
        f"{ctl.get('feature', '?')}, device {device}; per-command amplitude and frequency in events.tsv "
        "(stimulus_intensity, frequency); parameters in nibs/*_nibs.json"
    )


def _finish_eeg_sidecar(bp, cfg: dict, profile: dict, summary: dict, modality: str) -> None:
    from closedloop import __version__

    sidecar = bp.copy().update(suffix="eeg", extension=".json")
    changes = {
        "TaskDescription": (cfg.get("pipeline") or {}).get("description") or "closed-loop EEG-guided stimulation",
        "RecordingType": "continuous",
        "SoftwareVersions": f"closedloop {__version__}",
    }
    if modality == "tes":  # BIDS EEG: ElectricalStimulation, ElectricalStimulationParameters
        changes["ElectricalStimulation"] = bool((summary.get("dose") or {}).get("stim_time_s", 1.0))
        changes["ElectricalStimulationParameters"] = _stim_text(cfg, profile, modality)
    _update_json(Path(sidecar.fpath), changes)


def _finish_events_sidecar(bp, columns: list[str], event_id: dict[str, int]) -> None:
    path = Path(bp.copy().update(suffix="events", extension=".json").fpath)
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    levels = {
        "stim/on": "stimulation switched on (amplitude, frequency from this onset)",
        "stim/off": "stimulation switched off",
        "stim/amplitude": "amplitude changed while on",
        "stim/frequency": "frequency changed while on",
        "stim/train": "rTMS train fired (duration: the train)",
        "stim/pulse": "one pulse of an rTMS train (from the train's rate)",
        "stim/sonication": "TUS sonication started",
        "rating": "a rating (value in the rating column)",
    }
    doc.setdefault("trial_type", {})
    doc["trial_type"]["Description"] = "What happened: stimulation, safety event (safety/<kind>), rating, annotation"
    doc["trial_type"]["Levels"] = {
        name: levels.get(
            name, f"safety layer event of kind {name[7:]}" if name.startswith("safety/") else "annotation of the file"
        )
        for name in event_id
    }
    for col in columns:
        doc[col] = {"Description": EVENT_COLUMNS[col]}
        if col == "frequency":
            doc[col]["Units"] = "Hz"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _write_nibs(bp, cfg: dict, profile: dict, summary: dict, modality: str, reader) -> Path:
    """Write ``nibs/*_nibs.tsv`` and ``*_nibs.json`` (NIBS-BIDS v6.3 layout; see docs/study.md)."""
    from closedloop import __version__

    folder = Path(bp.directory).parent / "nibs"  # mne-bids knows no nibs datatype yet
    folder.mkdir(parents=True, exist_ok=True)
    base = bp.copy().update(suffix=None, extension=None).basename
    device = profile.get("device") or {}
    ctl = cfg.get("controller") or {}
    try:  # the effective envelope: profile limits tightened by [safety] (and by the study's dose rules)
        limits = json.loads(reader.file_header.findtext("safety_envelope_json") or "{}")
    except json.JSONDecodeError:
        limits = profile.get("limits") or {}
    shape, freq = "n/a", ctl.get("frequency_Hz", "n/a")
    if modality == "tes":
        shape = "Sinusoid" if isinstance(freq, int | float) and freq > 0 else "Rectangle"
    elif modality == "tus":
        shape = "Sinusoid"
    row = {
        "nibs_event_id": f"closedloop_{modality}",
        "nibs_type": NIBS_TYPE.get(modality, modality),
        "stimulator_id": device.get("name", "n/a"),
        "nibs_element_id": "n/a",
        "stimulus_shape": shape,
        "stimulus_intensity": "n/a",
        "frequency": freq if isinstance(freq, int | float) else "n/a",
        "intensity_reference": "rMT" if modality == "rtms" else "absolute",
        "intensity_scaling": "n/a" if modality == "rtms" else "absolute",
        "stimulus_description": "set per command by the closed-loop controller: see events.tsv",
    }
    tsv = folder / f"{base}_nibs.tsv"
    tsv.write_text("\t".join(row) + "\n" + "\t".join(str(v) for v in row.values()) + "\n", encoding="utf-8")
    events_uri = (
        "bids::" + Path(bp.copy().update(suffix="events", extension=".tsv").fpath).relative_to(Path(bp.root)).as_posix()
    )
    unit = {"tes": "mA", "rtms": "%rMT", "tus": "W/cm^2"}.get(modality, "n/a")
    doc = {
        "NIBSDescription": _stim_text(cfg, profile, modality),
        "ConcurrentModalities": ["eeg"],
        "IntendedFor": events_uri,
        "TaskName": bp.task,
        "StimulatorSet": {
            "StimulatorID": device.get("name", "n/a"),
            "Manufacturer": "n/a",
            "ManufacturerModelName": device.get("description") or device.get("name", "n/a"),
            "SoftwareVersion": f"closedloop {__version__} (adapter {device.get('adapter', '?')})",
        },
        "nibs_event_id": {"Description": "Stimulation parameter set; rows of events.tsv with this id used it"},
        "nibs_type": {"Levels": {NIBS_TYPE.get(modality, modality): f"{modality} delivered by closedloop"}},
        "stimulator_id": {"Description": "Links to StimulatorSet.StimulatorID"},
        "stimulus_shape": {"Description": "Waveform shape of the base stimulus"},
        "stimulus_intensity": {
            "Description": "n/a: set per command by the controller; the delivered values are the "
            "stimulus_intensity column of the EEG events.tsv",
            "Units": unit,
        },
        "frequency": {"Description": "Stimulation frequency configured in the pipeline", "Units": "Hz"},
        "ClosedLoopParameters": _closed_loop_parameters(cfg, profile, summary, limits, reader),
    }
    (folder / f"{base}_nibs.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return tsv


def _closed_loop_parameters(cfg: dict, profile: dict, summary: dict, limits: dict, reader) -> dict:
    """Return the closed-loop block (its name is proposed in bids-specification#2417; its fields are closedloop's)."""
    feats = cfg.get("features") or {}
    src = cfg.get("source") or {}
    sfreq = src.get("sfreq")
    hop = feats.get("hop_samples")
    window = feats.get("window_samples")
    lat = summary.get("latency_ms") or {}
    return {
        "Software": {"Name": "closedloop", "Version": reader.file_header.findtext("closedloop_version") or "?"},
        "Pipeline": (cfg.get("pipeline") or {}).get("name"),
        "SignalSource": {k: src.get(k) for k in ("kind", "name", "type", "sfreq", "channels") if src.get(k)},
        "Preprocessing": cfg.get("preprocess") or {},
        "Features": {
            **feats,
            "WindowDuration": window / sfreq if window and sfreq else None,
            "UpdateInterval": hop / sfreq if hop and sfreq else None,
        },
        "Controller": cfg.get("controller") or {},
        "SafetyLimits": {
            name: {"Value": lim.get("value"), "Units": lim.get("unit", ""), "Source": lim.get("source", "")}
            for name, lim in limits.items()
        },
        "SafetyOverrides": {k: v for k, v in (cfg.get("safety") or {}).items() if v is not None},
        "LoopLatency": {
            "Median": lat.get("median"),
            "P99": lat.get("p99"),
            "Max": lat.get("max"),
            "Units": "ms",
            "Description": "chunk arrival to command issued to the adapter (summary.json latency_ms)",
        },
        "StopReason": summary.get("stop_reason"),
        "Dose": summary.get("dose") or {},
    }


def _write_derivatives(root: Path, bp, folder: Path, xdf: Path, reader) -> None:
    from closedloop import __version__

    deriv = root / "derivatives" / "closedloop"
    desc = deriv / "dataset_description.json"
    if not desc.is_file():
        deriv.mkdir(parents=True, exist_ok=True)
        desc.write_text(
            json.dumps(
                {
                    "Name": "closedloop session records",
                    "BIDSVersion": "1.10.0",
                    "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": "closedloop", "Version": __version__}],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    rel = Path(bp.directory).relative_to(root)
    target = deriv / rel
    target.mkdir(parents=True, exist_ok=True)
    stem = bp.copy().update(suffix=None, extension=None).basename
    toml = reader.file_header.findtext("pipeline_toml") or ""
    if toml:
        (target / f"{stem}_pipeline.toml").write_text(toml, encoding="utf-8")
    cfg = reader.file_header.findtext("pipeline_json")
    if cfg:
        (target / f"{stem}_pipeline.json").write_text(json.dumps(json.loads(cfg), indent=2) + "\n", encoding="utf-8")
    for name, suffix in (("summary.json", "summary.json"), ("report.html", "report.html")):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, target / f"{stem}_{suffix}")
    source = root / "sourcedata" / rel.parent
    source.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(xdf, source / f"{stem}_session.xdf")


def _write_bidsignore(root: Path) -> None:
    """List what the BIDS validator does not know yet: the NIBS-BIDS (BEP037) ``nibs/`` folders."""
    path = root / ".bidsignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if "**/nibs" not in lines:  # the form bids-validator 3 matches at any depth
        lines.append("**/nibs")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
