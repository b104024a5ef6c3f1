"""What the dashboard shows, as JSON-ready dicts: built the same way live and from a recording.

:class:`DashboardInfo` is the static part (channels, features, the
controller's thresholds, the profile's limits, blinding), sent once to each
page. :class:`DashboardState` keeps the recent history — display EEG, the ROI
signal for the spectrum, frames, applied commands, events, ratings — and
turns it into a *snapshot* (everything a page needs to draw from scratch) or
a *delta* (what came since the previous delta). Live, the dashboard thread
feeds it from the loop's queue (:mod:`closedloop.live.dashboard.feed`);
``closedloop view`` feeds it the slice of a recording up to the scrubbed time
(:mod:`closedloop.live.dashboard.recorded`). It never runs on the loop thread.

Times sent to the page are seconds from the session's time zero (the first
EEG sample), in the pipeline's time base (the local LSL clock live).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from closedloop.types import Quality

#: Seconds of EEG the page scrolls; of feature, amplitude and rating history it keeps.
EEG_SPAN_S = 5.0
TRACE_SPAN_S = 60.0
#: The display EEG is min/max-decimated to at most this many points per second and channel.
EEG_POINTS_PER_S = 200.0
#: The ROI spectrum: Welch over this many seconds, up to this frequency.
SPECTRUM_SPAN_S = 2.0
SPECTRUM_MAX_HZ = 45.0
MAX_DISPLAY_CHANNELS = 8
MAX_EVENTS = 200

FLAG_NAMES = {int(q): q.name for q in Quality if q.value}

#: Controller keys drawn as horizontal lines on the controlled feature.
LINE_KEYS = ("lower", "upper", "target", "threshold")

#: Dose gauges per modality: (label, dose key, limit key, unit).
_DOSE_GAUGES = {
    "tes": (("charge", "charge_C", "max_charge_C", "C"),),
    "rtms": (("pulses", "pulses", "max_pulses_per_session", "pulses"),),
    "tus": (("sonication", "sonication_s", "max_total_sonication_s", "s"),),
}


def finite_list(values, digits: int = 4) -> list:
    """Return ``values`` as a list of rounded floats, ``None`` where not finite (JSON has no NaN)."""
    a = np.asarray(values, dtype=np.float64)
    out = np.round(a, digits).astype(object)
    bad = ~np.isfinite(a)
    if bad.any():
        out[bad] = None
    return out.tolist()


def _last_median_ms(values) -> dict | None:
    """Return ``{"last", "median"}`` of durations in ms (None when there are none)."""
    if not values:
        return None
    return {"last": float(values[-1]) * 1e3, "median": float(np.median(np.asarray(values))) * 1e3}


def _num(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class DashboardInfo:
    """The static description of a session the page draws.

    Build it with :meth:`from_config` (live and recorded alike).
    """

    title: str
    mode: str
    ch_names: list[str]
    display: list[str]
    roi: list[str]
    sfreq: float
    features: list[str]
    feature_unit: str
    controlled: str | None
    lines: dict[str, float]
    bands: dict[str, tuple[float, float]]
    modality: str
    blinded: bool
    limits: dict[str, float]
    rates: dict[str, float]
    duration_s: float | None
    rating_prompt_s: float | None
    session_id: str = ""
    token_required: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_config(
        cls,
        cfg: Mapping,
        envelope: Mapping[str, Mapping],
        modality: str,
        ch_names: Sequence[str],
        feature_names: Sequence[str],
        *,
        mode: str = "live",
        duration_s: float | None = None,
        session_id: str = "",
        title: str | None = None,
    ) -> DashboardInfo:
        """Return the info of a pipeline (``cfg``: its config as JSON-ready dict) on a stream with ``ch_names``.

        ``envelope`` is :meth:`ResolvedPipeline.envelope` (``{limit: {"value": ...}}``).
        """
        ch_names = [str(c) for c in ch_names]
        feats = cfg.get("features") or {}
        out_cfg = cfg.get("output") or {}
        roi = _roi_channels(feats, ch_names)
        notes = []
        wanted = out_cfg.get("dashboard_channels")
        if wanted:
            display = [c for c in wanted if c in ch_names]
            missing = [c for c in wanted if c not in ch_names]
            if missing:
                notes.append(f"output.dashboard_channels: {missing} not in the stream; not shown")
        else:
            display = []
        if not display:
            display = (roi or ch_names)[:MAX_DISPLAY_CHANNELS]
        ctl = cfg.get("controller") or {}
        inner = ctl.get("inner") if isinstance(ctl.get("inner"), Mapping) else {}
        controlled = ctl.get("feature") or inner.get("feature")
        lines = {}
        for key in LINE_KEYS:
            v = _num(ctl.get(key, inner.get(key)))
            if v is not None:
                lines[key] = v
        bands = {}
        for name, edges in (feats.get("bands") or {}).items():
            try:
                lo, hi = (float(e) for e in edges)
            except (TypeError, ValueError):
                continue
            bands[str(name)] = (lo, hi)
        limits = {k: float(v["value"]) for k, v in envelope.items() if _num(v.get("value")) is not None}
        rates = {k: limits[k] for k in ("max_ramp_rate_mA_per_s", "emergency_ramp_rate_mA_per_s") if k in limits}
        log10 = bool(feats.get("log10", True))
        name = (cfg.get("pipeline") or {}).get("name", "session")
        return cls(
            title=title or str(name),
            mode=mode,
            ch_names=ch_names,
            display=display,
            roi=roi or list(ch_names),
            sfreq=float((cfg.get("source") or {}).get("sfreq", 0.0) or 0.0),
            features=[str(f) for f in feature_names],
            feature_unit="log10(uV^2)" if log10 else "uV^2",
            controlled=controlled if controlled in feature_names else None,
            lines=lines,
            bands=bands,
            modality=modality,
            blinded=bool(ctl.get("blinded", False)),
            limits=limits,
            rates=rates,
            duration_s=duration_s,
            rating_prompt_s=_num(out_cfg.get("rating_prompt_s")),
            session_id=session_id,
            notes=notes,
        )

    def hello(self) -> dict:
        """Return the first message a page gets."""
        return {
            "type": "hello",
            "title": self.title,
            "mode": self.mode,
            "channels": self.display,
            "sfreq": self.sfreq,
            "features": self.features,
            "feature_unit": self.feature_unit,
            "controlled": self.controlled,
            "lines": self.lines,
            "bands": {k: list(v) for k, v in self.bands.items()},
            "modality": self.modality,
            "blinded": self.blinded,
            "limits": {} if self.blinded else self.limits,
            "rates": self.rates,
            "duration_s": self.duration_s,
            "rating_prompt_s": self.rating_prompt_s,
            "session_id": self.session_id,
            "token_required": self.token_required,
            "eeg_span_s": EEG_SPAN_S,
            "trace_span_s": TRACE_SPAN_S,
            "flag_names": {str(k): v for k, v in FLAG_NAMES.items()},
            "notes": self.notes,
        }


def _roi_channels(feats: Mapping, ch_names: Sequence[str]) -> list[str]:
    """Return the stream channels the features are computed on (``channels`` or every ROI's), in order."""
    wanted: list[str] = list(feats.get("channels") or [])
    for members in (feats.get("rois") or {}).values():
        wanted += list(members)  # a list of channels, or a {channel: weight} mapping
    seen = []
    for c in wanted:
        if c in ch_names and c not in seen:
            seen.append(c)
    return seen


class DashboardState:
    """Recent history of a session and its status, turned into snapshots and deltas for the page.

    Parameters
    ----------
    info : DashboardInfo
        What is drawn.
    """

    def __init__(self, info: DashboardInfo) -> None:
        self.info = info
        self.t0: float | None = None
        sf = info.sfreq if info.sfreq > 0 else 250.0
        self._q = max(1, math.ceil(2 * sf / EEG_POINTS_PER_S))  # samples per min/max bucket (2 points)
        self._dt = 1.0 / sf
        self._k = len(info.display)
        # display EEG: decimated points (time, values) for the last EEG_SPAN_S
        self._eeg_t: deque[float] = deque()
        self._eeg_v: deque[np.ndarray] = deque()
        self._new_eeg_t: list[float] = []
        self._new_eeg_v: list[np.ndarray] = []
        self._carry = np.zeros((0, self._k))  # samples not yet filling a bucket
        self._carry_t = 0.0
        # ROI mean signal, undecimated, for the spectrum
        n_roi = max(8, int(SPECTRUM_SPAN_S * sf))
        self._roi = np.full(n_roi, np.nan)
        self._roi_n = 0
        self._spectrum: dict | None = None
        self._spectrum_new = False
        # frames, commands, events, ratings
        nf = len(info.features)
        self._frames: deque[tuple[float, np.ndarray, int]] = deque()
        self._new_frames: list[tuple[float, np.ndarray, int]] = []
        self._nf = nf
        self._applied: deque[tuple[float, float, float, float]] = deque()
        self._new_applied: list[tuple[float, float, float, float]] = []
        self._desired: deque[tuple[float, float]] = deque()
        self._new_desired: list[tuple[float, float]] = []
        self.events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self._new_events: list[dict] = []
        self.ratings: list[dict] = []
        self._new_ratings: list[dict] = []
        self.status: dict = {"phase": "starting"}
        self.latencies: deque[float] = deque(maxlen=100)
        self.ages: deque[float] = deque(maxlen=100)

    # -- time -----------------------------------------------------------------------------
    def rel(self, t: float) -> float:
        """Return ``t`` as seconds from the session's time zero (set by the first data)."""
        if self.t0 is None:
            self.t0 = float(t)
        return float(t) - self.t0

    # -- input ------------------------------------------------------------------------------
    def add_eeg(self, t_first: float, display: np.ndarray, roi_mean: np.ndarray | None) -> None:
        """Add consecutive samples: ``display`` (n × display channels, µV) and the ROI mean (n,)."""
        n = display.shape[0]
        if n == 0:
            return
        if self.t0 is None:
            self.t0 = float(t_first)
        if roi_mean is not None:
            self._push_roi(roi_mean)
        if self._carry.shape[0] == 0:
            self._carry_t = float(t_first)
        block = np.concatenate([self._carry, display]) if self._carry.shape[0] else display
        q = self._q
        whole = (block.shape[0] // q) * q
        if whole:
            b = block[:whole].reshape(-1, q, self._k)
            if q == 1:
                pts = b[:, 0, :]
                times = self._carry_t + np.arange(pts.shape[0]) * self._dt
            else:  # min then max of every bucket: spikes survive the decimation
                lo, hi = np.nanmin(b, axis=1), np.nanmax(b, axis=1)
                pts = np.empty((2 * lo.shape[0], self._k))
                pts[0::2], pts[1::2] = lo, hi
                starts = self._carry_t + np.arange(lo.shape[0]) * q * self._dt
                times = np.empty(2 * lo.shape[0])
                times[0::2], times[1::2] = starts, starts + 0.5 * q * self._dt
            rel = times - self.t0
            self._new_eeg_t.extend(rel.tolist())
            self._new_eeg_v.extend(pts)
            self._eeg_t.extend(rel.tolist())
            self._eeg_v.extend(pts)
            cut = rel[-1] - EEG_SPAN_S
            while self._eeg_t and self._eeg_t[0] < cut:
                self._eeg_t.popleft()
                self._eeg_v.popleft()
        self._carry = block[whole:].copy()
        self._carry_t = self._carry_t + whole * self._dt

    def _push_roi(self, x: np.ndarray) -> None:
        n = self._roi.shape[0]
        x = np.asarray(x, dtype=np.float64)[-n:]
        m = x.shape[0]
        self._roi[:-m] = self._roi[m:]
        self._roi[-m:] = x
        self._roi_n = min(n, self._roi_n + m)

    def add_frames(self, frames: Iterable[tuple[float, np.ndarray, int]]) -> None:
        """Add frames: ``(time, feature values, quality flag bits)``."""
        for t, values, flags in frames:
            item = (self.rel(t), values, int(flags))
            self._frames.append(item)
            self._new_frames.append(item)
        self._trim(self._frames)

    def add_desired(self, t: float, amplitude_mA: float) -> None:
        """Add what the controller asked for at frame time ``t``."""
        item = (self.rel(t), float(amplitude_mA))
        self._desired.append(item)
        self._new_desired.append(item)
        self._trim(self._desired)

    def add_applied(self, t: float, amplitude_mA: float, on: bool, fire: bool) -> None:
        """Add a command the adapter issued at ``t``."""
        item = (self.rel(t), float(amplitude_mA), float(on), float(fire))
        self._applied.append(item)
        self._new_applied.append(item)
        self._trim(self._applied)

    def add_event(self, t: float, kind: str, reason: str) -> None:
        """Add a safety event, operator action or session marker (filtered in a blinded session)."""
        from closedloop.live.publish import BLINDED_EVENT_KINDS

        if self.info.blinded and kind not in BLINDED_EVENT_KINDS:
            return
        ev = {"t": round(self.rel(t), 3), "kind": kind, "reason": reason}
        self.events.append(ev)
        self._new_events.append(ev)

    def add_rating(self, t: float, value: float, prompted: bool) -> None:
        """Add a pain rating given at ``t``."""
        r = {"t": round(self.rel(t), 3), "value": float(value), "prompted": bool(prompted)}
        self.ratings.append(r)
        self._new_ratings.append(r)

    def add_timing(self, latency_s: float, data_age_s: float) -> None:
        """Add the loop latency of a chunk's commands and the data age at its pull."""
        if math.isfinite(latency_s):
            self.latencies.append(latency_s)
        if math.isfinite(data_age_s):
            self.ages.append(data_age_s)

    def _trim(self, dq: deque) -> None:
        if dq:
            cut = dq[-1][0] - TRACE_SPAN_S
            while dq and dq[0][0] < cut:
                dq.popleft()

    # -- derived -------------------------------------------------------------------------------
    def update_spectrum(self) -> None:
        """Recompute the ROI spectrum (Welch, Hann windows of half the span, half overlap)."""
        sf = self.info.sfreq
        if sf <= 0 or self._roi_n < self._roi.shape[0]:
            return
        x = self._roi
        if not np.all(np.isfinite(x)):
            x = np.nan_to_num(x)
        nper = x.shape[0] // 2
        win = np.hanning(nper)
        scale = 1.0 / (sf * np.sum(win**2))
        psd = np.zeros(nper // 2 + 1)
        segs = 0
        for start in range(0, x.shape[0] - nper + 1, nper // 2):
            seg = x[start : start + nper]
            seg = (seg - seg.mean()) * win
            psd += np.abs(np.fft.rfft(seg)) ** 2
            segs += 1
        psd *= scale / segs
        psd[1:-1] *= 2.0
        freqs = np.fft.rfftfreq(nper, 1.0 / sf)
        keep = (freqs >= 1.0) & (freqs <= min(SPECTRUM_MAX_HZ, sf / 2))
        with np.errstate(divide="ignore"):
            logp = np.log10(psd[keep])
        self._spectrum = {"f": finite_list(freqs[keep], 2), "p": finite_list(logp, 3)}
        self._spectrum_new = True

    def output_state(self) -> str:
        """Return the state shown on the page when no frame says it (ramp-down, after the end)."""
        if self.status.get("fault"):
            return "fault"
        last = self._applied[-1][1] if self._applied else 0.0
        if self.info.modality != "tes":
            return self.status.get("output", "off")
        if last <= 0.0:
            return "off"
        return "ramping" if self.status.get("phase") in ("stopping", "ended") else self.status.get("output", "on")

    def status_dict(self) -> dict:
        """Return the status part of a message (blinded: nothing that reveals the arm)."""
        st = dict(self.status)
        lat, age = self.latencies, self.ages
        st["latency_ms"] = _last_median_ms(lat)
        st["data_age_ms"] = _last_median_ms(age)
        if self.info.blinded:
            for key in ("amplitude_mA", "output", "desired_mA", "dose", "safety_state"):
                st.pop(key, None)
            st["output"] = "blinded"
        else:
            st["output"] = self.output_state()
            st["dose"] = self._gauges(st.get("dose") or {}, st.get("session_s"))
        st["session_gauge"] = self._session_gauge(st.get("session_s"))
        return st

    def _gauges(self, dose: Mapping[str, float], session_s: float | None) -> list[dict]:
        out = []
        lim = self.info.limits
        if self.info.modality == "tes" and "max_amplitude_mA" in lim:
            amp = self._applied[-1][1] if self._applied else 0.0
            out.append({"label": "amplitude", "value": amp, "limit": lim["max_amplitude_mA"], "unit": "mA"})
        for label, key, limit_key, unit in _DOSE_GAUGES.get(self.info.modality, ()):
            if limit_key in lim:
                out.append({"label": label, "value": float(dose.get(key, 0.0)), "limit": lim[limit_key], "unit": unit})
        return out

    def _session_gauge(self, session_s: float | None) -> dict | None:
        limit = self.info.limits.get("max_session_duration_s")
        if session_s is None or limit is None:
            return None
        return {"label": "session time", "value": float(session_s), "limit": limit, "unit": "s"}

    # -- messages ---------------------------------------------------------------------------------
    def _eeg_msg(self, times: Sequence[float], values: Sequence[np.ndarray]) -> dict:
        if not times:
            return {"t": [], "v": [[] for _ in range(self._k)]}
        v = np.asarray(values)
        return {"t": finite_list(times, 4), "v": [finite_list(v[:, i], 2) for i in range(self._k)]}

    def _frames_msg(self, frames: Sequence[tuple[float, np.ndarray, int]]) -> dict:
        if not frames:
            return {"t": [], "v": [[] for _ in range(self._nf)], "flags": []}
        v = np.asarray([f[1] for f in frames], dtype=np.float64).reshape(len(frames), self._nf)
        return {
            "t": finite_list([f[0] for f in frames], 4),
            "v": [finite_list(v[:, i], 4) for i in range(self._nf)],
            "flags": [f[2] for f in frames],
        }

    def _stim_msg(self, applied: Sequence, desired: Sequence) -> dict:
        if self.info.blinded:
            return {"t": [], "a": [], "fire": [], "dt": [], "da": []}
        return {
            "t": finite_list([a[0] for a in applied], 4),
            "a": finite_list([a[1] for a in applied], 4),
            "fire": [int(a[3]) for a in applied],
            "dt": finite_list([d[0] for d in desired], 4),
            "da": finite_list([d[1] for d in desired], 4),
        }

    def snapshot(self) -> dict:
        """Return everything a page needs to draw from scratch (clears nothing)."""
        if self._spectrum is None:
            self.update_spectrum()
        return {
            "type": "snapshot",
            "eeg": self._eeg_msg(list(self._eeg_t), list(self._eeg_v)),
            "frames": self._frames_msg(list(self._frames)),
            "stim": self._stim_msg(list(self._applied), list(self._desired)),
            "events": list(self.events),
            "ratings": list(self.ratings),
            "spectrum": self._spectrum,
            "status": self.status_dict(),
        }

    def delta(self) -> dict:
        """Return what came since the previous delta, and forget it."""
        msg = {
            "type": "delta",
            "eeg": self._eeg_msg(self._new_eeg_t, self._new_eeg_v),
            "frames": self._frames_msg(self._new_frames),
            "stim": self._stim_msg(self._new_applied, self._new_desired),
            "events": self._new_events,
            "ratings": self._new_ratings,
            "spectrum": self._spectrum if self._spectrum_new else None,
            "status": self.status_dict(),
        }
        self._new_eeg_t, self._new_eeg_v = [], []
        self._new_frames, self._new_applied, self._new_desired = [], [], []
        self._new_events, self._new_ratings = [], []
        self._spectrum_new = False
        return msg
