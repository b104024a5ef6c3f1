"""A participant's sessions in one report: ``closedloop report --participant P``.

One self-contained HTML page in the style of the session report
(:mod:`closedloop.offline.report`: matplotlib's object API, PNG images
embedded, no pyplot): the sessions as a table (date, pipeline and its hash,
device, duration, stop reason, dose, safety events, ratings); dose per
session with its running total; ratings per session (mean, range, first and
last); each feature's session mean and standard deviation across sessions;
stop reasons counted. Everything comes from the ledger (each finished
session's ``summary.json`` is stored in it), so the report needs no
recording. ``mne.Report`` is not used: it adds nothing for numbers across
sessions, and the page looks like the session reports it sits beside.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from closedloop.offline.report import _CSS, _anchor, _figure, _img, format_value
from closedloop.study.ledger import LedgerEntry

__all__ = ["write_longitudinal_report", "dose_text", "primary_dose"]

_MAX_FEATURES = 6
#: The dose shown first for each modality.
_PRIMARY = {"tes": ("charge_C", "C"), "rtms": ("pulses", "pulses"), "tus": ("sonication_s", "s")}


def primary_dose(entry: LedgerEntry) -> tuple[str, str, float | None]:
    """Return the main dose quantity of a session's modality, its unit, and what the session delivered."""
    key, unit = _PRIMARY.get(entry.modality, ("stim_time_s", "s"))
    value = entry.dose.get(key) if entry.status == "finished" else None
    return key, unit, None if value is None else float(value)


def dose_text(entry: LedgerEntry) -> str:
    """Return a session's dose as short text (its cap when it never closed)."""
    if entry.status == "not_started":
        return "none (not started)"
    if entry.status != "finished":
        cap = ", ".join(f"{k} ≤ {format_value(v)}" for k, v in entry.dose_cap.items() if v is not None)
        return f"counted in full: {cap}"
    parts = [f"{k} {format_value(v)}" for k, v in entry.dose.items() if v]
    return ", ".join(parts) or "0"


def _sessions_table(entries: Sequence[LedgerEntry]) -> str:
    head = (
        "<tr><th>#</th><th>session</th><th>started</th><th>status</th><th>pipeline</th><th>device</th>"
        "<th>min</th><th>stop reason</th><th>dose</th><th>safety events</th><th>rating</th></tr>"
    )
    rows = []
    for e in entries:
        minutes = "" if e.stopped_at is None else format_value((e.stopped_at - e.started_at) / 60.0)
        rating = e.ratings.get("mean")
        rating_text = "–" if rating is None else f"{format_value(rating)} (n={e.ratings.get('n', 0)})"
        cells = [
            str(e.id),
            e.session,
            e.started_text(),
            e.status,
            f"{e.pipeline} ({e.pipeline_sha256[:8]})",
            f"{e.device} ({e.profile_sha256[:8]})",
            minutes,
            e.stop_reason or "",
            dose_text(e),
            format_value(e.safety_events),
            rating_text,
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _x_labels(ax, entries: Sequence[LedgerEntry]) -> None:
    ax.set_xticks(range(len(entries)), [f"{e.session}\n{e.started_text()[:10]}" for e in entries], fontsize=7)
    ax.set_xlabel("session (date)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)


def _dose_figure(entries: Sequence[LedgerEntry]):
    key, unit, _ = primary_dose(entries[0])
    values = np.array([(primary_dose(e)[2] if primary_dose(e)[2] is not None else np.nan) for e in entries])
    fig = _figure(2.8, left=0.8, bottom=0.7)
    fig.subplots_adjust(right=1 - 0.8 / fig.get_figwidth())  # room for the running total's axis
    ax = fig.add_subplot()
    x = np.arange(len(entries))
    ax.bar(x, np.nan_to_num(values), color="C0", alpha=0.7, label=f"{key} per session")
    unknown = np.isnan(values)
    if unknown.any():
        ax.bar(x[unknown], [0.0] * int(unknown.sum()), color="C3", label="never closed (counted in full)")
    ax2 = ax.twinx()
    ax2.plot(x, np.nancumsum(values), "o-", color="C1", lw=1.2, ms=3, label="running total")
    ax.set_ylabel(f"{key} ({unit})", fontsize=8)
    ax2.set_ylabel(f"total ({unit})", fontsize=8)
    ax2.set_ylim(bottom=0.0)
    ax2.tick_params(labelsize=7)
    _x_labels(ax, entries)
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    return fig


def _ratings_figure(entries: Sequence[LedgerEntry]):
    rated = [(i, e.ratings) for i, e in enumerate(entries) if e.ratings.get("n")]
    if not rated:
        return None
    fig = _figure(2.6, left=0.8, bottom=0.7)
    ax = fig.add_subplot()
    x = np.array([i for i, _ in rated])
    mean = np.array([r["mean"] for _, r in rated])
    lo = mean - np.array([r["min"] for _, r in rated])
    hi = np.array([r["max"] for _, r in rated]) - mean
    ax.errorbar(x, mean, yerr=[lo, hi], fmt="o", color="C0", capsize=3, label="mean (min–max)")
    ax.plot(x, [r["first"] for _, r in rated], "v", color="C2", ms=4, label="first")
    ax.plot(x, [r["last"] for _, r in rated], "^", color="C3", ms=4, label="last")
    ax.set_ylabel("rating", fontsize=8)
    _x_labels(ax, entries)
    ax.set_xlim(-0.5, len(entries) - 0.5)
    ax.legend(loc="upper right", fontsize=7, ncols=3)
    return fig


def _feature_names(entries: Sequence[LedgerEntry]) -> list[str]:
    names: dict[str, None] = {}
    for e in entries:
        for name in (e.summary.get("features") or {}).keys():
            names.setdefault(name)
    return list(names)[:_MAX_FEATURES]


def _features_figure(entries: Sequence[LedgerEntry], names: list[str]):
    fig = _figure(1.3 * len(names) + 0.9, left=1.3, bottom=0.7)
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    x = np.arange(len(entries))
    for ax, name in zip(axes, names):
        mean = np.full(len(entries), np.nan)
        std = np.full(len(entries), np.nan)
        for i, e in enumerate(entries):
            f = (e.summary.get("features") or {}).get(name) or {}
            mean[i] = f.get("mean") if f.get("mean") is not None else np.nan
            std[i] = f.get("std") if f.get("std") is not None else np.nan
        ax.errorbar(x, mean, yerr=np.nan_to_num(std), fmt="o-", color="C0", capsize=3, lw=0.8, ms=3)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(-0.5, len(entries) - 0.5)
        ax.set_xticks(x, [""] * len(x))
    _x_labels(axes[-1], entries)
    return fig


def _stop_reasons(entries: Sequence[LedgerEntry]) -> str:
    counts = Counter((e.stop_reason or "never closed") if e.status != "not_started" else "not started" for e in entries)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td class='n'>{n}</td></tr>" for k, n in counts.most_common())
    return f"<table><tr><th>stop reason</th><th>sessions</th></tr>{rows}</table>"


def write_longitudinal_report(entries: Sequence[LedgerEntry], out_path: str | Path, study_name: str = "study") -> Path:
    """Write the longitudinal report of one participant's ledger entries (oldest first).

    Parameters
    ----------
    entries : sequence of LedgerEntry
        The participant's sessions (``Ledger.sessions(P, include_not_started=False)``).
    out_path : str or Path
        The HTML file (folders created, file overwritten).
    study_name : str
        Shown in the title.

    Returns
    -------
    Path
        ``out_path``.
    """
    if not entries:
        raise ValueError("no sessions to report")
    participant = entries[0].participant
    finished = [e for e in entries if e.status == "finished"]
    key, unit, _ = primary_dose(entries[0])
    total = sum(primary_dose(e)[2] or 0.0 for e in finished)
    span_days = (entries[-1].started_at - entries[0].started_at) / 86400.0
    overview = [
        ("participant", participant),
        ("sessions", f"{len(entries)} ({len(finished)} finished) over {format_value(span_days)} days"),
        ("first, last", f"{entries[0].started_text()}, {entries[-1].started_text()}"),
        (f"total {key}", f"{format_value(total)} {unit} (finished sessions)"),
        ("safety events", format_value(sum(e.safety_events or 0 for e in entries))),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in overview)
    sections = [("Overview", f"<table>{rows}</table>")]
    sections.append(("Sessions", _sessions_table(entries)))
    sections.append(("Dose", _img(_dose_figure(entries))))
    fig = _ratings_figure(entries)
    sections.append(("Ratings", _img(fig) if fig is not None else "<p>No ratings recorded.</p>"))
    names = _feature_names(finished)
    sections.append(
        (
            "Features",
            _img(_features_figure(entries, names)) + "<p>Session mean ± standard deviation of each frame's value.</p>"
            if names
            else "<p>No feature summaries.</p>",
        )
    )
    sections.append(("Stop reasons", _stop_reasons(entries)))
    title = f"closedloop — {study_name} — participant {participant}"
    nav = "".join(f'<a href="#{_anchor(t)}">{html.escape(t)}</a>' for t, _ in sections)
    body = "".join(f'<section id="{_anchor(t)}"><h2>{html.escape(t)}</h2>{c}</section>' for t, c in sections)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1><nav>{nav}</nav></header>"
        f"<main>{body}</main></body></html>\n"
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
