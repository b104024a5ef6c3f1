"""The ``closedloop`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Closed-loop EEG-guided brain stimulation over Lab Streaming Layer.",
)
out = Console()
err = Console(stderr=True)


def _load(pipeline: Path):
    from closedloop.config import PipelineError, load_pipeline

    try:
        return load_pipeline(pipeline)
    except PipelineError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


def _envelope_table(resolved) -> Table:
    table = Table(title=f"Safety envelope — {resolved.profile.device.name} ({resolved.profile.device.modality})")
    table.add_column("limit")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("source", overflow="fold")
    for name, lim in resolved.envelope().items():
        table.add_row(name, f"{lim['value']:g}", str(lim["unit"]), str(lim["source"]))
    return table


@app.command()
def check(pipeline: Path = typer.Argument(..., help="pipeline TOML file")) -> None:
    """Validate a pipeline and print it resolved, with its effective safety envelope."""
    from closedloop.config import feature_names

    resolved = _load(pipeline)
    cfg = resolved.config
    out.print(f"[bold green]ok[/] {pipeline} — pipeline [bold]{cfg.pipeline.name}[/]")
    out.print(f"device profile: {resolved.profile.path}")
    out.print(
        f"features: {', '.join(feature_names(cfg))}  "
        f"(window {cfg.features.window_samples} / hop {cfg.features.hop_samples} samples at {cfg.sfreq:g} Hz)"
    )
    shown = cfg.model_dump(mode="json")
    if shown["controller"].get("blinded"):  # a blinded schedule: the console does not show the arm
        shown["controller"]["arm"] = "(blinded)"
    out.print_json(json.dumps(shown))
    out.print(_envelope_table(resolved))


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline TOML file"),
    duration: float = typer.Option(30.0, "--duration", "-d", min=0.1, help="session length (s)"),
    out_dir: Path | None = typer.Option(None, "--out", help="output folder (default sessions/<time>-<name>)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line"),
) -> None:
    """Run a closed-loop session and write summary.json."""
    from closedloop.live.runtime import LiveSession, default_out_dir
    from closedloop.sources import SourceError

    resolved = _load(pipeline)
    folder = out_dir or default_out_dir(resolved)
    err.print(f"closedloop: running [bold]{resolved.config.pipeline.name}[/] for {duration:g} s → {folder}")
    try:
        summary = LiveSession(resolved, duration, folder, show_status=not quiet).run()
    except (SourceError, OSError) as e:  # no stream, or an output folder that cannot hold the recording
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(3) from None
    out.print_json(json.dumps(summary))
    err.print(f"summary written to {folder / 'summary.json'} — stop reason: {summary['stop_reason']}")


@app.command()
def synth(
    name: str = typer.Option("closedloop-synth", help="LSL stream name"),
    source_id: str | None = typer.Option(None, "--source-id", help="LSL source_id (default closedloop-synth-NAME)"),
    channels: int = typer.Option(32, min=1, max=512, help="number of EEG channels"),
    rate: float = typer.Option(500.0, min=1.0, max=20000.0, help="sampling rate (Hz)"),
    seed: int = typer.Option(0, help="random seed"),
    chunk: int = typer.Option(10, min=1, help="samples per pushed chunk"),
    duration: float | None = typer.Option(None, help="stop after this many seconds (default: Ctrl-C)"),
) -> None:
    """Publish synthetic EEG (and a marker stream) over LSL."""
    from closedloop.synthetic.outlet import run_synth

    err.print(f"closedloop synth: {channels} ch at {rate:g} Hz as LSL stream {name!r} (Ctrl-C to stop)")
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


@app.command()
def devices(
    name: str | None = typer.Argument(None, help="show only this profile (name or path)"),
) -> None:
    """List adapters (built-in and from entry points) and device profiles with their limits."""
    from closedloop.adapters import adapter_factory, available_adapters
    from closedloop.config.profile import device_search_path, find_profile, load_profile

    adapters = Table(title="Adapters")
    adapters.add_column("adapter")
    adapters.add_column("modalities")
    adapters.add_column("from")
    adapters.add_column("what it drives", overflow="fold")
    for adapter, origin in available_adapters().items():
        try:
            factory = adapter_factory(adapter)
            modalities = ", ".join(getattr(factory, "modalities", ("tes", "rtms", "tus")))
            doc = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not hide the others
            modalities, doc = "?", f"[red]cannot load: {e}[/]"
        adapters.add_row(adapter, modalities, origin, doc)
    if name is None:
        out.print(adapters)
        out.print(f"profile folders: {', '.join(str(p) for p in device_search_path())}")
        files, seen = [], set()
        for folder in device_search_path():
            for f in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
                if f.stem not in seen:
                    seen.add(f.stem)
                    files.append(f)
    else:
        try:
            files = [find_profile(name)]
        except FileNotFoundError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None
    known = available_adapters()
    for f in files:
        try:
            prof = load_profile(f)
        except Exception as e:  # noqa: BLE001 - show why a profile is unusable, then go on
            out.print(f"[bold red]invalid profile[/] {f}: {e}", highlight=False)
            continue
        note = "" if prof.device.adapter in known else " [red](adapter not installed)[/]"
        table = Table(
            title=f"{prof.device.name} — {prof.device.modality}, adapter {prof.device.adapter}{note} ({prof.path})",
            caption=prof.device.description or None,
        )
        table.add_column("limit")
        table.add_column("value", justify="right")
        table.add_column("unit")
        table.add_column("source", overflow="fold")
        for n, lim in prof.limits.items():
            table.add_row(n, f"{lim.value:g}", lim.unit, lim.source)
        out.print(table)
        if prof.adapter_options:
            opts = ", ".join(f"{k} = {v!r}" for k, v in prof.adapter_options.items())
            out.print(f"  adapter_options: {opts}", highlight=False)


@app.command()
def replay(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="recording: XDF, EDF, BDF, FIF, BrainVision, EEGLAB..."
    ),
    pipeline: Path = typer.Option(..., "--pipeline", "-p", help="pipeline TOML file"),
    out_dir: Path | None = typer.Option(None, "--out", help="output folder (default sessions/<time>-replay-<name>)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
) -> None:
    """Run a pipeline offline over a recording as fast as the CPU allows (session.xdf, summary.json, report.html)."""
    from datetime import datetime

    from closedloop.offline.files import RecordingError
    from closedloop.offline.replay import replay as run_replay

    resolved = _load(pipeline)
    folder = out_dir or Path(resolved.config.output.folder) / (
        f"{datetime.now():%Y%m%d-%H%M%S}-replay-{resolved.config.pipeline.name}"
    )
    try:
        result = run_replay(file, resolved, folder, progress=not quiet, report=not no_report)
    except (RecordingError, FileExistsError, OSError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(3) from None
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print_json(json.dumps(result.summary, default=str))
    err.print(
        f"replayed {result.duration_s:.1f} s in {result.wall_s:.2f} s ({result.realtime_factor:.0f}x real time)"
        f" → {folder}"
    )


@app.command()
def play(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="recording: XDF or any format MNE reads"),
    speed: float = typer.Option(1.0, "--speed", min=0.001, help="pace as a multiple of real time"),
    loop: bool = typer.Option(False, "--loop", help="start again at the end (Ctrl-C stops)"),
    name: str | None = typer.Option(None, "--name", help="LSL stream name (default: the recording's)"),
    source_id: str | None = typer.Option(None, "--source-id", help="LSL source_id (default closedloop-play-NAME)"),
    wait_consumer: float = typer.Option(
        0.0, "--wait-consumer", min=0.0, help="wait up to this many seconds for a consumer before starting"
    ),
) -> None:
    """Publish a recording as LSL streams (EEG plus a marker stream of its annotations)."""
    from closedloop.offline.files import RecordingError
    from closedloop.offline.play import play as run_play

    def started(stats) -> None:
        err.print(
            f"closedloop play: {file} as LSL streams {stats.name!r} and {stats.marker_name!r} "
            f"at {speed:g}x{' (looping)' if loop else ''}",
            highlight=False,
        )

    try:
        stats = run_play(file, speed, loop, name, source_id, wait_consumer_s=wait_consumer, on_start=started)
    except RecordingError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(3) from None
    err.print(f"sent {stats.samples} samples and {stats.markers} markers in {stats.wall_s:.1f} s")


@app.command()
def sweep(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="recordings"),
    pipeline: Path = typer.Option(..., "--pipeline", "-p", help="pipeline TOML file"),
    grid: list[str] = typer.Option([], "--grid", "-g", help="KEY=V1,V2,... (repeat; cartesian product)"),
    out_csv: Path = typer.Option(Path("sweep.csv"), "--out", help="CSV table of outcome metrics"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address (default: local processes)"),
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
) -> None:
    """Replay recordings with every combination of parameter values; write a CSV of outcome metrics."""
    from closedloop.config import PipelineError
    from closedloop.offline.sweep import parse_grid
    from closedloop.offline.sweep import sweep as run_sweep

    def split(text: str | None) -> list[str] | None:
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    try:
        parsed = parse_grid(grid)
        target = None
        if band:
            low, high = (float(x) for x in band.split(","))
            target = (low, high)
        rows = run_sweep(
            files,
            pipeline,
            parsed,
            scheduler=scheduler,
            workers=workers,
            progress=not quiet,
            band=target,
            states=split(states),
            stim_states=split(stim_states),
            csv_path=out_csv,
        )
    except PipelineError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    except (ValueError, FileNotFoundError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    failed = [r for r in rows if r.get("error")]
    err.print(f"{len(rows)} runs → {out_csv}" + (f" ({len(failed)} failed: see the error column)" if failed else ""))


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
    from rich.markup import escape

    from closedloop.recording import repair_xdf, repaired_path, scan_xdf

    if in_place and output is not None:
        err.print("[bold red]error:[/] give either --in-place or --output, not both", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        report = scan_xdf(file) if dry_run else repair_xdf(file, output, in_place=in_place)
    except (ValueError, OSError) as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"{escape(str(file))} — {'would keep' if dry_run else 'kept'}")
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
            escape(s.name),
            str(s.sample_count),
            "" if s.first_timestamp is None else f"{s.first_timestamp:.3f}",
            "" if s.last_timestamp is None else f"{s.last_timestamp:.3f}",
            footer,
        )
    out.print(table)
    if report.ok:
        out.print(f"{escape(str(file))}: intact, nothing to do", highlight=False, soft_wrap=True)
        return
    verb = "would drop" if dry_run else "dropped"
    shown = report.dropped[:20]
    for d in shown:
        out.print(f"  {verb} {escape(str(d))}", highlight=False, soft_wrap=True)
    if len(report.dropped) > len(shown):
        out.print(f"  ... and {len(report.dropped) - len(shown)} more ranges", highlight=False, soft_wrap=True)
    notes = [f"{verb} {report.bytes_dropped} bytes in {len(report.dropped)} range(s)"]
    if report.footers_added:
        notes.append(f"{'would add' if dry_run else 'added'} footers for streams {report.footers_added}")
    if report.header_rebuilt:
        notes.append("file header rebuilt")
    if report.magic_restored:
        notes.append("magic bytes restored")
    out.print(f"{escape(str(file))}: " + "; ".join(notes), highlight=False, soft_wrap=True)
    if dry_run:
        target = file if in_place else (output or repaired_path(file))
        out.print(f"would write {escape(str(target))} ({report.bytes_after} bytes)", highlight=False, soft_wrap=True)
        return
    out.print(f"wrote {escape(str(report.out_path))} ({report.bytes_after} bytes)", highlight=False, soft_wrap=True)
    if report.backup_path:
        out.print(f"original kept as {escape(str(report.backup_path))}", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
