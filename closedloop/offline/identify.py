"""Identify the plant — stimulation → feature — from recorded sessions (``closedloop identify``).

The model is :mod:`closedloop.pain.plant`'s: first order plus dead time
(gain, time constant, delay), ``additive`` on the feature or on the band's
``amplitude``, seen through each session's own measurement (window, Hann
weighting, EMA), driven by the amplitude the safety layer allowed.

Closed loop makes this harder than it looks: the controller stimulates
*because* the feature was low, and EEG fluctuations last seconds, so the
stimulation is correlated with the noise and a plain least-squares fit is
biased (on the synthetic plant it finds a gain 10-40 % low, a time constant
25-95 % short and a spurious delay, with intervals that exclude the truth;
``benchmarks/pain_truth.py``). The fit is the direct prediction-error method,
which stays consistent in closed loop when its noise model can whiten the
residuals (Forssell & Ljung, "Closed-loop identification revisited",
*Automatica* 1999;35:1215-1241): the residuals ``y - c_s - effect(u; θ)``
(one offset per session) are taken every ``decimate_s`` seconds and whitened
by an autoregressive noise model of order ``noise_order`` fitted to them at
every step (variable projection: the noise model is profiled out), and the sum
of squared innovations is minimised — over gain and time constant on a grid of
delays (every 0.25 s), then over all three from the best grid point (a delay
between grid steps interpolates the two neighbouring ones). The defaults (one
residual a second, ten lags: ten seconds of noise memory) recovered the
synthetic plant within 6 % from two 10-min sessions on quiet synthetic EEG.

Uncertainty: the asymptotic covariance of the prediction-error estimate
(innovation variance times the inverse of J'J of the whitened residuals) for
every parameter not held at a bound; a delay at 0 gets a profile-likelihood
interval instead (grid delays whose ``n log(SSE / SSE_min)`` stays under 3.84,
the 95 % point of chi² with one degree of freedom).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from closedloop.pain.plant import ASSUMPTIONS, PLANT_FORMAT, Measurement, PlantFile, measurement_for, simulate

__all__ = ["IdentifyError", "PlantData", "fit_plant", "identify", "load_plant_data"]


class IdentifyError(ValueError):
    """The sessions cannot identify a plant (no stimulation, no such feature, not a closedloop session)."""


@dataclass
class PlantData:
    """One session's feature and stimulation, frame by frame.

    Attributes
    ----------
    name : str
        The file.
    y : ndarray
        The feature (NaN where unusable: flagged or non-finite).
    u : ndarray
        The allowed amplitude at each frame (mA), applied until the next frame.
    meas : Measurement
        How the session's pipeline measured the feature.
    sha256 : str
        The file's SHA-256.
    """

    name: str
    y: np.ndarray
    u: np.ndarray
    meas: Measurement
    sha256: str = ""
    notes: list[str] = field(default_factory=list)


def load_plant_data(path: str | os.PathLike, feature: str | None = None, step_s: float = 0.025) -> PlantData:
    """Read a closedloop ``session.xdf``: the feature, the allowed amplitude and the pipeline's measurement.

    Parameters
    ----------
    path : str or Path
        A session recorded (or replayed) by closedloop.
    feature : str, optional
        The feature (default: the one the session's controller read).
    step_s : float
        Largest model grid step (s).

    Raises
    ------
    IdentifyError
        If the file is not a closedloop session, has no such feature, or no tES amplitude.
    """
    from closedloop.config.painmodel import file_sha256
    from closedloop.control.frame_usability import BAD_FLAGS
    from closedloop.offline.metrics import Trace
    from closedloop.recording.reader import XDFReader

    path = Path(path)
    try:
        reader = XDFReader(path)
        trace = Trace.from_xdf(path)
    except (ValueError, OSError) as e:
        text = str(e)
        raise IdentifyError(text if str(path) in text else f"{path}: {text}") from None
    features_cfg, sfreq, controller = recorded_pipeline(reader, path)
    if feature is None:
        names = controller.features() if controller is not None else []
        if len(names) != 1:
            raise IdentifyError(
                f"{path}: the controller reads {names or 'no feature'}; name the feature with --feature"
            )
        feature = names[0]
    if feature not in trace.feature_names:
        raise IdentifyError(f"{path}: no feature {feature!r}; the session has {list(trace.feature_names)}")
    meas = measurement_for(features_cfg, sfreq, feature, step_s)
    y = trace.feature(feature).astype(float)
    bad = (trace.flags & int(BAD_FLAGS)) != 0
    y[bad | ~np.isfinite(y)] = np.nan
    u = np.where(np.isfinite(trace.allowed_amplitude_mA), trace.allowed_amplitude_mA, 0.0)
    notes = []
    t = trace.time
    if t.size > 1:
        gaps = np.abs(np.diff(t) - meas.hop_s) > 0.5 * meas.hop_s
        if gaps.any():
            notes.append(f"{path.name}: {int(gaps.sum())} gaps between frames; frames taken as consecutive")
    return PlantData(str(path), y, u, meas, file_sha256(path), notes)


# --- the fit -------------------------------------------------------------------------------------------------


@dataclass
class _Problem:
    data: list[PlantData]
    response: str
    dec: list[int]  # decimation per session
    order: int
    skip: int  # frames left out at each session's start (window and EMA settling)

    def residuals(self, gain: float, tau: float, delay_s: float) -> np.ndarray:
        """Return the innovations (whitened, decimated residuals) of all sessions."""
        pieces, masks = [], []
        for d, dec in zip(self.data, self.dec):
            e = d.y - _effect(d, gain, tau, delay_s, self.response)
            e = e[self.skip :: dec]
            ok = np.isfinite(e)
            if ok.sum() < 2:
                continue
            e = np.where(ok, e - e[ok].mean(), 0.0)
            pieces.append(e)
            masks.append(ok)
        return _whiten(pieces, masks, self.order)


def _effect(d: PlantData, gain: float, tau: float, delay_s: float, response: str) -> np.ndarray:
    """Return the modelled effect; a delay between grid steps interpolates the two neighbouring ones."""
    steps = delay_s / d.meas.step_s
    lo = math.floor(steps + 1e-9)
    frac = steps - lo
    a = simulate(d.u, gain, tau, lo, response, d.meas)
    if frac < 1e-9:
        return a
    return (1.0 - frac) * a + frac * simulate(d.u, gain, tau, lo + 1, response, d.meas)


def _whiten(pieces: list[np.ndarray], masks: list[np.ndarray], p: int) -> np.ndarray:
    """Fit one AR(p) model to all pieces (least squares) and return its innovations.

    Only samples whose whole lag window is usable give a row.
    """
    if p == 0:
        return np.concatenate([e[m] for e, m in zip(pieces, masks)]) if pieces else np.zeros(0)
    rows, targets = [], []
    for e, m in zip(pieces, masks):
        n = e.shape[0]
        if n <= p:
            continue
        lagged = np.column_stack([e[p - k - 1 : n - k - 1] for k in range(p)])
        good = np.ones(n - p, dtype=bool)
        for k in range(p + 1):
            good &= m[p - k : n - k]
        rows.append(lagged[good])
        targets.append(e[p:][good])
    if not rows:
        return np.zeros(0)
    X, t = np.concatenate(rows), np.concatenate(targets)
    a, *_ = np.linalg.lstsq(X, t, rcond=None)
    return t - X @ a


@dataclass
class PlantFit:
    """The result of :func:`fit_plant`."""

    gain: float
    tau_s: float
    delay_s: float
    gain_se: float
    tau_ci: tuple[float, float]
    gain_ci: tuple[float, float]
    delay_ci: tuple[float, float]
    innovation_sd: float
    n: int
    r2: float
    profile: list[tuple[float, float]]  # (delay_s, SSE)


def fit_plant(
    data: Sequence[PlantData],
    response: str = "additive",
    max_delay_s: float = 2.0,
    noise_order: int = 10,
    decimate_s: float = 1.0,
    tau_bounds_s: tuple[float, float] = (0.05, 120.0),
) -> PlantFit:
    """Fit gain, time constant and delay to sessions (see the module docstring).

    Parameters
    ----------
    data : list of PlantData
        The sessions.
    response : {"additive", "amplitude"}
        How the stimulation acts on the feature.
    max_delay_s : float
        Largest delay tried (s).
    noise_order : int
        Order of the autoregressive noise model (0: plain least squares,
        biased in closed loop).
    decimate_s : float
        Residuals are taken this often (s) before whitening.
    tau_bounds_s : (float, float)
        Range of the time constant (s).
    """
    from scipy.optimize import least_squares

    if response not in ("additive", "amplitude"):
        raise IdentifyError(f"response must be 'additive' or 'amplitude', not {response!r}")
    if not data:
        raise IdentifyError("no sessions")
    if not any(np.any(d.u > 0) for d in data):
        raise IdentifyError("no stimulation in these sessions: nothing to identify (allowed amplitude always 0)")
    if response == "amplitude" and not all(d.meas.log10 for d in data):
        raise IdentifyError("response 'amplitude' needs a feature in log10 power ([features] log10 = true)")
    skip = max(int(math.ceil(len(d.meas.weights) / d.meas.m + 3 / max(d.meas.ema_alpha, 1e-3))) for d in data)
    dec = [max(1, round(decimate_s / d.meas.hop_s)) for d in data]
    prob = _Problem(list(data), response, dec, int(noise_order), skip)
    lo, hi = math.log(tau_bounds_s[0]), math.log(tau_bounds_s[1])
    scale = max(float(np.nanmax(np.abs(d.u))) for d in data) or 1.0
    g0 = 0.1 / scale if response == "amplitude" else float(np.nanstd(np.concatenate([d.y for d in data]))) / scale

    def solve(delay: float, start) -> tuple[float, object]:
        def fun(p):
            return prob.residuals(p[0], math.exp(p[1]), delay)

        sol = least_squares(fun, start, bounds=([-50.0 / scale, lo], [50.0 / scale, hi]), x_scale=[g0, 1.0])
        return float((sol.fun**2).sum()), sol

    # a coarse grid of delays (gain and time constant fitted at each), then all three together
    coarse = max(0.25, min(d.meas.step_s for d in data))
    grid = np.arange(0.0, max_delay_s + 1e-9, coarse)
    profile: list[tuple[float, float]] = []
    start = np.array([g0, 0.0])
    best = None
    for delay in grid:
        sse_d, sol = solve(float(delay), start)
        profile.append((float(delay), sse_d))
        if best is None or sse_d < best[0]:
            best = (sse_d, float(delay), sol.x)
        start = sol.x
    _, d0, x0 = best

    def fun3(p):
        return prob.residuals(p[0], math.exp(p[1]), p[2])

    sol = least_squares(
        fun3,
        [x0[0], x0[1], d0],
        bounds=([-50.0 / scale, lo, 0.0], [50.0 / scale, hi, max_delay_s]),
        x_scale=[g0, 1.0, coarse],
        diff_step=[1e-6, 1e-6, 1e-3],
    )
    sse = float((sol.fun**2).sum())
    n = sol.fun.shape[0]
    sigma2 = sse / max(n - 3, 1)
    gain, log_tau, delay = (float(v) for v in sol.x)
    # covariance of the parameters not held at a bound (a delay of 0 is a bound)
    free = np.flatnonzero(sol.active_mask == 0)
    se = [0.0, 0.0, 0.0]
    try:
        cov = np.linalg.inv(sol.jac[:, free].T @ sol.jac[:, free]) * sigma2
        for j, i in enumerate(free):
            se[i] = math.sqrt(max(cov[j, j], 0.0))
    except np.linalg.LinAlgError:
        se = [math.inf] * 3
    se_g, se_lt, se_d = se
    z = 1.959963984540054
    chi2 = 3.841458820694124  # 95 % point of chi² with 1 degree of freedom
    if sol.active_mask[2] != 0:  # at a bound: the delays the profile cannot tell from it
        inside = [k for k, v in profile if n * math.log(max(v, 1e-300) / sse) <= chi2] + [delay]
        delay_ci = (min(inside), max(inside))
    else:
        delay_ci = (max(0.0, delay - z * se_d), delay + z * se_d)
    # how much of the feature's variance (after each session's mean) the modelled effect explains
    ss_res = ss_tot = 0.0
    for d in data:
        eff = _effect(d, gain, math.exp(log_tau), delay, response)
        ok = np.isfinite(d.y)
        ok[:skip] = False
        if ok.sum() < 2:
            continue
        yc = d.y[ok] - d.y[ok].mean()
        r = yc - (eff[ok] - eff[ok].mean())
        ss_res += float(r @ r)
        ss_tot += float(yc @ yc)
    return PlantFit(
        gain=gain,
        tau_s=math.exp(log_tau),
        delay_s=delay,
        gain_se=se_g,
        tau_ci=(math.exp(log_tau - z * se_lt), math.exp(log_tau + z * se_lt)),
        gain_ci=(gain - z * se_g, gain + z * se_g),
        delay_ci=delay_ci,
        innovation_sd=math.sqrt(sigma2),
        n=n,
        r2=1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        profile=profile,
    )


def identify(
    sessions: Sequence[str | os.PathLike],
    feature: str | None = None,
    response: str = "additive",
    max_delay_s: float = 2.0,
    noise_order: int = 10,
    decimate_s: float = 1.0,
) -> PlantFile:
    """Identify a plant from closedloop sessions; return the plant file's content.

    Raises
    ------
    IdentifyError
        Naming what is missing (see :func:`load_plant_data`, :func:`fit_plant`).
    """
    from closedloop import __version__

    if not sessions:
        raise IdentifyError("give at least one session.xdf")
    data = [load_plant_data(s, feature) for s in sessions]
    if feature is None:
        feature = _common_feature(sessions)
    fit = fit_plant(data, response, max_delay_s, noise_order, decimate_s)
    return PlantFile(
        format=PLANT_FORMAT,
        feature=feature,
        response=response,
        gain=fit.gain,
        tau_s=fit.tau_s,
        delay_s=fit.delay_s,
        uncertainty={
            "gain_se": fit.gain_se,
            "gain_ci95": list(fit.gain_ci),
            "tau_s_ci95": list(fit.tau_ci),
            "delay_s_ci95": list(fit.delay_ci),
            "method": "prediction-error fit with an AR noise model; gain and time constant: asymptotic covariance "
            "(J'J of the whitened residuals); delay: profile likelihood (chi2, 1 df)",
        },
        fit={
            "sessions": [{"file": d.name, "sha256": d.sha256} for d in data],
            "frames": int(sum(d.y.shape[0] for d in data)),
            "innovations": fit.n,
            "innovation_sd": fit.innovation_sd,
            "r2": fit.r2,
            "noise_order": noise_order,
            "decimate_s": decimate_s,
            "max_delay_s": max_delay_s,
            "measurement": data[0].meas.describe(),
            "delay_profile": [[k, v] for k, v in fit.profile],
            "notes": [n for d in data for n in d.notes],
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "closedloop_version": __version__,
        },
        assumptions=list(ASSUMPTIONS),
    )


def _common_feature(sessions: Sequence[str | os.PathLike]) -> str:
    from closedloop.recording.reader import XDFReader

    names = set()
    for path in sessions:
        _, _, controller = recorded_pipeline(XDFReader(path), Path(path))
        names.update(controller.features()[:1] if controller is not None else [])
    if len(names) != 1:
        raise IdentifyError(f"the sessions' controllers read different features {sorted(names)}; give --feature")
    return names.pop()


def recorded_pipeline(reader, path: Path):
    """Return ``(FeaturesConfig, sfreq, controller config or None)`` of the pipeline a session's header records.

    Raises
    ------
    IdentifyError
        If the header holds no pipeline (not a closedloop session).
    """
    from pydantic import TypeAdapter, ValidationError

    from closedloop.config.controllers import ControllerConfig
    from closedloop.config.features import FeaturesConfig

    text = reader.file_header.findtext("pipeline_json")
    if not text:
        raise IdentifyError(f"{path}: no pipeline in the file header (not a closedloop session)")
    doc = json.loads(text)
    feats = dict(doc["features"])
    method = "welch" if feats.get("method") == "periodogram" else feats.get("method")
    for sub in ("welch", "iir"):  # the header holds every setting; only the method's own section was given
        if sub != method:
            feats.pop(sub, None)
    try:
        features_cfg = FeaturesConfig.model_validate(feats)
        ctl = doc.get("controller")
        controller = TypeAdapter(ControllerConfig).validate_python(ctl) if ctl else None
    except ValidationError as e:
        raise IdentifyError(f"{path}: the recorded pipeline does not validate: {e.errors()[0]['msg']}") from None
    return features_cfg, float(doc["source"]["sfreq"]), controller
