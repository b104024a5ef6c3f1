"""The ``closedloop`` command.

Bad input — a pipeline, a profile, an argument, a missing file — ends with a
one-line ``error: ...`` (every problem of a pipeline listed) and exit code 2,
never a traceback; a run that cannot start or a recording that does not fit
ends with exit code 3. User-facing text is printed without Rich markup, so
``[source]`` in a message stays as written.
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

try:  # typer >= 0.24 vendors click; its errors derive from TyperException
    from typer import TyperException as _CliError
except ImportError:  # older typer: click's own
    from click import ClickException as _CliError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Closed-loop EEG-guided brain stimulation over Lab Streaming Layer.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


# --- printing ------------------------------------------------------------------------------------


def _say(console: Console, label: str, style: str, message: str) -> None:
    console.print(Text.assemble((label, style), message), soft_wrap=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    _say(err, "error: ", "bold red", message)
    raise typer.Exit(code)


def _warn(message: str) -> None:
    _say(err, "warning: ", "yellow", message)


def _note(message: str) -> None:
    err.print(Text(message), soft_wrap=True)


# --- shared options and checks -------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def _label(value: str | None) -> str | None:
    if value is not None and not _LABEL.fullmatch(value):
        raise typer.BadParameter(f"{value!r}: letters and digits only (a BIDS label), e.g. 01 or pilot3")
    return value


_SET_HELP = "override a pipeline value: KEY=VALUE (repeatable), VALUE a TOML value, checked like the file"
_PIPELINE_HELP = "pipeline TOML file, or the name of a shipped pipeline (e.g. alpha_tacs)"


def _load(pipeline: str, sets: list[str] | None = None):
    from closedloop.config import PipelineError, load_pipeline, parse_overrides

    try:
        overrides = parse_overrides(sets or [])
        return load_pipeline(pipeline, overrides)
    except (PipelineError, ValueError) as e:
        _fail(str(e))


def _print_warnings(resolved, recording=None) -> None:
    from closedloop.config import pipeline_warnings

    for w in pipeline_warnings(resolved.config):
        _warn(w)
    if recording is not None:
        line_warning = _line_warning(resolved, recording)
        if line_warning:
            _warn(line_warning)


def _line_warning(resolved, recording) -> str | None:
    from closedloop.config.validate import notch_warning
    from closedloop.offline.features import detect_line_frequency

    declared = getattr(recording, "line_freq", None)
    if declared:
        return notch_warning(resolved.config.preprocess, float(declared), f"declared in {recording.path.name}")
    detected = detect_line_frequency(recording)
    return notch_warning(resolved.config.preprocess, detected, f"detected in the spectrum of {recording.path.name}")


def _peek_source_file(resolved):
    """Open a file source's recording for ``check``'s warnings; warn (not fail) when it cannot be opened."""
    src = resolved.config.source
    if getattr(src, "kind", "") != "file" or src.path is None:
        return None
    from closedloop.offline.features import open_source_file  # loads the kernels: only for a file source

    try:
        return open_source_file(src.path, resolved)
    except Exception as e:  # noqa: BLE001 - check validates the pipeline; the recording may come later
        _warn(f"source.path: {src.path} cannot be opened now ({e})")
        return None


def _needs_device(resolved, command: str) -> None:
    cfg = resolved.config
    if not cfg.stimulates:
        _fail(
            f"{resolved.path} has no [controller] and [device]: it only extracts features "
            f"(closedloop features FILE --pipeline {Path(resolved.path).stem}); {command} needs both"
        )


def _out_folder(resolved, kind: str, participant: str | None, session: str | None) -> Path:
    """``<output.folder>/<YYYYmmdd-HHMMSS>-[replay-]<pipeline>[-sub-P][-ses-S]``."""
    name = f"{datetime.now():%Y%m%d-%H%M%S}-{kind}{resolved.config.pipeline.name}"
    name += (f"-sub-{participant}" if participant else "") + (f"-ses-{session}" if session else "")
    return Path(resolved.config.output.folder) / name


def _with_supported(fn: Callable, **kwargs) -> dict:
    """Keep the keyword arguments ``fn`` accepts (``identity``, ``on_progress``: added by newer runtimes)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params and v is not None}


def _identity(participant: str | None, session: str | None) -> dict | None:
    if participant is None and session is None:
        return None
    return {"participant": participant, "session": session}


# --- studies (docs/study.md) ----------------------------------------------------------------------

_STUDY_HELP = "study file (default: study.toml beside the pipeline, or in the folder above it)"


def _study_for(study_file: Path | None, near: str | Path | None):
    """Return the study given with --study, else the one found beside ``near`` (None: no study)."""
    from closedloop.study import StudyError, find_study, load_study

    path = study_file or find_study(near)
    if path is None:
        return None
    try:
        return load_study(path)
    except StudyError as e:
        _fail(str(e))


def _study_admit(study_file, resolved, participant, session, duration, out_dir):
    """Check the cross-session rules and record the session as started; exit 3 on a refusal."""
    from closedloop.study import LedgerError, StudyRefusal
    from closedloop.study.session import StudyRun

    study = _study_for(study_file, resolved.path)
    if study is None:
        return None
    if participant is None:
        _fail(f"--participant: required for a session of study {study.name!r} ({study.path})")
    try:
        run = StudyRun.admit(study, resolved, participant, session, duration, out_dir)
    except (StudyRefusal, LedgerError) as e:
        _fail(str(e), 3)
    _note(f"study {study.name}: sub-{run.participant} ses-{run.session} admitted (ledger #{run.admission.entry_id})")
    for line in run.admission.notes:
        _say(err, "note: ", "yellow", line)
    return run


def _study_abandon(run, reason: str) -> None:
    from closedloop.study import LedgerError

    try:
        run.abandon(reason)
    except LedgerError as e:
        _warn(f"{e} (ledger #{run.admission.entry_id} stays 'started' and counts in full)")


def _study_finish(run, summary: dict) -> None:
    from closedloop.study import LedgerError

    try:
        run.finish(summary)
    except LedgerError as e:
        _warn(f"{e} (ledger #{run.admission.entry_id} stays 'started' and counts in full)")


def _study_replay_folder(study_file, resolved, participant, session) -> Path | None:
    study = _study_for(study_file, resolved.path)
    if study is None or participant is None:
        return None
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-replay-{resolved.config.pipeline.name}"
    return study.session_folder(participant, session or "replay", stem)


def _fmt(x: object, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _print_summary(summary: dict, folder: Path) -> None:
    """Print a compact end-of-session summary (summary.json holds everything)."""
    rows = [
        ("stop reason", str(summary.get("stop_reason", "?"))),
        (
            "duration",
            f"{_fmt(float(summary.get('duration_s', 0.0)))} s, {summary.get('frames', 0)} frames, "
            f"{summary.get('commands_applied', 0)} commands",
        ),
    ]
    dose = {k: v for k, v in (summary.get("dose") or {}).items() if v}
    parts = [f"{k} {_fmt(v)}" for k, v in dose.items()] or [f"stim_time_s {_fmt(summary.get('stim_time_s', 0.0))}"]
    if summary.get("amplitude_max_mA"):
        parts.append(f"max {_fmt(float(summary['amplitude_max_mA']))} mA")
    rows.append(("dose", ", ".join(parts)))
    flags = summary.get("flags", summary.get("quality_flags"))
    if isinstance(flags, dict):  # frames per quality flag (when the session counts them)
        counts = {k: v for k, v in flags.items() if isinstance(v, int | float) and v}
        rows.append(("flags", ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    events = {k: v for k, v in (summary.get("safety_events") or {}).items() if v}
    if events or summary.get("watchdog_trips"):
        text = ", ".join(f"{k} {v}" for k, v in events.items())
        if summary.get("watchdog_trips"):
            text += f"{', ' if text else ''}watchdog trips {summary['watchdog_trips']}"
        rows.append(("safety", text))
    lat = summary.get("latency_ms") or {}
    if lat.get("median") is not None:
        rows.append(("latency", f"median {_fmt(lat['median'])} ms, p99 {_fmt(lat.get('p99'))} ms"))
    if summary.get("realtime_factor"):
        rows.append(("speed", f"{summary['realtime_factor']:.0f}x real time"))
    files = [f.name for f in sorted(folder.glob("*")) if f.is_file()] if folder.is_dir() else []
    rows.append(("files", f"{folder}: {', '.join(files) or 'none'}"))
    for warning in (summary.get("warnings") or [])[:3]:
        rows.append(("warning", str(warning)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.print(Text.assemble((f"{key:<{width}}  ", "bold"), value), soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from closedloop import __version__

        out.print(f"closedloop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Closed-loop EEG-guided brain stimulation over Lab Streaming Layer."""


# --- commands ------------------------------------------------------------------------------------


def _envelope_table(resolved) -> Table:
    table = Table(title=f"Safety envelope — {resolved.profile.device.name} ({resolved.profile.device.modality})")
    table.add_column("limit")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("source", overflow="fold")
    for name, lim in resolved.envelope().items():
        table.add_row(name, f"{lim['value']:g}", str(lim["unit"]), Text(str(lim["source"])))
    return table


@app.command()
def check(
    pipeline: str = typer.Argument(..., help=_PIPELINE_HELP),
    sets: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help=_SET_HELP),
) -> None:
    """Validate a pipeline and print it resolved, with its effective safety envelope."""
    from closedloop.config import feature_names

    resolved = _load(pipeline, sets)
    cfg = resolved.config
    _say(out, "ok ", "bold green", f"{resolved.path} — pipeline {cfg.pipeline.name}")
    out.print(Text(f"device profile: {resolved.profile.path if resolved.profile else 'none (features only)'}"))
    out.print(
        Text(
            f"features: {', '.join(feature_names(cfg))}  "
            f"(window {cfg.features.window_samples} / hop {cfg.features.hop_samples} samples at {cfg.sfreq:g} Hz)"
        )
    )
    _print_warnings(resolved, _peek_source_file(resolved))
    shown = cfg.model_dump(mode="json", exclude_none=True)
    if (shown.get("controller") or {}).get("blinded"):  # a blinded schedule: the console does not show the arm
        shown["controller"]["arm"] = "(blinded)"
    out.print_json(json.dumps(shown))
    if resolved.profile is not None:
        out.print(_envelope_table(resolved))


@app.command()
def run(
    pipeline: str = typer.Argument(..., help=_PIPELINE_HELP),
    duration: float = typer.Option(30.0, "--duration", "-d", min=0.1, callback=_finite, help="session length (s)"),
    out_dir: Path | None = typer.Option(
        None, "--out", help="output folder (default <output.folder>/<time>-<pipeline>[-sub-P][-ses-S])"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line"),
    sets: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help=_SET_HELP),
    participant: str | None = typer.Option(None, "--participant", callback=_label, help="participant label"),
    session: str | None = typer.Option(None, "--session", callback=_label, help="session label"),
    study_file: Path | None = typer.Option(None, "--study", dir_okay=False, help=_STUDY_HELP),
    dashboard: bool = typer.Option(False, "--dashboard", help="serve the live dashboard in the browser (printed URL)"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="dashboard port (0: any free port)"),
    dashboard_host: str | None = typer.Option(
        None,
        "--dashboard-host",
        help="serve the dashboard on this address instead of 127.0.0.1 (implies --dashboard; a token is then needed)",
    ),
) -> None:
    """Run a closed-loop session: session.xdf, summary.json and report.html in the output folder."""
    from closedloop.live.runtime import LiveSession
    from closedloop.sources import SourceError

    options = _dashboard_options(dashboard or dashboard_host is not None, dashboard_host, port)
    resolved = _load(pipeline, sets)
    _needs_device(resolved, "run")
    if getattr(resolved.config.source, "kind", "") == "file":
        _fail(
            f"{resolved.path}: [source] kind = 'file' is replayed, not run live: closedloop replay --pipeline "
            f"{pipeline} (or run it live with --set source.kind=lsl and the stream's keys)"
        )
    _print_warnings(resolved)
    study_run = _study_admit(study_file, resolved, participant, session, duration, out_dir)  # before anything starts
    if study_run is not None:
        resolved, participant, session = study_run.tighten(resolved), study_run.participant, study_run.session
    folder = study_run.folder if study_run is not None else out_dir or _out_folder(resolved, "", participant, session)
    _note(f"closedloop: running {resolved.config.pipeline.name} for {duration:g} s → {folder}")
    kwargs = _with_supported(
        LiveSession.__init__,
        identity=study_run.identity if study_run is not None else _identity(participant, session),
        on_progress=lambda line: _note(str(line)),
        dashboard=options,
    )
    try:
        summary = LiveSession(resolved, duration, folder, show_status=not quiet, **kwargs).run()
    except (SourceError, OSError) as e:  # no stream, or an output folder that cannot hold the recording
        if study_run is not None:  # nothing was armed: the session does not count
            _study_abandon(study_run, f"did not start: {e}")
        _fail(str(e), 3)
    if study_run is not None:
        _study_finish(study_run, summary)
    _print_summary(summary, folder)


def _dashboard_options(wanted: bool, host: str | None, port: int):
    """Return the dashboard's options (None: no dashboard); fail with the fix when its extra is missing."""
    if not wanted:
        return None
    from closedloop.live.dashboard.server import DashboardOptions, DashboardUnavailable, require

    try:
        require()
    except DashboardUnavailable as e:
        _fail(str(e))
    if host is not None and not host.strip():
        _fail("--dashboard-host: give an address such as 0.0.0.0 or 192.168.1.20")
    return DashboardOptions(host=host or "127.0.0.1", port=port)


@app.command()
def view(
    folder: Path = typer.Argument(..., help="a session folder written by closedloop run (or its session.xdf)"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="port (0: any free port)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to serve on (not loopback: a token is needed)"),
    no_browser: bool = typer.Option(False, "--no-browser", help="print the URL only; do not open a browser"),
) -> None:
    """Open the dashboard on a recorded session, with a timeline to scrub (Ctrl-C ends it)."""
    import threading
    import webbrowser

    options = _dashboard_options(True, host, port)
    from closedloop.live.dashboard.recorded import RecordedBackend, RecordedSession
    from closedloop.live.dashboard.server import DashboardServer, DashboardUnavailable

    try:
        recorded = RecordedSession(folder)
    except ValueError as e:
        _fail(str(e))
    try:
        server = DashboardServer(options).start(RecordedBackend(recorded))
    except DashboardUnavailable as e:
        _fail(str(e), 3)
    _note(f"closedloop view: {recorded.path} ({recorded.end_s:.1f} s) at {server.url} (Ctrl-C to stop)")
    if not no_browser:
        webbrowser.open(server.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command()
def synth(
    name: str = typer.Option("closedloop-synth", help="LSL stream name"),
    source_id: str | None = typer.Option(None, "--source-id", help="LSL source_id (default closedloop-synth-NAME)"),
    channels: int = typer.Option(32, min=1, max=512, help="number of EEG channels"),
    rate: float = typer.Option(500.0, min=1.0, max=20000.0, callback=_finite, help="sampling rate (Hz)"),
    seed: int = typer.Option(0, help="random seed"),
    chunk: int = typer.Option(10, min=1, max=100_000, help="samples per pushed chunk"),
    duration: float | None = typer.Option(
        None, min=0.0, callback=_finite, help="stop after this many seconds (default: Ctrl-C)"
    ),
) -> None:
    """Publish synthetic EEG (and a marker stream) over LSL."""
    from closedloop.synthetic.outlet import run_synth

    _note(f"closedloop synth: {channels} ch at {rate:g} Hz as LSL stream {name!r} (Ctrl-C to stop)")
    try:
        run_synth(
            name=name,
            source_id=source_id,
            n_channels=channels,
            sfreq=rate,
            seed=seed,
            chunk_size=chunk,
            duration_s=duration,
        )
    except KeyboardInterrupt:
        pass


def _folder_origin(folder: Path) -> str:
    """Why a folder is on the profile search path (for ``closedloop devices``)."""
    import os

    from closedloop.config.profile import DEVICES_ENV, packaged_folder, user_devices_folder

    env = [Path(p).resolve() for p in os.environ.get(DEVICES_ENV, "").split(os.pathsep) if p]
    packaged = packaged_folder("devices")
    if folder in env:
        return DEVICES_ENV
    if folder == user_devices_folder().resolve():
        return "user folder"
    if packaged is not None and folder == packaged.resolve():
        return "shipped with closedloop"
    return "project (./devices, or beside a pipeline)"


@app.command()
def devices(
    name: str | None = typer.Argument(None, help="show only this profile (name or path)"),
) -> None:
    """List adapters, the profile folders in lookup order, and every device profile with its limits."""
    from closedloop.adapters import adapter_factory, available_adapters
    from closedloop.config.profile import device_search_path, find_profile, load_profile, profile_files

    adapters = Table(title="Adapters")
    adapters.add_column("adapter")
    adapters.add_column("modalities")
    adapters.add_column("from")
    adapters.add_column("what it drives", overflow="fold")
    for adapter, origin in available_adapters().items():
        try:
            factory = adapter_factory(adapter)
            modalities = ", ".join(getattr(factory, "modalities", ("tes", "rtms", "tus")))
            doc = Text((factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else "")
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not hide the others
            modalities, doc = "?", Text(f"cannot load: {e}", style="red")
        adapters.add_row(adapter, modalities, origin, doc)
    if name is None:
        out.print(adapters)
        out.print("Profile folders, searched in this order (the first profile of a name wins):")
        for i, folder in enumerate(device_search_path(), 1):
            state = "" if folder.is_dir() else "  (absent)"
            out.print(Text(f"  {i}. {folder}  [{_folder_origin(folder)}]{state}"))
        files = profile_files()
    else:
        try:
            files = [(None, find_profile(name))]
        except FileNotFoundError as e:
            _fail(str(e))
    known = available_adapters()
    for _, f in files:
        try:
            prof = load_profile(f)
        except Exception as e:  # noqa: BLE001 - show why a profile is unusable, then go on
            _say(out, "invalid profile ", "bold red", f"{f}: {e}")
            continue
        note = "" if prof.device.adapter in known else " (adapter not installed)"
        table = Table(
            title=Text(f"{prof.device.name} — {prof.device.modality}, adapter {prof.device.adapter}{note} ({f})"),
            caption=Text(prof.device.description) if prof.device.description else None,
        )
        table.add_column("limit")
        table.add_column("value", justify="right")
        table.add_column("unit")
        table.add_column("source", overflow="fold")
        for n, lim in prof.limits.items():
            table.add_row(n, f"{lim.value:g}", lim.unit, Text(lim.source))
        out.print(table)
        if prof.adapter_options:
            opts = ", ".join(f"{k} = {v!r}" for k, v in prof.adapter_options.items())
            out.print(Text(f"  adapter_options: {opts}"))


def _recording_path(file: Path | None, resolved, command: str) -> Path:
    src = resolved.config.source
    if file is None:
        path = getattr(src, "path", None)
        if path is None:
            _fail(f"{command}: give a recording FILE, or a pipeline whose [source] (kind = 'file') has a path")
        file = Path(path)
    if not file.is_file():
        _fail(f"recording not found: {file}")
    return file


def _open_file(file: Path, resolved, encoding: str | None):
    from closedloop.offline.features import open_source_file
    from closedloop.offline.files import RecordingError

    if not file.is_file():
        _fail(f"recording not found: {file}")
    try:
        return open_source_file(file, resolved, encoding)
    except (RecordingError, OSError, ValueError, UnicodeDecodeError) as e:
        _fail(f"{file}: {e}", 3)


_FILE_HELP = "recording: XDF, EDF, BDF, FIF, BrainVision, EEGLAB... (default: the pipeline's [source] path)"
_ENCODING_HELP = "text encoding of EDF+ annotations (e.g. latin1)"
_PLANT_HELP = (
    "a fitted plant (closedloop identify): the feature it models follows the modelled effect of the replay's "
    "commands (closed loop offline; assumptions in docs/pain-modelling.md and report.html)"
)


@app.command()
def replay(
    file: Path | None = typer.Argument(None, dir_okay=False, help=_FILE_HELP),
    pipeline: str = typer.Option(..., "--pipeline", "-p", help=_PIPELINE_HELP),
    out_dir: Path | None = typer.Option(
        None, "--out", help="output folder (default <output.folder>/<time>-replay-<pipeline>[-sub-P][-ses-S])"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
    sets: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help=_SET_HELP),
    encoding: str | None = typer.Option(None, "--encoding", help=_ENCODING_HELP),
    participant: str | None = typer.Option(None, "--participant", callback=_label, help="participant label"),
    session: str | None = typer.Option(None, "--session", callback=_label, help="session label"),
    study_file: Path | None = typer.Option(
        None, "--study", dir_okay=False, help=_STUDY_HELP + "; a replay goes under its root, not in its ledger"
    ),
    plant: Path | None = typer.Option(None, "--plant", dir_okay=False, help=_PLANT_HELP),
) -> None:
    """Run a pipeline offline over a recording as fast as the CPU allows (session.xdf, summary.json, report.html)."""
    from closedloop.offline.files import RecordingError
    from closedloop.offline.replay import replay as run_replay

    resolved = _load(pipeline, sets)
    _needs_device(resolved, "replay")
    fitted = _read_plant(plant, resolved) if plant is not None else None
    file = _recording_path(file, resolved, "replay")
    rec = _open_file(file, resolved, encoding)
    _print_warnings(resolved, rec)
    folder = out_dir or _study_replay_folder(study_file, resolved, participant, session)
    folder = folder or _out_folder(resolved, "replay-", participant, session)
    kwargs = _with_supported(run_replay, identity=_identity(participant, session), plant=plant)
    try:
        result = run_replay(file, resolved, folder, progress=not quiet, report=not no_report, recording=rec, **kwargs)
    except (RecordingError, FileExistsError, OSError) as e:
        _fail(str(e), 3)
    if fitted is not None:
        _note(f"closed loop through the plant {plant} ({_plant_line(fitted)}); assumptions in report.html")
    for note in result.notes:
        _say(err, "note: ", "yellow", note)
    _print_summary(result.summary, folder)
    _note(
        f"replayed {result.duration_s:.1f} s in {result.wall_s:.2f} s ({result.realtime_factor:.0f}x real time)"
        f" → {folder}"
    )


@app.command()
def features(
    file: Path | None = typer.Argument(None, dir_okay=False, help=_FILE_HELP),
    pipeline: str = typer.Option(..., "--pipeline", "-p", help=_PIPELINE_HELP + "; no [controller]/[device] needed"),
    out_csv: Path | None = typer.Option(None, "--out", help="CSV of the frames (time, features, flags)"),
    sets: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help=_SET_HELP),
    encoding: str | None = typer.Option(None, "--encoding", help=_ENCODING_HELP),
) -> None:
    """Extract a pipeline's features from a recording offline, with no controller and no device."""
    from closedloop.offline.features import extract_features
    from closedloop.offline.files import RecordingError

    resolved = _load(pipeline, sets)
    file = _recording_path(file, resolved, "features")
    rec = _open_file(file, resolved, encoding)
    _print_warnings(resolved, rec)
    try:
        table = extract_features(file, resolved, recording=rec)
    except (RecordingError, OSError) as e:
        _fail(str(e), 3)
    summary = Table(title=Text(f"{file.name}: {len(table)} frames"))
    summary.add_column("feature")
    for col in ("mean", "sd", "min", "max"):
        summary.add_column(col, justify="right")
    import numpy as np

    for i, n in enumerate(table.feature_names):
        v = table.values[:, i]
        v = v[np.isfinite(v)]
        stats = (v.mean(), v.std(), v.min(), v.max()) if v.size else (math.nan,) * 4
        summary.add_row(n, *(f"{x:.4g}" for x in stats))
    out.print(summary)
    counts = table.flag_counts()
    out.print(Text("flags: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none")))
    if out_csv is not None:
        try:
            table.write_csv(out_csv)
        except OSError as e:
            _fail(f"--out {out_csv}: {e}", 3)
        _note(f"{len(table)} frames → {out_csv}")


@app.command()
def play(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="recording: XDF or any format MNE reads"),
    speed: float = typer.Option(
        1.0, "--speed", min=0.001, max=1000.0, callback=_finite, help="pace as a multiple of real time"
    ),
    loop: bool = typer.Option(False, "--loop", help="start again at the end (Ctrl-C stops)"),
    name: str | None = typer.Option(None, "--name", help="LSL stream name (default: the recording's)"),
    source_id: str | None = typer.Option(None, "--source-id", help="LSL source_id (default closedloop-play-NAME)"),
    wait_consumer: float = typer.Option(
        0.0,
        "--wait-consumer",
        min=0.0,
        callback=_finite,
        help="wait up to this many seconds for a consumer before starting",
    ),
) -> None:
    """Publish a recording as LSL streams (EEG plus a marker stream of its annotations)."""
    from closedloop.offline.files import RecordingError
    from closedloop.offline.play import play as run_play

    def started(stats) -> None:
        _note(
            f"closedloop play: {file} as LSL streams {stats.name!r} and {stats.marker_name!r} "
            f"at {speed:g}x{' (looping)' if loop else ''}"
        )

    try:
        stats = run_play(file, speed, loop, name, source_id, wait_consumer_s=wait_consumer, on_start=started)
    except RecordingError as e:
        _fail(str(e), 3)
    _note(f"sent {stats.samples} samples and {stats.markers} markers in {stats.wall_s:.1f} s")


def _check_scheduler(address: str) -> None:
    """Fail fast, naming the fix, when a Dask scheduler is not installed or cannot be reached."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        _fail("--scheduler needs Dask's distributed scheduler: pip install 'closedloop[cluster]'")
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if parts.scheme not in ("tcp", "tls") or not host or not port:
        _fail(f"--scheduler {address!r}: expected tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)")
    try:
        with socket.create_connection((host, port), timeout=3.0):
            pass
    except OSError as e:
        _fail(f"--scheduler {address}: cannot reach the Dask scheduler ({e}); is it running?")


@app.command()
def sweep(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="recordings"),
    pipeline: str = typer.Option(..., "--pipeline", "-p", help=_PIPELINE_HELP),
    grid: list[str] = typer.Option([], "--grid", "-g", help="KEY=V1,V2,... (repeat; cartesian product)"),
    out_csv: Path = typer.Option(Path("sweep.csv"), "--out", help="CSV table of outcome metrics"),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (default: local processes)"
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="local processes (default: all cores)"),
    band: str | None = typer.Option(
        None,
        "--band",
        help="LOW,HIGH target band of the controlled feature (default: the pipeline's controller.lower,upper)",
    ),
    states: str | None = typer.Option(None, "--states", help="comma-separated marker labels that name states"),
    stim_states: str | None = typer.Option(
        None, "--stim-states", help="comma-separated states during which stimulation is wanted"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    plant: Path | None = typer.Option(None, "--plant", dir_okay=False, help=_PLANT_HELP),
) -> None:
    """Replay recordings with every combination of parameter values; write a CSV of outcome metrics."""
    from closedloop.config import PipelineError, find_pipeline
    from closedloop.offline.sweep import parse_grid
    from closedloop.offline.sweep import sweep as run_sweep

    def split(text: str | None) -> list[str] | None:
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    target = None
    if band:
        try:
            low, high = (float(x) for x in band.split(","))
        except ValueError:
            _fail(f"--band {band!r}: expected LOW,HIGH, e.g. 1.3,1.55")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            _fail(f"--band {band!r}: need finite LOW < HIGH")
        target = (low, high)
    try:
        parsed = parse_grid(grid)
        path = find_pipeline(pipeline)
    except (PipelineError, ValueError) as e:
        _fail(str(e))
    base = _load(str(path))
    _needs_device(base, "sweep")
    if plant is not None:
        _read_plant(plant, base)
    if scheduler is not None:
        _check_scheduler(scheduler)
    try:
        rows = run_sweep(
            files,
            path,
            parsed,
            scheduler=scheduler,
            workers=workers,
            progress=not quiet,
            band=target,
            states=split(states),
            stim_states=split(stim_states),
            csv_path=out_csv,
            **({"plant": str(plant.resolve())} if plant is not None else {}),
        )
    except (PipelineError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    except OSError as e:  # the CSV cannot be written, or the cluster went away
        _fail(str(e), 3)
    failed = [r for r in rows if r.get("error")]
    _note(f"{len(rows)} runs → {out_csv}" + (f" ({len(failed)} failed: see the error column)" if failed else ""))


_INIT_README = """\
# closedloop project

- `pipelines/`: pipeline files (one TOML file per session design); edit a copy.
- `devices/`: device profiles. A pipeline's `[device] profile = "NAME"` is looked
  up in `devices/` beside the pipeline file or beside its folder (this folder)
  first, then in `CLOSEDLOOP_DEVICES`, the user folder and the profiles shipped
  with closedloop (`closedloop devices` prints the order). Every limit needs a
  verified source.

Check a pipeline, then run it:

    closedloop check pipelines/alpha_tacs.toml
    closedloop run pipelines/alpha_tacs.toml --duration 30 --participant 01 --session 1

Override a value without editing the file: `--set controller.lower=1.2`.
Replay a recording through a pipeline, or only extract its features:

    closedloop replay recording.xdf --pipeline pipelines/alpha_tacs.toml
    closedloop features recording.edf --pipeline pipelines/features_file.toml --out features.csv
"""


@app.command()
def init(
    folder: Path = typer.Argument(..., file_okay=False, help="folder to create (or an empty one)"),
) -> None:
    """Write a starter project: pipelines/, devices/ and a short README, all copies you edit."""
    from closedloop.config.profile import packaged_folder

    if folder.exists() and any(folder.iterdir()):
        _fail(f"{folder} is not empty; give a new or empty folder")
    sources = {name: packaged_folder(name) for name in ("pipelines", "devices")}
    missing = [name for name, src in sources.items() if src is None]
    if missing:
        _fail(f"this installation of closedloop ships no {', '.join(missing)}; reinstall it")
    try:
        for name, src in sources.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            for f in sorted(src.glob("*.toml")):
                shutil.copyfile(f, folder / name / f.name)
        (folder / "README.md").write_text(_INIT_README)
    except OSError as e:
        _fail(f"{folder}: {e}", 3)
    _note(
        f"wrote {folder}/ (pipelines/, devices/, README.md); next: closedloop check {folder}/pipelines/alpha_tacs.toml"
    )


@app.command()
def repair(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="damaged XDF file (cut short, damaged chunks)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only; write nothing"),
    in_place: bool = typer.Option(False, "--in-place", help="replace FILE, keeping the original as FILE.bak first"),
    output: Path | None = typer.Option(None, "--output", "-o", help="where to write (default NAME.repaired.xdf)"),
) -> None:
    """Write a repaired copy of a damaged XDF file: every valid chunk kept, damaged ones skipped, footers added.

    The original is never modified unless --in-place (which keeps it as FILE.bak); every byte range dropped is listed.
    """
    from closedloop.recording import repair_xdf, repaired_path, scan_xdf

    if in_place and output is not None:
        _fail("give either --in-place or --output, not both")
    try:
        report = scan_xdf(file) if dry_run else repair_xdf(file, output, in_place=in_place)
    except (ValueError, OSError) as e:
        _fail(str(e))
    table = Table(title=Text(f"{file} — {'would keep' if dry_run else 'kept'}"))
    for col in ("stream", "name", "samples", "first", "last", "footer"):
        table.add_column(col)
    for sid, s in report.streams.items():
        footer = "present"
        if sid in report.footers_replaced:
            footer = "replaced"
        elif sid in report.footers_added:
            footer = "added"
        table.add_row(
            str(sid),
            Text(s.name),
            str(s.sample_count),
            "" if s.first_timestamp is None else f"{s.first_timestamp:.3f}",
            "" if s.last_timestamp is None else f"{s.last_timestamp:.3f}",
            footer,
        )
    out.print(table)
    if report.ok:
        out.print(Text(f"{file}: intact, nothing to do"))
        return
    verb = "would drop" if dry_run else "dropped"
    shown = report.dropped[:20]
    for d in shown:
        out.print(Text(f"  {verb} {d}"))
    if len(report.dropped) > len(shown):
        out.print(Text(f"  ... and {len(report.dropped) - len(shown)} more ranges"))
    notes = [f"{verb} {report.bytes_dropped} bytes in {len(report.dropped)} range(s)"]
    if report.footers_added:
        notes.append(f"{'would add' if dry_run else 'added'} footers for streams {report.footers_added}")
    if report.header_rebuilt:
        notes.append("file header rebuilt")
    if report.magic_restored:
        notes.append("magic bytes restored")
    out.print(Text(f"{file}: " + "; ".join(notes)))
    if dry_run:
        target = file if in_place else (output or repaired_path(file))
        out.print(Text(f"would write {target} ({report.bytes_after} bytes)"))
        return
    out.print(Text(f"wrote {report.out_path} ({report.bytes_after} bytes)"))
    if report.backup_path:
        out.print(Text(f"original kept as {report.backup_path}"))


# --- study commands (docs/study.md) ---------------------------------------------------------------


def _open_study_ledger(study_file: Path | None):
    from closedloop.study import Ledger, LedgerError

    study = _study_for(study_file, None)
    if study is None:
        _fail("no study: give --study FILE (or run in the folder of its study.toml)")
    if not study.ledger_path.is_file():
        _fail(f"study {study.name}: no ledger yet at {study.ledger_path} (no session has run)", 3)
    try:
        return study, Ledger(study.ledger_path, timeout_s=study.ledger_timeout_s)
    except LedgerError as e:
        _fail(str(e), 3)


@app.command()
def sessions(
    participant: str | None = typer.Option(None, "--participant", callback=_label, help="only this participant"),
    study_file: Path | None = typer.Option(None, "--study", dir_okay=False, help="study file (default ./study.toml)"),
) -> None:
    """List the sessions of a study's ledger: identity, pipeline, device, times, stop reason, dose, ratings."""
    from closedloop.study import LedgerError
    from closedloop.study.longitudinal import dose_text

    study, ledger = _open_study_ledger(study_file)
    try:
        entries = ledger.sessions(participant)
    except LedgerError as e:
        _fail(str(e), 3)
    table = Table(title=Text(f"study {study.name} — {study.ledger_path}"))
    for col in ("#", "sub", "ses", "status", "started", "min", "pipeline", "device", "stop reason", "dose"):
        table.add_column(col)
    table.add_column("events", justify="right")
    table.add_column("rating", justify="right")
    for e in entries:
        minutes = "" if e.stopped_at is None else f"{(e.stopped_at - e.started_at) / 60:.1f}"
        rating = e.ratings.get("mean")
        table.add_row(
            str(e.id),
            e.participant,
            e.session,
            e.status,
            e.started_text(),
            minutes,
            Text(f"{e.pipeline} ({e.pipeline_sha256[:8]})"),
            Text(f"{e.device} ({e.profile_sha256[:8]})"),
            Text(e.stop_reason or ""),
            Text(dose_text(e)),
            "" if e.safety_events is None else str(e.safety_events),
            "" if rating is None else f"{rating:.3g} (n={e.ratings.get('n', 0)})",
        )
    out.print(table)
    if not entries:
        out.print(Text("no sessions" + (f" of participant {participant}" if participant else "")))


@app.command()
def bids(
    sessions_: list[Path] = typer.Argument(..., metavar="SESSION...", help="session folders (or their session.xdf)"),
    root: Path = typer.Option(..., "--root", help="BIDS dataset folder (created, or added to)"),
    task: str = typer.Option("closedloop", "--task", callback=_label, help="BIDS task label"),
    eeg_format: str = typer.Option("BrainVision", "--format", help="EEG file format: BrainVision or EDF"),
    participant: str | None = typer.Option(
        None, "--participant", callback=_label, help="participant label for a session recorded without one"
    ),
) -> None:
    """Export sessions to BIDS: EEG, events, channels, NIBS-BIDS sidecars; pipeline and summary as derivatives."""
    from closedloop.study.bids import BidsExportError, export_sessions

    if eeg_format not in ("BrainVision", "EDF"):
        _fail(f"--format {eeg_format!r}: allowed BrainVision, EDF")
    try:
        written = export_sessions(sessions_, root, task=task, eeg_format=eeg_format, participant=participant)
    except BidsExportError as e:
        _fail(str(e))
    except ImportError as e:
        _fail(f"BIDS export needs mne-bids: pip install 'closedloop[bids]' ({e})")
    except OSError as e:
        _fail(str(e), 3)
    for item in written:
        _note(f"{item.source} → {item.eeg}")
    _note(f"{len(written)} session(s) → {root} (validate: bids-validator-deno {root})")


@app.command()
def report(
    participant: str = typer.Option(..., "--participant", callback=_label, help="participant label"),
    study_file: Path | None = typer.Option(None, "--study", dir_okay=False, help="study file (default ./study.toml)"),
    out_file: Path | None = typer.Option(
        None, "--out", dir_okay=False, help="HTML file (default <root>/sub-P/report-sub-P.html)"
    ),
) -> None:
    """Write a participant's longitudinal report: features, ratings, dose and stop reasons across sessions."""
    from closedloop.study import LedgerError
    from closedloop.study.longitudinal import write_longitudinal_report

    study, ledger = _open_study_ledger(study_file)
    try:
        entries = ledger.sessions(participant, include_not_started=False)
    except LedgerError as e:
        _fail(str(e), 3)
    if not entries:
        _fail(f"--participant {participant}: no sessions in {study.ledger_path}")
    target = out_file or study.root / f"sub-{participant}" / f"report-sub-{participant}.html"
    try:
        write_longitudinal_report(entries, target, study_name=study.name)
    except OSError as e:
        _fail(f"{target}: {e}", 3)
    _note(f"{len(entries)} session(s) of sub-{participant} → {target}")


# --- pain modelling: rate, calibrate, identify, --plant (docs/pain-modelling.md) --------------------


def _read_plant(path: Path, resolved):
    """Read a plant file and check it fits the pipeline (one-line error otherwise)."""
    from closedloop.config.validate import feature_names
    from closedloop.pain.plant import read_plant

    try:
        fitted = read_plant(path)
    except ValueError as e:
        _fail(f"--plant: {e}")
    names = feature_names(resolved.config)
    if fitted.feature not in names:
        _fail(f"--plant {path}: it models {fitted.feature!r}, not a feature of this pipeline; features: {names}")
    if fitted.response == "amplitude" and not resolved.config.features.log10:
        _fail(f"--plant {path}: response 'amplitude' needs features in log10 power ([features] log10 = true)")
    return fitted


def _plant_line(p) -> str:
    unit = "relative amplitude" if p.response == "amplitude" else "feature units"
    return f"{p.feature}: gain {p.gain:.3g} {unit}/mA, tau {p.tau_s:.3g} s, delay {p.delay_s:.3g} s"


@app.command()
def rate(
    stream: str = typer.Option("pain-ratings", "--stream", help="LSL stream name (the pipeline's [ratings] stream)"),
    source_id: str | None = typer.Option(None, "--source-id", help="LSL source_id (default closedloop-rate-NAME)"),
    low: float = typer.Option(0.0, "--min", callback=_finite, help="lowest rating on the scale"),
    high: float = typer.Option(10.0, "--max", callback=_finite, help="highest rating on the scale"),
    wait_consumer: float = typer.Option(
        0.0, "--wait-consumer", min=0.0, callback=_finite, help="wait up to this long for a session to connect"
    ),
) -> None:
    """Type pain ratings (a number, then Enter; q stops) and publish each on an LSL marker stream."""
    from closedloop.pain.rate import run_rate

    if not low < high:
        _fail(f"--min {low:g} must be below --max {high:g}")
    _note(f"closedloop rate: type a rating from {low:g} to {high:g} and press Enter (q stops); stream {stream!r}")

    def lines():
        while True:
            line = sys.stdin.readline()
            if not line:
                return
            yield line

    try:
        sent = run_rate(stream, lines(), _note, (low, high), source_id, wait_consumer)
    except KeyboardInterrupt:
        sent = None
    _note(f"{sent} rating(s) sent" if sent is not None else "stopped")


@app.command()
def calibrate(
    sessions: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="recordings with EEG and ratings"),
    pipeline: str = typer.Option(..., "--pipeline", "-p", help=_PIPELINE_HELP + "; its [ratings] names the stream"),
    target: str = typer.Option("rating", "--target", help="what to predict: rating (the [ratings] stream)"),
    model: str = typer.Option("ridge", "--model", help="ridge (the rating) or logistic (rating >= --threshold)"),
    threshold: float | None = typer.Option(None, "--threshold", callback=_finite, help="logistic: the cut rating"),
    features: str | None = typer.Option(None, "--features", help="comma-separated inputs (default: every feature)"),
    lags: list[float] = typer.Option(
        [0.0], "--lag", callback=lambda v: [_finite(x) for x in v], help="lag (s), repeatable"
    ),
    rows: str = typer.Option("ratings", "--rows", help="ratings: one row per rating; frames: every frame"),
    cv: str = typer.Option("blocked", "--cv", help="blocked, forward (chaining) or sessions (leave one out)"),
    folds: int = typer.Option(5, "--folds", min=2, max=100, help="time blocks"),
    gap: float | None = typer.Option(None, "--gap", min=0.0, callback=_finite, help="purge gap (s) around test rows"),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, max=100_000, help="block-bootstrap resamples"),
    block: float = typer.Option(30.0, "--block-s", min=0.001, callback=_finite, help="bootstrap block length (s)"),
    out_file: Path = typer.Option(Path("pain_model.json"), "--out", dir_okay=False, help="the model file to write"),
    sets: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help=_SET_HELP),
) -> None:
    """Fit a per-participant model from features to pain ratings, cross-validated by time blocks."""
    from closedloop.offline.calibrate import CalibrationError
    from closedloop.offline.calibrate import calibrate as run_calibrate
    from closedloop.offline.files import RecordingError

    resolved = _load(pipeline, sets)
    if rows not in ("ratings", "frames"):
        _fail(f"--rows {rows!r}: allowed: ratings, frames")
    if cv not in ("blocked", "forward", "sessions"):
        _fail(f"--cv {cv!r}: allowed: blocked, forward, sessions")
    names = [f.strip() for f in features.split(",") if f.strip()] if features else None
    try:
        res = run_calibrate(
            sessions,
            resolved,
            target=target,
            kind=model,
            threshold=threshold,
            features=names,
            lags_s=lags,
            rows=rows,
            k=folds,
            scheme=cv,
            gap_s=gap,
            n_boot=bootstrap,
            block_s=block,
        )
    except CalibrationError as e:
        _fail(str(e))
    except (RecordingError, OSError) as e:
        _fail(str(e), 3)
    r = res.cv
    lo, hi = r.ci95
    _say(
        out,
        "cross-validated ",
        "bold",
        f"{r.score_name} = {r.score:.3f} (95 % CI {lo:.3f} to {hi:.3f}; {r.scheme} folds, {len(res.data)} rows "
        f"from {len(sessions)} session(s), {bootstrap} block-bootstrap resamples of {block:g} s)",
    )
    out.print(Text("per fold: " + ", ".join(f"{v:.3f}" for v in r.per_fold)))
    table = Table(title=Text(f"weights ({model}, standardised features; sd across folds)"))
    for col in ("feature", "lag (s)", "weight", "sd", "per unit"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    scale = res.model.scale
    for w, sc in sorted(zip(res.weights, scale), key=lambda ws: -abs(ws[0]["coef"])):
        table.add_row(
            Text(w["feature"]),
            f"{w['lag_s']:g}",
            f"{w['coef']:.4g}",
            f"{w['coef_sd_folds']:.2g}",
            f"{w['coef'] / sc:.4g}",
        )
    out.print(table)
    for note in res.data.notes[:10]:
        _say(err, "note: ", "yellow", note)
    try:
        path = res.write(out_file)
    except OSError as e:
        _fail(f"--out {out_file}: {e}", 3)
    _note(f'model → {path}; use it with [features.pain_index] model = "{path}" (the feature pain_index)')


@app.command()
def identify(
    sessions: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="closedloop session.xdf files"),
    feature: str | None = typer.Option(None, "--feature", help="the feature (default: the one the controller read)"),
    response: str = typer.Option(
        "additive", "--response", help="additive (feature units per mA) or amplitude (log10 power: 1 + x per mA)"
    ),
    max_delay: float = typer.Option(2.0, "--max-delay", min=0.0, callback=_finite, help="largest delay tried (s)"),
    noise_order: int = typer.Option(10, "--noise-order", min=0, max=100, help="AR order of the noise model"),
    decimate: float = typer.Option(1.0, "--decimate-s", min=0.0, callback=_finite, help="residual spacing (s)"),
    out_file: Path = typer.Option(Path("plant.json"), "--out", dir_okay=False, help="the plant file to write"),
) -> None:
    """Identify the stimulation → feature response (gain, time constant, delay) from recorded sessions."""
    from closedloop.offline.identify import IdentifyError
    from closedloop.offline.identify import identify as run_identify

    if response not in ("additive", "amplitude"):
        _fail(f"--response {response!r}: allowed: additive, amplitude")
    try:
        fitted = run_identify(sessions, feature, response, max_delay, noise_order, decimate)
    except IdentifyError as e:
        _fail(str(e))
    except OSError as e:
        _fail(str(e), 3)
    u = fitted.uncertainty
    rows = [
        ("gain", f"{fitted.gain:.4g}", u["gain_ci95"]),
        ("tau_s", f"{fitted.tau_s:.4g}", u["tau_s_ci95"]),
        ("delay_s", f"{fitted.delay_s:.4g}", u["delay_s_ci95"]),
    ]
    table = Table(title=Text(f"plant of {fitted.feature} ({fitted.response}), from {len(sessions)} session(s)"))
    for col in ("parameter", "estimate", "95 % CI"):
        table.add_column(col, justify="left" if col == "parameter" else "right")
    for name, est, (lo, hi) in rows:
        table.add_row(name, est, f"{lo:.4g} to {hi:.4g}")
    out.print(table)
    fit = fitted.fit
    out.print(Text(f"variance explained {fit['r2']:.3f}; innovation sd {fit['innovation_sd']:.4g}"))
    for note in fit.get("notes", [])[:10]:
        _say(err, "note: ", "yellow", note)
    try:
        out_file.write_text(fitted.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        _fail(f"--out {out_file}: {e}", 3)
    _note(f"plant → {out_file}; closed loop offline: closedloop replay FILE --pipeline P --plant {out_file}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (bad input: 2, a failed run: 3)."""
    # pydantic looks for third-party plugins by reading the entry points of every installed
    # distribution when the first model validates: 0.05-0.1 s of every command in a lab's
    # environment, and plugins would run inside a stimulation session. Off unless the user
    # sets PYDANTIC_DISABLE_PLUGINS (docs/architecture.md, configuration is schema).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="closedloop", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        _note("aborted")
        return 130
    except _CliError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out.print(Text(ctx.get_help()))
            return 0
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _say(err, "error: ", "bold red", f"{e.format_message()}{hint}")
        return 2 if ctx is not None else int(getattr(e, "exit_code", 2))
    return rv if isinstance(rv, int) else 0


def console() -> NoReturn:
    """Run the command line as the ``closedloop`` program and end the process with its exit code."""
    code = main()
    # The process ends here, and nothing it made needs collecting any more: freezing it spares the
    # interpreter's teardown a full collection over every import, the schema and a session's objects
    # (~0.1 s of `closedloop check`). Teardown still runs the exit handlers and flushes the standard
    # streams; objects left in reference cycles are not finalized, which Python does not promise at exit.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
