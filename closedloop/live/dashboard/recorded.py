"""``closedloop view``: the dashboard on a recorded session, with a timeline to scrub.

:class:`RecordedSession` reads a ``session.xdf`` written by closedloop (the
EEG, frames, controller state, commands, applied commands, safety events and
any ratings stream) into memory once; :meth:`RecordedSession.window` then
returns, for any time ``t``, the same snapshot the live dashboard would have
sent at that moment, built by the same
:class:`~closedloop.live.dashboard.state.DashboardState`. What a recording
does not hold is marked so: the data age (measured live only) and the
watchdog's state (its trips are counted from the events).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from closedloop.live.dashboard.ratings import RATINGS_STREAM, RATINGS_TYPE
from closedloop.live.dashboard.state import (
    EEG_SPAN_S,
    SPECTRUM_SPAN_S,
    TRACE_SPAN_S,
    DashboardInfo,
    DashboardState,
)

__all__ = ["RecordedSession", "RecordedBackend", "find_session_file"]


def find_session_file(path: str | os.PathLike) -> Path:
    """Return the ``session.xdf`` of a session folder (or the file itself).

    Raises
    ------
    ValueError
        Naming the path, when it holds no ``session.xdf``.
    """
    p = Path(path)
    if p.is_dir():
        f = p / "session.xdf"
        if not f.is_file():
            raise ValueError(f"{p}: no session.xdf in this folder; give a session folder written by closedloop run")
        return f
    if p.is_file():
        return p
    raise ValueError(f"{p}: no such session folder or file")


class RecordedSession:
    """A recorded closedloop session, ready to be shown at any time.

    Parameters
    ----------
    path : str or Path
        A session folder or its ``session.xdf``.

    Raises
    ------
    ValueError
        If the file is not a session recorded by closedloop (no pipeline in
        its header, or no EEG stream).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from closedloop.offline.files import stream_scaling
        from closedloop.recording.reader import XDFReader

        self.path = find_session_file(path)
        try:
            reader = XDFReader(self.path)
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path}: cannot be read as XDF ({e})") from None
        roles = {s.desc("closedloop/role"): s for s in reader.streams.values()}
        header = reader.file_header
        try:
            cfg = json.loads(header.findtext("pipeline_json") or "")
            envelope = json.loads(header.findtext("safety_envelope_json") or "{}")
            profile = json.loads(header.findtext("device_profile_json") or "{}")
        except json.JSONDecodeError:
            cfg = None
        eeg = roles.get("eeg")
        if not isinstance(cfg, dict) or eeg is None:
            raise ValueError(
                f"{self.path}: not a session recorded by closedloop (no pipeline in the file header or no EEG stream)"
            )
        self.cfg = cfg
        feats_stream = roles.get("features")
        feature_names = feats_stream.ch_names[:-2] if feats_stream is not None else []
        ident = header.find("identity")
        title = str((cfg.get("pipeline") or {}).get("name", "session"))
        if ident is not None:
            title += "".join(f" · {c.tag} {c.text}" for c in ident if c.text)
        modality = str(((profile or {}).get("device") or {}).get("modality", "tes"))
        self.info = DashboardInfo.from_config(
            cfg,
            envelope,
            modality,
            eeg.ch_names,
            feature_names,
            mode="recorded",
            session_id=header.findtext("session_id") or "",
            title=f"{title} (recorded)",
        )
        # -- EEG in µV, pipeline time base -------------------------------------------------
        values, stamps = reader.read_stream(eeg.stream_id)
        offset = float(eeg.desc("closedloop/pipeline_offset") or 0.0)
        self.eeg_t = stamps.astype(np.float64) + offset
        cols = [eeg.ch_names.index(c) for c in self.info.display]
        roi = [eeg.ch_names.index(c) for c in self.info.roi]
        scale = stream_scaling(eeg, eeg.ch_names, f"{self.path} (stream {eeg.name!r})").factors  # as a replay
        self.eeg_display = values[:, cols].astype(np.float64) * scale[cols]
        self.eeg_roi = (values[:, roi].astype(np.float64) * scale[roi]).mean(axis=1)
        self.t0 = float(self.eeg_t[0]) if self.eeg_t.size else 0.0
        # -- frames, controller, commands ---------------------------------------------------
        self.frame_t, self.frame_v, self.frame_flags = np.zeros(0), np.zeros((0, len(feature_names))), np.zeros(0)
        if feats_stream is not None and feats_stream.sample_count:
            v, t = reader.read_stream(feats_stream.stream_id)
            self.frame_t, self.frame_v, self.frame_flags = t, v[:, : len(feature_names)], v[:, len(feature_names)]
        self.state_names: list[str] = []
        self.state_t, self.state_v = np.zeros(0), np.zeros((0, 0))
        ctl = roles.get("controller")
        if ctl is not None and ctl.sample_count:
            self.state_v, self.state_t = reader.read_stream(ctl.stream_id)
            self.state_names = list(ctl.ch_names)
        self.shown_state = self._shown_state_names()
        self.cmd_t, self.cmd_v, self.cmd_names = np.zeros(0), np.zeros((0, 7)), []
        cmds = roles.get("commands")
        if cmds is not None and cmds.sample_count:
            self.cmd_v, self.cmd_t = reader.read_stream(cmds.stream_id)
            self.cmd_names = list(cmds.ch_names)
        self.app_t, self.app_v = np.zeros(0), np.zeros((0, 5))
        applied = roles.get("applied")
        if applied is not None and applied.sample_count:
            self.app_v, self.app_t = reader.read_stream(applied.stream_id)
        self.app_fire = np.zeros(self.app_t.shape[0], dtype=bool)
        extra = roles.get("applied-extra")
        if extra is not None and self.app_t.size:
            for row, t in zip(extra.strings, extra.string_stamps.tolist()):
                if row and '"fire": true' in row[0]:
                    i = int(np.searchsorted(self.app_t, t))
                    if i < self.app_t.size and abs(self.app_t[i] - t) < 1e-6:
                        self.app_fire[i] = True
        # cumulative charge (trapezoid of |I| over the applied commands' issue times), for the dose gauge
        a = np.abs(self.app_v[:, 0]) if self.app_t.size else np.zeros(0)
        seg = 0.5 * (a[1:] + a[:-1]) * np.diff(self.app_t) / 1000.0 if a.size > 1 else np.zeros(0)
        self.app_charge = np.concatenate([[0.0], np.cumsum(seg)]) if a.size else np.zeros(0)
        # -- events and ratings --------------------------------------------------------------
        self.events: list[tuple[float, str, str]] = []
        safety = roles.get("safety")
        if safety is not None:
            for row, t in zip(safety.strings, safety.string_stamps.tolist()):
                try:
                    ev = json.loads(row[0])
                except (json.JSONDecodeError, IndexError):
                    ev = {"kind": "?", "reason": row[0] if row else ""}
                self.events.append((float(ev.get("time", t)), str(ev.get("kind", "?")), str(ev.get("reason", ""))))
        self.ratings: list[tuple[float, float, bool]] = []
        for s in reader.streams.values():
            if s.name == RATINGS_STREAM or s.type == RATINGS_TYPE:
                if not s.sample_count or s.channel_format == "string":
                    continue
                v, t = reader.read_stream(s.stream_id)
                off = float(np.median([o for _, o in s.clock_offsets])) if s.clock_offsets else 0.0
                for row, ti in zip(v, t):
                    self.ratings.append((float(ti) + off, float(row[0]), bool(row[1]) if row.shape[0] > 1 else False))
        # the timeline runs to whatever came last: a session's final ramp-down (its commands and its
        # events, a watchdog trip's included) comes after the last EEG sample it saw
        ends = [x[-1] for x in (self.eeg_t, self.frame_t, self.app_t) if x.size]
        ends += [max(e[0] for e in self.events)] if self.events else []
        self.end_s = (max(ends) - self.t0) if ends else 0.0

    def _shown_state_names(self) -> list[str]:
        """Return the controller keys the operator may see (a blinded session's ``display_state``)."""
        if not self.info.blinded:
            return list(self.state_names)
        try:
            from closedloop.config.pipeline import PipelineConfig
            from closedloop.control import build_controller
            from closedloop.control.base import display_state

            controller = build_controller(PipelineConfig.model_validate(self.cfg).controller)
            return [k for k in display_state(controller) if k in self.state_names]
        except Exception:  # noqa: BLE001 - an older recording's config: show no controller state rather than the arm
            return []

    def hello(self) -> dict:
        """Return the page's first message, with the timeline's extent."""
        return {**self.info.hello(), "start_s": 0.0, "end_s": round(self.end_s, 3)}

    def window(self, t_rel: float) -> dict:
        """Return the snapshot at ``t_rel`` seconds from the start, as the live dashboard would have shown it."""
        t_rel = min(max(float(t_rel), 0.0), self.end_s)
        t = self.t0 + t_rel
        state = DashboardState(self.info)
        state.t0 = self.t0
        # EEG: the scrolling window, then the spectrum's span
        i0 = int(np.searchsorted(self.eeg_t, t - EEG_SPAN_S - 0.05))
        i1 = int(np.searchsorted(self.eeg_t, t, side="right"))
        if i1 > i0:
            j0 = max(0, i1 - max(8, int(SPECTRUM_SPAN_S * max(self.info.sfreq, 1.0))))
            state._push_roi(self.eeg_roi[j0:i1])
            state.add_eeg(float(self.eeg_t[i0]), self.eeg_display[i0:i1], None)
        state.update_spectrum()
        # frames and commands over the trace span
        lo = t - TRACE_SPAN_S
        f0, f1 = _range(self.frame_t, lo, t)
        state.add_frames((float(self.frame_t[i]), self.frame_v[i], int(self.frame_flags[i])) for i in range(f0, f1))
        status: dict = {"phase": "recorded", "output": "off", "frames": f1}
        c0, c1 = _range(self.cmd_t, lo, t)
        names = self.cmd_names
        if c1 > c0 and names:
            don, damp = names.index("desired_on"), names.index("desired_amplitude_mA")
            aon, aamp = names.index("allowed_on"), names.index("allowed_amplitude_mA")
            for i in range(c0, c1):
                state.add_desired(float(self.cmd_t[i]), self.cmd_v[i, damp] if self.cmd_v[i, don] else 0.0)
            last = self.cmd_v[c1 - 1]
            amp = float(last[aamp])
            target = float(last[damp]) if last[don] else 0.0
            if self.info.modality == "tes":
                status["output"] = "off" if amp <= 0 else ("on" if abs(amp - target) <= 1e-9 else "ramping")
            else:
                status["output"] = "on" if last[aon] else "off"
            status["amplitude_mA"] = amp
            if "safety_time" in names:
                st = self.cmd_v[:c1, names.index("safety_time")]
                st = st[np.isfinite(st)]
                status["session_s"] = float(st[-1] - st[0]) if st.size else None
        a0, a1 = _range(self.app_t, lo, t)
        for i in range(a0, a1):
            state.add_applied(
                float(self.app_t[i]), float(self.app_v[i, 0]), bool(self.app_v[i, 2]), bool(self.app_fire[i])
            )
        if a1 > 0:
            lat = self.app_v[max(0, a1 - 50) : a1, 4]
            for x in lat[np.isfinite(lat)]:
                state.add_timing(float(x), math.nan)
        status["dose"] = self._dose(t, a1)
        k1 = int(np.searchsorted(self.state_t, t, side="right"))
        if k1 > 0 and self.shown_state:
            row = self.state_v[k1 - 1]
            status["controller"] = {k: float(row[self.state_names.index(k)]) for k in self.shown_state}
        if f1 > 0:
            status["flags"] = int(self.frame_flags[f1 - 1])
        seen = [e for e in self.events if e[0] <= t]
        for et, kind, reason in seen[-200:]:
            state.add_event(et, kind, reason)
        status["watchdog"] = {"state": "recorded", "trips": sum(1 for e in seen if e[1] == "watchdog")}
        for rt, value, prompted in self.ratings:
            if rt <= t:
                state.add_rating(rt, value, prompted)
        state.status.update(status)
        snap = state.snapshot()
        snap["t"] = round(t_rel, 3)
        return snap

    def _dose(self, t: float, a1: int) -> dict:
        if self.info.modality != "tes" or a1 == 0:
            return {}
        charge = float(self.app_charge[a1 - 1])
        tail = max(0.0, t - float(self.app_t[a1 - 1]))  # the last applied amplitude holds until t
        charge += abs(float(self.app_v[a1 - 1, 0])) * tail / 1000.0
        return {"charge_C": charge}


class RecordedBackend:
    """The dashboard server's view of a :class:`RecordedSession`."""

    live = False

    def __init__(self, recorded: RecordedSession) -> None:
        self.recorded = recorded

    def hello(self) -> dict:
        """Return the page's first message."""
        return self.recorded.hello()

    def window(self, t: float) -> dict:
        """Return the snapshot at ``t`` s from the start."""
        return self.recorded.window(t)


def _range(t: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    return int(np.searchsorted(t, lo)), int(np.searchsorted(t, hi, side="right"))
