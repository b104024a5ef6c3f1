"""The session report, ``report.html``: an :class:`mne.Report` built from ``session.xdf``.

Sections: the summary; features over time with the controller's thresholds;
the allowed amplitude with the controller's decisions, applied commands and
safety events; the safety events as a table; latency and data-age
histograms; a raw-EEG excerpt; the resolved pipeline. The report reads the
recording back (seeking past the EEG, so a long session stays quick) and
draws with matplotlib's Agg backend.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import numpy as np

from closedloop.recording.reader import XDFReader

__all__ = ["write_report"]

_MAX_POINTS = 20_000  # points per line drawn (longer series are decimated)
_EXCERPT_S = 10.0
_EXCERPT_CHANNELS = 8


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
        The session summary.
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
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mne

    reader = XDFReader(xdf_path)
    summary = dict(summary or {})
    roles = {s.desc("closedloop/role"): s for s in reader.streams.values()}
    cfg_json = _pipeline_json(reader, resolved)
    name = summary.get("pipeline") or (cfg_json or {}).get("pipeline", {}).get("name", "session")
    report = mne.Report(title=f"closedloop session — {name}", verbose="error")
    report.add_html(_summary_html(summary, reader), title="Summary", section="Session")

    eeg = roles.get("eeg")
    t0 = _first_time(reader, roles)
    feats = _read(reader, roles.get("features"))
    cmds = _read(reader, roles.get("commands"))
    events = _safety_events(roles.get("safety"))
    figs = []
    try:
        if feats is not None and len(feats[1]):
            fig = _features_figure(plt, roles["features"].ch_names[:-2], feats, t0, cfg_json)
            report.add_figure(fig, title="Features over time", section="Session", image_format="png")
            figs.append(fig)
        if cmds is not None and len(cmds[1]):
            fig = _stimulation_figure(plt, cmds, _read(reader, roles.get("applied")), events, t0)
            report.add_figure(fig, title="Stimulation", section="Session", image_format="png")
            figs.append(fig)
        report.add_html(_events_html(events, t0), title="Safety events", section="Session")
        fig = _latency_figure(plt, stats, _read(reader, roles.get("applied")))
        if fig is not None:
            report.add_figure(fig, title="Latency and data age", section="Timing", image_format="png")
            figs.append(fig)
        else:
            report.add_html(
                "<p>No commands were issued to a device (offline replay): no loop latency.</p>",
                title="Latency and data age",
                section="Timing",
            )
        if eeg is not None and eeg.sample_count:
            fig = _eeg_figure(plt, reader, eeg, cfg_json, t0)
            report.add_figure(fig, title="Raw EEG excerpt", section="EEG", image_format="png")
            figs.append(fig)
        toml = reader.file_header.findtext("pipeline_toml") or ""
        if toml.strip():
            report.add_code(toml, title="Pipeline file", language="toml", section="Pipeline")
        if cfg_json:
            report.add_code(
                json.dumps(cfg_json, indent=2), title="Resolved pipeline", language="json", section="Pipeline"
            )
        out = Path(out_path)
        report.save(out, open_browser=False, overwrite=True, verbose="error")
    finally:
        for fig in figs:
            plt.close(fig)
    return out


# -- reading --------------------------------------------------------------------------
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


def _decimate(n: int) -> slice:
    return slice(None, None, max(1, math.ceil(n / _MAX_POINTS)))


# -- sections ---------------------------------------------------------------------------
def _summary_html(summary: dict, reader: XDFReader) -> str:
    rows = []
    keys = (
        "pipeline",
        "device",
        "started",
        "duration_s",
        "stop_reason",
        "samples_in",
        "frames",
        "commands_applied",
        "safety_clamps",
        "stim_time_s",
        "charge_C",
        "amplitude_max_mA",
        "realtime_factor",
        "latency_ms",
        "data_age_ms",
        "closedloop_version",
    )
    for key in keys:
        if key in summary:
            value = summary[key]
            text = (
                json.dumps(value)
                if isinstance(value, dict | list)
                else (f"{value:.6g}" if isinstance(value, float) else str(value))
            )
            rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(text)}</td></tr>")
    if not rows:
        version = reader.file_header.findtext("closedloop_version") or "?"
        rows.append(f"<tr><th>closedloop_version</th><td>{html.escape(version)}</td></tr>")
    return f"<table class='table table-sm'>{''.join(rows)}</table>"


def _features_figure(plt, names: list[str], feats, t0: float, cfg: dict | None):
    values, t = feats
    shown = names[:6]
    ctl = (cfg or {}).get("controller", {})
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 1.6 * len(shown) + 0.6), sharex=True, squeeze=False)
    sl = _decimate(len(t))
    x = (t - t0)[sl]
    for ax, name in zip(axes[:, 0], shown):
        ax.plot(x, values[sl, names.index(name)], lw=0.8, color="C0")
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        if ctl.get("feature") == name:
            for key, color in (("lower", "C2"), ("upper", "C3")):
                if key in ctl:
                    ax.axhline(ctl[key], color=color, ls="--", lw=1, label=f"{key} {ctl[key]:g}")
            ax.legend(loc="upper right", fontsize=7)
        if "target" in ctl and ctl.get("feature") == name:
            ax.axhline(ctl["target"], color="C1", ls="--", lw=1)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def _stimulation_figure(plt, cmds, applied, events: list[dict], t0: float):
    values, t = cmds
    sl = _decimate(len(t))
    x = (t - t0)[sl]
    fig, ax = plt.subplots(figsize=(10, 2.8))
    amp_max = max(float(np.nanmax(values[:, 4])) if len(t) else 0.0, float(np.nanmax(values[:, 1])), 1e-3)
    ax.fill_between(x, 0, values[sl, 0] * amp_max, step="post", color="C1", alpha=0.15, label="controller wants on")
    ax.plot(x, values[sl, 4], lw=1.0, color="C0", label="allowed amplitude")
    if applied is not None and len(applied[1]):
        a_val, a_t = applied
        asl = _decimate(len(a_t))
        ax.plot((a_val[asl, 3] - t0), a_val[asl, 0], ".", ms=2, color="k", label="applied (frame time)")
    for ev in events[:200]:
        ax.axvline(float(ev.get("time", 0.0)) - t0, color="C3", lw=0.6, alpha=0.6)
    if events:
        ax.plot([], [], color="C3", lw=0.6, label="safety event")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mA")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def _events_html(events: list[dict], t0: float) -> str:
    if not events:
        return "<p>No safety events.</p>"
    rows = "".join(
        f"<tr><td>{float(ev.get('time', 0.0)) - t0:.3f}</td><td>{html.escape(str(ev.get('kind', '')))}</td>"
        f"<td>{html.escape(str(ev.get('reason', '')))}</td><td>{ev.get('desired_mA', '')}</td>"
        f"<td>{ev.get('applied_mA', '')}</td></tr>"
        for ev in events[:500]
    )
    more = (
        f"<p>... and {len(events) - 500} more (see the safety stream of session.xdf).</p>" if len(events) > 500 else ""
    )
    return (
        "<table class='table table-sm'><tr><th>time (s)</th><th>kind</th><th>reason</th>"
        f"<th>desired mA</th><th>amplitude mA</th></tr>{rows}</table>{more}"
    )


def _hist_from(h) -> tuple[np.ndarray, np.ndarray] | None:
    """Bin edges (ms) and counts of a LatencyHistogram's occupied range."""
    if h is None or h.n == 0:
        return None
    counts = h.counts
    occupied = np.flatnonzero(counts)
    lo, hi = occupied[0], occupied[-1]
    idx = np.arange(lo, hi + 2)
    edges = h.LO * np.exp((idx - 1) / h._k) * 1e3
    return edges, counts[lo : hi + 1]


def _latency_figure(plt, stats, applied):
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
    fig, axes = plt.subplots(1, len(panels), figsize=(10, 2.8), squeeze=False)
    for ax, (label, (edges, counts)) in zip(axes[0], panels):
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("count")
    fig.tight_layout()
    return fig


def _eeg_figure(plt, reader: XDFReader, eeg, cfg: dict | None, t0: float):
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
    feats = [c for c in ((cfg or {}).get("features", {}).get("channels") or []) if c in eeg.ch_names]
    order = feats + [c for c in eeg.ch_names if c not in feats]
    shown = order[:_EXCERPT_CHANNELS]
    idx = [eeg.ch_names.index(c) for c in shown]
    x = t - t[0]
    seg = data[:, idx] - np.nanmean(data[:, idx], axis=0)
    spread = float(np.nanpercentile(np.abs(seg), 99)) * 2 if seg.size else 1.0
    spread = spread if math.isfinite(spread) and spread > 0 else 1.0
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(shown) + 1.2))
    for k, name in enumerate(shown):
        ax.plot(x, seg[:, k] - k * spread, lw=0.5, color="k")
    ax.set_yticks([-k * spread for k in range(len(shown))], shown, fontsize=8)
    ax.set_xlabel(f"time from the first sample (s); scale: {spread:.3g} {eeg.units[0] or 'µV'} between traces")
    ax.set_title(f"{eeg.name}: first {x[-1] if len(x) else 0:.1f} s", fontsize=9)
    fig.tight_layout()
    return fig
