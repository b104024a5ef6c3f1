"""The ``closedloop`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Closed-loop EEG-guided brain stimulation over Lab Streaming Layer.")
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
    out.print(f"features: {', '.join(feature_names(cfg))}  "
              f"(window {cfg.features.window_samples} / hop {cfg.features.hop_samples} samples at {cfg.sfreq:g} Hz)")
    out.print_json(json.dumps(cfg.model_dump(mode="json")))
    out.print(_envelope_table(resolved))


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline TOML file"),
    duration: float = typer.Option(30.0, "--duration", "-d", min=0.1, help="session length (s)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default sessions/<time>-<name>)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line"),
) -> None:
    """Run a closed-loop session and write summary.json."""
    from closedloop.runtime import LiveSession, default_out_dir
    from closedloop.sources import SourceError

    resolved = _load(pipeline)
    folder = out_dir or default_out_dir(resolved)
    err.print(f"closedloop: running [bold]{resolved.config.pipeline.name}[/] for {duration:g} s → {folder}")
    try:
        summary = LiveSession(resolved, duration, folder, show_status=not quiet).run()
    except SourceError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(3) from None
    out.print_json(json.dumps(summary))
    err.print(f"summary written to {folder / 'summary.json'} — stop reason: {summary['stop_reason']}")


@app.command()
def synth(
    name: str = typer.Option("closedloop-synth", help="LSL stream name"),
    source_id: Optional[str] = typer.Option(None, "--source-id", help="LSL source_id (default closedloop-synth-NAME)"),
    channels: int = typer.Option(32, min=1, max=512, help="number of EEG channels"),
    rate: float = typer.Option(500.0, min=1.0, max=20000.0, help="sampling rate (Hz)"),
    seed: int = typer.Option(0, help="random seed"),
    chunk: int = typer.Option(10, min=1, help="samples per pushed chunk"),
    duration: Optional[float] = typer.Option(None, help="stop after this many seconds (default: Ctrl-C)"),
) -> None:
    """Publish synthetic EEG (and a marker stream) over LSL."""
    from closedloop.sources.synth_outlet import run_synth

    err.print(f"closedloop synth: {channels} ch at {rate:g} Hz as LSL stream {name!r} (Ctrl-C to stop)")
    try:
        run_synth(name=name, source_id=source_id, n_channels=channels, sfreq=rate, seed=seed, chunk_size=chunk, duration_s=duration)
    except KeyboardInterrupt:
        pass


@app.command()
def devices() -> None:
    """List adapters and device profiles with their limits."""
    from closedloop.adapters import _REGISTRY
    from closedloop.devices import device_search_path, list_profiles

    out.print(f"adapters: {', '.join(sorted(_REGISTRY))}")
    out.print(f"profile folders: {', '.join(str(p) for p in device_search_path())}")
    for prof in list_profiles():
        table = Table(title=f"{prof.device.name} — {prof.device.modality}, adapter {prof.device.adapter} ({prof.path})")
        table.add_column("limit")
        table.add_column("value", justify="right")
        table.add_column("unit")
        table.add_column("source", overflow="fold")
        for n, lim in prof.limits.items():
            table.add_row(n, f"{lim.value:g}", lim.unit, lim.source)
        out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
