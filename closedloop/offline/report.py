"""The session report, ``report.html``: one self-contained page built from ``session.xdf``.

Sections: the summary (numbers rounded to four significant digits); the
quality flags per kind; features over time with the controller's
thresholds; the allowed amplitude with the controller's decisions, applied
commands and safety events; the safety events as a table; latency and
data-age histograms; a raw-EEG excerpt; the pipeline file and the resolved
pipeline. The title names the session (participant and session when the
recording carries an identity) or, for a replay, the file replayed.

The report reads the recording back (seeking past the EEG, so a long
session stays quick) and draws with matplotlib's object API (no pyplot, no
global state) into PNG images embedded in the page. It is written at the
end of every session, so it is kept fast: about 0.3 s for a 30-s session
once matplotlib is imported (``benchmarks/bench_report.py``); importing
matplotlib costs 0.5-1 s more, which :func:`prepare` moves to the start of
a session.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from closedloop.recording.reader import XDFReader

__all__ = ["write_report", "format_value", "prepare"]

_MAX_POINTS = 4_000  # points per line drawn (longer series are decimated; a figure is ~900 px wide)
_EXCERPT_S = 10.0
_EXCERPT_CHANNELS = 8
_DPI = 90  # 10-inch figures: 900 px wide
_WIDTH = 10.0
_MAX_EVENT_LINES = 200
_MAX_EVENT_ROWS = 500

#: Summary keys shown, in order (others stay in summary.json).
_SUMMARY_KEYS = (
    "pipeline",
    "device",
    "started",
    "duration_s",
    "stop_reason",
    "samples_in",
    "frames",
    "commands_applied",
    "adapter_refusals",
    "safety_clamps",
    "safety_events",
    "watchdog_trips",
    "stim_time_s",
    "charge_C",
    "amplitude_max_mA",
    "final_amplitude_mA",
    "realtime_factor",
    "latency_ms",
    "data_age_ms",
    "in_process_ms",
    "warnings",
    "recording",
    "closedloop_version",
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:1em 2em}header h1{margin:0;font-size:1.5em}
nav a{color:#cfe0ff;margin-right:1.2em;font-size:.9em}main{padding:0 2em 2em;max-width:1000px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1.2em 0;padding:.6em 1.2em}
h2{font-size:1.15em;border-bottom:1px solid #eee;padding-bottom:.3em}
table{border-collapse:collapse;font-size:.9em}th,td{padding:.2em .8em;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}pre{background:#f4f4f4;padding:.8em;overflow-x:auto;font-size:.85em}
"""


def write_report(
    xdf_path: str | os.PathLike, out_path: str | os.PathLike, summary: dict | None = None, resolved=None, stats=None
) -> Path:
    """Write ``report.html`` for a session recorded by closedloop.

    Parameters
    ----------
    xdf_path : str or Path
        The session's ``session.xdf``.
    out_path : str or Path
        The HTML file to write (overwritten).
    summary : dict, optional
        The session summary; its ``quality_flags`` (frames per flag) are
        shown when present, otherwise the flags are counted from the
        recording.
    resolved : ResolvedPipeline, optional
        The pipeline (thresholds, feature channels); by default what the
        file header records.
    stats : closedloop.session.summary.SessionStats, optional
        Latency and data-age histograms; without it the latencies of the
        applied-commands stream are used.

    Returns
    -------
    Path
        ``out_path``.
    """
    reader = XDFReader(xdf_path)
    summary = dict(summary or {})
    roles = {s.desc("closedloop/role"): s for s in reader.streams.values()}
    cfg_json = _pipeline_json(reader, resolved)
    t0 = _first_time(reader, roles)
    feats = _read(reader, roles.get("features"))
    cmds = _read(reader, roles.get("commands"))
    applied = _read(reader, roles.get("applied"))
    events = _safety_events(roles.get("safety"))
    eeg = roles.get("eeg")

    sections: list[tuple[str, str]] = [("Summary", _summary_html(summary, reader))]
    plant = _plant_html(reader)
    if plant:  # a replay in closed loop through a fitted plant: what it assumes comes first
        sections.append(("Modelled plant", plant))
    pain = _pain_model_html(reader)
    if pain:
        sections.append(("Pain model", pain))
    sections.append(("Quality flags", _flags_html(summary, roles.get("features"), feats)))
    if feats is not None and len(feats[1]):
        names = roles["features"].ch_names[:-2]
        sections.append(("Features over time", _img(_features_figure(names, feats, t0, cfg_json))))
    if cmds is not None and len(cmds[1]):
        sections.append(("Stimulation", _img(_stimulation_figure(cmds, applied, events, t0))))
    sections.append(("Safety events", _events_html(events, t0)))
    fig = _latency_figure(stats, applied)
    sections.append(
        (
            "Latency and data age",
            _img(fig)
            if fig is not None
            else "<p>No commands were issued to a device (offline replay): no loop latency.</p>",
        )
    )
    if eeg is not None and eeg.sample_count:
        fig, caption = _eeg_figure(reader, eeg, cfg_json)
        sections.append(("Raw EEG excerpt", _img(fig) + f"<p>{html.escape(caption)}</p>"))
    toml = reader.file_header.findtext("pipeline_toml") or ""
    if toml.strip():
        sections.append(("Pipeline file", f"<pre><code>{html.escape(toml)}</code></pre>"))
    if cfg_json:
        sections.append(("Resolved pipeline", f"<pre><code>{html.escape(json.dumps(cfg_json, indent=2))}</code></pre>"))

    title = _title(summary, reader, cfg_json)
    nav = "".join(f'<a href="#{_anchor(t)}">{html.escape(t)}</a>' for t, _ in sections)
    body = "".join(
        f'<section id="{_anchor(t)}"><h2>{html.escape(t)}</h2>{content}</section>' for t, content in sections
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1><nav>{nav}</nav></header>"
        f"<main>{body}</main></body></html>\n"
    )
    out = Path(out_path)
    out.write_text(page, encoding="utf-8")
    return out


def prepare() -> None:
    """Import and warm up what the report draws with, so that :func:`write_report` is quick later.

    It imports matplotlib (0.5-1 s) and draws a small figure (font cache).
    Never while a live loop runs: the import holds the GIL the loop needs.
    """
    fig = _figure(1.0)
    ax = fig.add_subplot()
    ax.plot([0.0, 1.0], [0.0, 1.0])
    ax.set_xlabel("time (s)")
    _img(fig)


# -- numbers --------------------------------------------------------------------------
def format_value(value: object) -> str:
    """Return a value as text with four significant digits at most (nested dicts and lists too).

    Integers stay whole, floats keep four significant digits without
    trailing zeros (``0.012345678`` → ``0.01235``, ``30.0`` → ``30``,
    ``1234.5678`` → ``1235``), NaN and None show as ``–``.
    """
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1e6 or a < 1e-3:
            return f"{v:.4g}"
        decimals = max(0, 3 - math.floor(math.log10(a)))
        text = f"{v:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, Mapping):
        if not value:
            return "–"
        return ", ".join(
            f"{k} ({format_value(v)})" if isinstance(v, Mapping) else f"{k} {format_value(v)}" for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return "; ".join(format_value(v) for v in value) if value else "–"
    return str(value)


# -- reading --------------------------------------------------------------------------
def _plant_html(reader: XDFReader) -> str:
    """Describe the fitted plant of a ``replay --plant`` and state its assumptions ('' for other sessions)."""
    text = reader.file_header.findtext("plant_summary_json")
    if not text:
        return ""
    p = json.loads(text)
    rows = [
        ("feature", p.get("feature")),
        ("response", p.get("response")),
        ("gain", format_value(p.get("gain"))),
        ("time constant (s)", format_value(p.get("tau_s"))),
        ("delay (s)", format_value(p.get("delay_s"))),
        ("recorded stimulation's modelled effect removed", str(p.get("recorded_stimulation_removed"))),
        ("plant file", f"{p.get('file')} (SHA-256 {p.get('sha256')})"),
    ]
    items = "".join(f"<li>{html.escape(a)}</li>" for a in p.get("assumptions", []))
    return (
        "<p>This replay ran in closed loop offline: the feature below is the recorded one shifted by the modelled "
        "effect of the replay's own commands (minus that of the recording's). It is a model, not the brain; "
        "it assumes:</p>"
        f"<ol>{items}</ol>{_table([(k, str(v)) for k, v in rows])}"
    )


def _pain_model_html(reader: XDFReader) -> str:
    """Identify the pain model the session used: file, hashes, terms ('' without one)."""
    text = reader.file_header.findtext("pain_model_json")
    if not text:
        return ""
    m = json.loads(text)
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in m.items()]
    return _table(rows)


def _pipeline_json(reader: XDFReader, resolved) -> dict | None:
    if resolved is not None:
        return resolved.config.model_dump(mode="json")
    text = reader.file_header.findtext("pipeline_json")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _read(reader: XDFReader, stream):
    if stream is None or stream.sample_count == 0:
        return None
    return reader.read_stream(stream.stream_id)


def _first_time(reader: XDFReader, roles: dict) -> float:
    for role in ("features", "commands"):
        s = roles.get(role)
        if s is not None and s.footer is not None and s.footer.findtext("first_timestamp"):
            return float(s.footer.findtext("first_timestamp"))
    eeg = roles.get("eeg")
    if eeg is not None and eeg.footer is not None and eeg.footer.findtext("first_timestamp"):
        return float(eeg.footer.findtext("first_timestamp")) + float(eeg.desc("closedloop/pipeline_offset") or 0)
    return 0.0


def _safety_events(stream) -> list[dict]:
    if stream is None:
        return []
    out = []
    for row, t in zip(stream.strings, stream.string_stamps.tolist()):
        try:
            ev = json.loads(row[0])
        except (json.JSONDecodeError, IndexError):
            ev = {"kind": "?", "reason": row[0] if row else ""}
        ev.setdefault("time", t)
        out.append(ev)
    return out


def _identity(reader: XDFReader, summary: dict) -> dict[str, str]:
    """Return the session identity: the file header's ``identity``, else the summary's, else header elements."""
    node = reader.file_header.find("identity")
    if node is not None:
        return {child.tag: (child.text or "") for child in node}
    given = summary.get("identity")
    if isinstance(given, Mapping) and given:
        return {str(k): str(v) for k, v in given.items()}
    found = {key: reader.file_header.findtext(key) for key in ("participant", "session")}
    return {k: v for k, v in found.items() if v}


def _replayed_file(summary: dict, reader: XDFReader) -> str | None:
    """Return the path of the file a replay ran over (None for a live session)."""
    replay = summary.get("replay")
    if isinstance(replay, Mapping) and replay.get("file"):
        return str(replay["file"])
    if reader.file_header.findtext("replay_of"):
        return reader.file_header.findtext("replay_of")
    for s in reader.streams.values():  # the replay's annotation stream names the file
        if s.source_id.startswith("closedloop-replay-"):
            return s.source_id[len("closedloop-replay-") :]
    return None


def _title(summary: dict, reader: XDFReader, cfg: dict | None) -> str:
    pipeline = summary.get("pipeline") or (cfg or {}).get("pipeline", {}).get("name") or "session"
    replayed = _replayed_file(summary, reader)
    name = Path(replayed).name if replayed else None
    title = f"closedloop replay of {name} — {pipeline}" if name else f"closedloop session — {pipeline}"
    ident = _identity(reader, summary)
    who = [f"{key} {ident[key]}" for key in ("participant", "session") if ident.get(key)]
    return f"{title} — {', '.join(who)}" if who else title


def _decimate(n: int) -> slice:
    return slice(None, None, max(1, math.ceil(n / _MAX_POINTS)))


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


# -- sections ---------------------------------------------------------------------------
def _table(rows: Sequence[tuple[str, str]], numeric: bool = False) -> str:
    cls = ' class="n"' if numeric else ""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td{cls}>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _summary_html(summary: dict, reader: XDFReader) -> str:
    rows = [(key, value) for key, value in _identity(reader, summary).items()]
    replayed = _replayed_file(summary, reader)
    if replayed:
        rows.append(("replayed file", replayed))
    rows += [(key, format_value(summary[key])) for key in _SUMMARY_KEYS if key in summary]
    if not summary:
        rows.append(("closedloop_version", reader.file_header.findtext("closedloop_version") or "?"))
    return _table(rows)


def _flag_counts(summary: dict, stream, feats) -> dict[str, int] | None:
    given = summary.get("quality_flags")
    if isinstance(given, Mapping):
        return {str(k): int(v) for k, v in given.items()}
    if stream is None or feats is None:
        return None
    from closedloop.types import Quality

    flags = feats[0][:, len(stream.ch_names) - 2].astype(np.int64)
    return {q.name: int(np.count_nonzero(flags & int(q))) for q in Quality if q.value}


def _flags_html(summary: dict, stream, feats) -> str:
    counts = _flag_counts(summary, stream, feats)
    if counts is None:
        return "<p>No frames.</p>"
    frames = summary.get("frames")
    if not isinstance(frames, numbers.Integral):
        frames = len(feats[1]) if feats is not None else 0
    if not any(counts.values()):
        return f"<p>No frame flagged (of {frames}).</p>"
    rows = "".join(
        f"<tr><th>{html.escape(kind)}</th><td class='n'>{n}</td>"
        f"<td class='n'>{format_value(100.0 * n / frames) if frames else '–'} %</td></tr>"
        for kind, n in counts.items()
        if n
    )
    return (
        f"<table><tr><th>flag</th><th>frames</th><th>of {frames}</th></tr>{rows}</table>"
        "<p>A frame can carry several flags.</p>"
    )


def _events_html(events: list[dict], t0: float) -> str:
    if not events:
        return "<p>No safety events.</p>"
    rows = "".join(
        f"<tr><td class='n'>{format_value(float(ev.get('time', 0.0)) - t0)}</td>"
        f"<td>{html.escape(str(ev.get('kind', '')))}</td><td>{html.escape(str(ev.get('reason', '')))}</td>"
        f"<td class='n'>{format_value(ev.get('desired_mA'))}</td>"
        f"<td class='n'>{format_value(ev.get('applied_mA'))}</td></tr>"
        for ev in events[:_MAX_EVENT_ROWS]
    )
    more = (
        f"<p>... and {len(events) - _MAX_EVENT_ROWS} more (see the safety stream of session.xdf).</p>"
        if len(events) > _MAX_EVENT_ROWS
        else ""
    )
    return (
        "<table><tr><th>time (s)</th><th>kind</th><th>reason</th>"
        f"<th>desired mA</th><th>amplitude mA</th></tr>{rows}</table>{more}"
    )


# -- figures (matplotlib's object API: no pyplot, nothing global) ---------------------------
def _figure(height: float, left: float = 1.1, bottom: float = 0.45, top: float = 0.15):
    """Return a figure ``height`` inches high with fixed margins in inches (no layout pass)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH, height), dpi=_DPI)
    fig.subplots_adjust(
        left=left / _WIDTH, right=1 - 0.2 / _WIDTH, bottom=bottom / height, top=1 - top / height, hspace=0.15
    )
    return fig


def _img(fig) -> str:
    """Return a figure as an embedded PNG image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, pil_kwargs={"compress_level": 1})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _features_figure(names: list[str], feats, t0: float, cfg: dict | None):
    values, t = feats
    shown = names[:6]
    ctl = (cfg or {}).get("controller", {})
    from matplotlib.ticker import MaxNLocator, NullLocator

    fig = _figure(1.3 * len(shown) + 0.6)
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    sl = _decimate(len(t))
    x = (t - t0)[sl]
    span = (float(x[0]), float(x[-1])) if len(x) > 1 and x[-1] > x[0] else None
    for k, (ax, name) in enumerate(zip(axes, shown)):
        ax.plot(x, values[sl, names.index(name)], lw=0.8, color="C0")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(4))  # few ticks: tick objects are most of the drawing time
        if span is not None:
            ax.set_xlim(span)
        if k < len(shown) - 1:  # one time axis, at the bottom
            ax.xaxis.set_major_locator(NullLocator())
        if ctl.get("feature") == name:
            for key, color in (("lower", "C2"), ("upper", "C3"), ("target", "C1"), ("threshold", "C4")):
                if isinstance(ctl.get(key), (int, float)) and not isinstance(ctl.get(key), bool):
                    ax.axhline(ctl[key], color=color, ls="--", lw=1, label=f"{key} {format_value(ctl[key])}")
            if ax.get_legend_handles_labels()[0]:  # a controller without thresholds (e.g. dual threshold) has none
                ax.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("time (s)", fontsize=8)
    return fig


def _stimulation_figure(cmds, applied, events: list[dict], t0: float):
    values, t = cmds
    sl = _decimate(len(t))
    x = (t - t0)[sl]
    fig = _figure(2.8, left=0.7, top=0.35)
    ax = fig.add_subplot()
    amp_max = max(float(np.nanmax(values[:, 4])) if len(t) else 0.0, float(np.nanmax(values[:, 1])), 1e-3)
    ax.fill_between(x, 0, values[sl, 0] * amp_max, step="post", color="C1", alpha=0.15, label="controller wants on")
    ax.plot(x, values[sl, 4], lw=1.0, color="C0", label="allowed amplitude")
    if applied is not None and len(applied[1]):
        a_val, a_t = applied
        asl = _decimate(len(a_t))
        ax.plot((a_val[asl, 3] - t0), a_val[asl, 0], ".", ms=2, color="k", label="applied (frame time)")
    if events:
        times = [float(ev.get("time", 0.0)) - t0 for ev in events[:_MAX_EVENT_LINES]]
        ax.vlines(times, 0, 1, transform=ax.get_xaxis_transform(), color="C3", lw=0.6, alpha=0.6, label="safety event")
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("mA", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4, fontsize=7, frameon=False)
    return fig


def _hist_from(h) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the bin edges (ms) and counts of a LatencyHistogram's occupied range."""
    if h is None or h.n == 0:
        return None
    counts = h.counts
    occupied = np.flatnonzero(counts)
    lo, hi = occupied[0], occupied[-1]
    idx = np.arange(lo, hi + 2)
    edges = h.LO * np.exp((idx - 1) / h._k) * 1e3
    return edges, counts[lo : hi + 1]


def _latency_figure(stats, applied):
    panels = []
    if stats is not None:
        for label, h in (("loop latency (ms)", stats.latency), ("data age at pull (ms)", stats.data_age)):
            got = _hist_from(h)
            if got is not None:
                panels.append((label, got))
    if not panels and applied is not None and len(applied[1]):
        lat = applied[0][:, 4] * 1e3
        lat = lat[np.isfinite(lat) & (lat > 0)]
        if lat.size:
            edges = np.geomspace(max(lat.min(), 1e-3), max(lat.max(), lat.min() * 1.01 + 1e-3), 60)
            counts, _ = np.histogram(lat, edges)
            panels.append(("loop latency (ms)", (edges, counts)))
    if not panels:
        return None
    fig = _figure(2.6, left=0.7, bottom=0.55)
    fig.subplots_adjust(wspace=0.25)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for ax, (label, (edges, counts)) in zip(axes, panels):
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


def _eeg_figure(reader: XDFReader, eeg, cfg: dict | None):
    """Return the first seconds of the EEG (feature channels first) and a caption saying what is shown.

    Voltage channels are scaled to µV as a replay scales them (the units the
    recording's header gives); other channels (a trigger channel) are left out.
    """
    from closedloop.channels import ChannelError, match
    from closedloop.offline.files import stream_scaling
    from closedloop.units import UnitError

    want = int(_EXCERPT_S * eeg.nominal_srate)
    parts, stamps, got = [], [], 0
    for values, ts in reader.iter_samples(eeg.stream_id):
        parts.append(values[: want - got])
        stamps.append(ts[: want - got])
        got += parts[-1].shape[0]
        if got >= want:
            break
    data = np.concatenate(parts).astype(np.float64)
    t = np.concatenate(stamps)
    try:
        scaling = stream_scaling(eeg, eeg.ch_names, f"{reader.path.name} (stream {eeg.name!r})")
        volts = [c for c, volt in zip(eeg.ch_names, scaling.volts) if volt]
    except UnitError:  # a voltage channel in a unit closedloop does not know: shown as recorded
        volts = []
    if volts:
        pool, unit, scale = volts, "µV", scaling.factors
    else:
        pool, unit, scale = list(eeg.ch_names), "the recording's units", np.ones(len(eeg.ch_names))
    left_out = [c for c in eeg.ch_names if c not in pool]
    wanted = list((cfg or {}).get("features", {}).get("channels") or [])
    try:  # matched as the pipeline matches them: "O1" is a stream's "EEG O1"
        feats = [eeg.ch_names[i] for i in match(wanted, eeg.ch_names)]
    except ChannelError:
        feats = wanted
    feats = [c for c in feats if c in pool]
    order = feats + [c for c in pool if c not in feats]
    shown = order[:_EXCERPT_CHANNELS]
    idx = [eeg.ch_names.index(c) for c in shown]
    x = t - t[0]
    values = data[:, idx] * scale[idx]
    seg = values - np.nanmean(values, axis=0)
    spread = float(np.nanpercentile(np.abs(seg), 99)) * 2 if seg.size else 1.0
    spread = spread if math.isfinite(spread) and spread > 0 else 1.0
    fig = _figure(0.5 * len(shown) + 1.0, left=0.7, bottom=0.5, top=0.3)
    ax = fig.add_subplot()
    sl = _decimate(len(x))
    offsets = -np.arange(len(shown)) * spread
    ax.plot(x[sl], seg[sl] + offsets, lw=0.5, color="k")
    ax.set_yticks(offsets, shown, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"time from the first sample (s); {format_value(spread)} {unit} between traces", fontsize=8)
    ax.set_title(f"{eeg.name}: first {format_value(float(x[-1]) if len(x) else 0.0)} s", fontsize=9)
    caption = f"{', '.join(shown)} ({len(shown)} of {len(eeg.ch_names)} channels), mean removed, in {unit}"
    if left_out:
        caption += f"; not voltages, not shown: {', '.join(left_out)}"
    return fig, caption + "."
