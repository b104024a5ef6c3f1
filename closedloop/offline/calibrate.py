"""Calibrate a per-participant model from EEG features to pain ratings (``closedloop calibrate``).

Rows. Each session's features are extracted with the pipeline (the very
extractor a live session runs, :func:`closedloop.offline.features.extract_features`)
and its ratings read (:func:`closedloop.pain.ratings.ratings_from_recording`).
With ``rows = "ratings"`` (the default) each rating is one row: the first frame
at or after the moment it was given, with each feature at each lag before it;
with ``rows = "frames"`` every frame with a rating no older than ``max_age_s``
is a row (the held rating as its target: many correlated rows per rating).
Rows whose frame, or a lagged frame, is flagged bad or not finite are left out.

Models, in numpy/scipy (scikit-learn is not a dependency, and the two models
are a few lines each): ridge regression of the rating, or L2-penalised logistic
regression of ``rating >= threshold``, on features standardised with the
training rows' mean and standard deviation. The penalty ``alpha`` (per row,
on standardised features) is chosen by an inner cross-validation on the
training rows only.

Validation never shuffles frames: EEG features and ratings are autocorrelated,
so a random split puts near-copies of test rows in the training set and
reports skill that is not there. Folds are contiguous blocks in time
(``blocked``, k blocks; or ``forward``: each block predicted from the blocks
before it; or ``sessions``: leave one session out), and training rows within
``gap_s`` of a test row of the same session are left out of that fold (the
lag, the window and the smoothing would otherwise share samples between them).
The score — R² (1 - SS_res / SS_tot over the pooled out-of-fold predictions)
or the AUC — gets a 95 % confidence interval from a moving-block bootstrap of
the out-of-fold pairs (blocks of ``block_s`` seconds keep the autocorrelation;
Künsch, Ann Stat 1989).

The model file (:class:`~closedloop.config.painmodel.PainModel`) records the
sessions and their SHA-256, the SHA-256 of the training rows and of the
pipeline's feature settings, the cross-validated score and the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from closedloop.config.painmodel import FORMAT, ModelTerm, PainModel, features_hash, file_sha256

__all__ = [
    "CalibrationData",
    "CalibrationError",
    "CalibrationResult",
    "auc",
    "block_bootstrap_ci",
    "calibrate",
    "cross_validate",
    "fit_logistic",
    "fit_ridge",
    "folds",
    "load_calibration_data",
    "r2",
]

#: Default grid of penalties (per row, on standardised features).
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


class CalibrationError(ValueError):
    """The sessions cannot calibrate a model (no ratings, no such feature, too few rows)."""


@dataclass
class CalibrationData:
    """The rows of a calibration.

    Attributes
    ----------
    terms : list of (str, float)
        ``(feature, lag_s)`` of each column of ``X``.
    X : ndarray (n, n_terms)
        Inputs.
    y : ndarray (n,)
        The ratings.
    t : ndarray (n,)
        Time of each row (s, pipeline time base of its session).
    session : ndarray of int (n,)
        Which session each row comes from.
    files : list of dict
        ``file``, ``sha256``, ``rows``, ``ratings`` per session.
    frame_interval_s : float
        hop / sfreq.
    notes : list of str
        What was left out and why.
    """

    terms: list[tuple[str, float]]
    X: np.ndarray
    y: np.ndarray
    t: np.ndarray
    session: np.ndarray
    files: list[dict]
    frame_interval_s: float
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def sha256(self) -> str:
        """Return the SHA-256 of the training rows (terms, inputs, targets, sessions)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.terms).encode())
        for a in (self.X, self.y, self.session.astype(np.int64)):
            h.update(np.ascontiguousarray(a, dtype=a.dtype).tobytes())
        return h.hexdigest()


def load_calibration_data(
    sessions: Sequence[str | os.PathLike],
    resolved,
    features: Sequence[str] | None = None,
    lags_s: Sequence[float] = (0.0,),
    rows: str = "ratings",
    max_age_s: float | None = None,
) -> CalibrationData:
    """Extract features and ratings from sessions and build the rows.

    Parameters
    ----------
    sessions : list of str or Path
        Recordings holding the EEG and the rating stream (``session.xdf`` or
        any XDF file with both).
    resolved : ResolvedPipeline
        The pipeline: its features, and its ``[ratings]`` (which stream).
    features : list of str, optional
        The model's inputs (default: every feature the extractor computes).
    lags_s : list of float
        Lags (s), each a whole number of frames; every feature at every lag.
    rows : {"ratings", "frames"}
        One row per rating, or one per frame with a recent rating.
    max_age_s : float, optional
        ``rows = "frames"``: the oldest rating a frame may take (default the
        pipeline's ``ratings.max_age_s``, else 30 s).

    Raises
    ------
    CalibrationError
        Naming what is missing.
    """
    from closedloop.control.frame_usability import BAD_FLAGS
    from closedloop.offline.features import extract_features
    from closedloop.pain.ratings import ratings_from_recording

    cfg = resolved.config
    if cfg.ratings is None:
        raise CalibrationError(
            f"{resolved.path}: --target rating needs [ratings] in the pipeline (the stream that holds the ratings)"
        )
    if rows not in ("ratings", "frames"):
        raise CalibrationError(f"rows must be 'ratings' or 'frames', not {rows!r}")
    hop_s = cfg.features.hop_samples / cfg.sfreq
    lag_frames = []
    for lag in lags_s:
        k = lag / hop_s
        if lag < 0 or abs(k - round(k)) > 1e-6:
            raise CalibrationError(f"lag {lag:g} s is not a whole number of frames (a frame every {hop_s:g} s) >= 0")
        lag_frames.append(round(k))
    if max_age_s is None:
        max_age_s = cfg.ratings.max_age_s or 30.0
    Xs, ys, ts, ss, files, notes = [], [], [], [], [], []
    terms: list[tuple[str, float]] | None = None
    for i, path in enumerate(sessions):
        path = Path(path)
        table = extract_features(path, resolved)
        names = list(table.feature_names)
        use = list(features) if features else names
        missing = [f for f in use if f not in names]
        if missing:
            raise CalibrationError(f"{path}: no feature(s) {missing}; the pipeline computes {names}")
        if terms is None:
            terms = [(f, lag_frames[j] * hop_s) for f in use for j in range(len(lag_frames))]
        cols = [names.index(f) for f in use]
        vals = table.values[:, cols]
        bad = ((table.flags & int(BAD_FLAGS)) != 0) | ~np.all(np.isfinite(vals), axis=1)
        rr = ratings_from_recording(path, cfg.ratings)
        notes += [f"{path.name}: {n}" for n in rr.notes]
        if len(rr) == 0:
            notes.append(f"{path.name}: no ratings; left out")
            files.append({"file": str(path), "sha256": file_sha256(path), "rows": 0, "ratings": 0})
            continue
        t = table.time
        if rows == "ratings":
            k = np.searchsorted(t, rr.times, side="left")
            keep = k < t.shape[0]
            keep[keep] &= (t[k[keep]] - rr.times[keep]) <= hop_s + 1e-9
            frame_idx, target = k[keep], rr.values[keep]
        else:
            j = np.searchsorted(rr.times, t, side="right") - 1
            keep = j >= 0
            keep[keep] &= (t[keep] - rr.times[j[keep]]) <= max_age_s
            frame_idx, target = np.flatnonzero(keep), rr.values[j[keep]]
        X = np.empty((frame_idx.shape[0], len(use) * len(lag_frames)))
        ok = np.ones(frame_idx.shape[0], dtype=bool)
        for jj, lag in enumerate(lag_frames):
            src = frame_idx - lag
            inside = src >= 0
            src_c = np.where(inside, src, 0)
            ok &= inside & ~bad[src_c]
            X[:, jj :: len(lag_frames)] = vals[src_c]
        n_out = int((~ok).sum())
        if n_out:
            notes.append(f"{path.name}: {n_out} row(s) left out (a flagged or non-finite frame, or before the lag)")
        Xs.append(X[ok])
        ys.append(target[ok])
        ts.append(t[frame_idx[ok]])
        ss.append(np.full(int(ok.sum()), i))
        files.append({"file": str(path), "sha256": file_sha256(path), "rows": int(ok.sum()), "ratings": len(rr)})
    if terms is None or not Xs or sum(len(y) for y in ys) == 0:
        raise CalibrationError("no rows: the sessions hold no ratings that fall on usable frames")
    return CalibrationData(
        terms,
        np.concatenate(Xs),
        np.concatenate(ys).astype(float),
        np.concatenate(ts),
        np.concatenate(ss).astype(int),
        files,
        hop_s,
        notes,
    )


# --- models -------------------------------------------------------------------------------------------------


@dataclass
class Fitted:
    """A model fitted on standardised inputs: ``z = intercept + coef @ ((x - center) / scale)``."""

    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float

    def linear(self, X: np.ndarray) -> np.ndarray:
        """Return the linear predictor of the rows of ``X``."""
        return self.intercept + ((X - self.center) / self.scale) @ self.coef


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    return center, scale


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> Fitted:
    """Fit ridge regression: minimise ``mean((y - b - Z w)^2) + alpha |w|^2`` on standardised ``Z``."""
    center, scale = _standardise(X)
    Z = (X - center) / scale
    n, p = Z.shape
    b = float(y.mean())
    w = np.linalg.solve(Z.T @ Z / n + alpha * np.eye(p), Z.T @ (y - b) / n)
    return Fitted(center, scale, w, b, alpha)


def fit_logistic(X: np.ndarray, y: np.ndarray, alpha: float) -> Fitted:
    """Fit L2-penalised logistic regression: minimise ``mean(log-loss) + alpha / 2 |w|^2`` (intercept free)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    center, scale = _standardise(X)
    Z = (X - center) / scale
    n, p = Z.shape
    yb = y.astype(float)

    def loss(theta):
        b, w = theta[0], theta[1:]
        z = b + Z @ w
        value = -np.mean(yb * log_expit(z) + (1 - yb) * log_expit(-z)) + 0.5 * alpha * w @ w
        r = expit(z) - yb
        grad = np.concatenate([[r.mean()], Z.T @ r / n + alpha * w])
        return value, grad

    m = min(max(yb.mean(), 1e-6), 1 - 1e-6)
    theta0 = np.concatenate([[math.log(m / (1 - m))], np.zeros(p)])
    sol = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    return Fitted(center, scale, sol.x[1:], float(sol.x[0]), alpha)


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """Return ``1 - SS_res / SS_tot`` (SS_tot about the mean of ``y``)."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot if ss_tot > 0 else math.nan


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Return the area under the ROC curve of ``score`` for binary ``y`` (Mann-Whitney, ties counted half)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(score)
    return (float(ranks[y].sum()) - n1 * (n1 + 1) / 2) / (n1 * n0)


# --- validation ------------------------------------------------------------------------------------------------


def folds(
    t: np.ndarray, session: np.ndarray, k: int = 5, scheme: str = "blocked", gap_s: float = 0.0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return (train, test) index arrays of time-blocked folds; rows are never shuffled.

    Parameters
    ----------
    t : ndarray
        Row times (s), ascending within each session.
    session : ndarray of int
        Session of each row; rows are in session order, then time order.
    k : int
        Number of blocks (``blocked``, ``forward``).
    scheme : {"blocked", "forward", "sessions"}
        ``blocked``: k contiguous blocks, each the test set once, trained on
        the rest; ``forward``: block j tested on a model of blocks before it
        (j = 1 .. k-1); ``sessions``: leave one session out.
    gap_s : float
        Training rows of the test rows' session within ``gap_s`` of a test
        row are left out of the fold.
    """
    n = t.shape[0]
    if scheme == "sessions":
        ids = np.unique(session)
        if ids.shape[0] < 2:
            raise CalibrationError("--cv sessions needs at least two sessions with ratings")
        blocks = [np.flatnonzero(session == s) for s in ids]
    else:
        if k < 2 or n < 2 * k:
            raise CalibrationError(f"{n} rows cannot make {k} time blocks of at least two rows")
        edges = np.linspace(0, n, k + 1).round().astype(int)
        blocks = [np.arange(edges[i], edges[i + 1]) for i in range(k)]
    out = []
    for j, test in enumerate(blocks):
        if scheme == "forward":
            if j == 0:
                continue
            train = np.concatenate(blocks[:j])
        else:
            train = np.concatenate([b for i, b in enumerate(blocks) if i != j])
        if gap_s > 0 and train.size:
            keep = np.ones(train.shape[0], dtype=bool)
            for s in np.unique(session[test]):
                tt = t[test][session[test] == s]
                near = (t[train] >= tt.min() - gap_s) & (t[train] <= tt.max() + gap_s)
                keep &= ~((session[train] == s) & near)
            train = train[keep]
        out.append((train, test))
    return out


def _fit(kind: str, X: np.ndarray, y: np.ndarray, alpha: float) -> Fitted:
    return fit_ridge(X, y, alpha) if kind == "ridge" else fit_logistic(X, y, alpha)


def _score(kind: str, y: np.ndarray, z: np.ndarray) -> float:
    return r2(y, z) if kind == "ridge" else auc(y, z)


def _choose_alpha(kind, X, y, t, session, alphas, k, gap_s) -> float:
    """Choose the penalty by blocked cross-validation within these rows (the inner loop)."""
    if len(alphas) == 1:
        return float(alphas[0])
    try:
        inner = folds(t, session, k, "blocked", gap_s)
    except CalibrationError:
        return float(alphas[len(alphas) // 2])
    best, best_score = float(alphas[0]), -math.inf
    for a in alphas:
        pred = np.full(y.shape[0], np.nan)
        for tr, te in inner:
            if tr.size < 3 or (kind == "logistic" and np.unique(y[tr]).size < 2):
                continue
            pred[te] = _fit(kind, X[tr], y[tr], a).linear(X[te])
        ok = np.isfinite(pred)
        score = _score(kind, y[ok], pred[ok]) if ok.sum() > 2 else -math.inf
        if math.isfinite(score) and score > best_score:
            best, best_score = float(a), score
    return best


@dataclass
class CVResult:
    """Cross-validation of one model kind on one set of rows."""

    kind: str
    scheme: str
    score_name: str
    score: float
    ci95: tuple[float, float]
    per_fold: list[float]
    alphas: list[float]
    oof: np.ndarray  # out-of-fold linear predictor (NaN for rows never tested)
    fold_coefs: np.ndarray  # (folds, terms), standardised


def cross_validate(
    data: CalibrationData,
    kind: str = "ridge",
    target: np.ndarray | None = None,
    k: int = 5,
    scheme: str = "blocked",
    gap_s: float = 0.0,
    alphas: Sequence[float] = ALPHAS,
    n_boot: int = 1000,
    block_s: float = 30.0,
    seed: int = 0,
) -> CVResult:
    """Cross-validate a model on time-blocked folds (nested choice of the penalty); score with a block-bootstrap CI."""
    y = data.y if target is None else target
    X, t, s = data.X, data.t, data.session
    fl = folds(t, s, k, scheme, gap_s)
    oof = np.full(y.shape[0], np.nan)
    per_fold, chosen, coefs = [], [], []
    for tr, te in fl:
        if tr.size < 3 or (kind == "logistic" and np.unique(y[tr]).size < 2):
            per_fold.append(math.nan)
            continue
        a = _choose_alpha(kind, X[tr], y[tr], t[tr], s[tr], alphas, min(k, 5), gap_s)
        model = _fit(kind, X[tr], y[tr], a)
        oof[te] = model.linear(X[te])
        per_fold.append(_score(kind, y[te], oof[te]) if te.size > 2 else math.nan)
        chosen.append(a)
        coefs.append(model.coef)
    tested = np.isfinite(oof)
    if tested.sum() < 3:
        raise CalibrationError("too few rows were tested out of fold to score the model")
    score = _score(kind, y[tested], oof[tested])
    ci = block_bootstrap_ci(y[tested], oof[tested], t[tested], s[tested], kind, n_boot, block_s, seed)
    return CVResult(
        kind,
        scheme,
        "R2" if kind == "ridge" else "AUC",
        score,
        ci,
        per_fold,
        chosen,
        oof,
        np.array(coefs) if coefs else np.zeros((0, X.shape[1])),
    )


def block_bootstrap_ci(
    y: np.ndarray,
    z: np.ndarray,
    t: np.ndarray,
    session: np.ndarray,
    kind: str = "ridge",
    n_boot: int = 1000,
    block_s: float = 30.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Return the 95 % percentile interval of R² (or AUC) under a moving-block bootstrap of the (y, z) pairs.

    Blocks are runs of consecutive rows spanning about ``block_s`` seconds
    (at least one row), drawn with replacement and laid end to end until the
    resample has as many rows as the data.
    """
    n = y.shape[0]
    dt = np.diff(t)
    dt = dt[(dt > 0) & (np.diff(session) == 0)]
    row_s = float(np.median(dt)) if dt.size else block_s
    L = int(min(max(1, round(block_s / row_s)), n))
    rng = np.random.default_rng(seed)
    starts_max = n - L + 1
    reps = math.ceil(n / L)
    offsets = np.arange(L)
    scores = np.empty(n_boot)
    for b in range(n_boot):
        idx = (rng.integers(0, starts_max, reps)[:, None] + offsets[None, :]).ravel()[:n]
        scores[b] = _score(kind, y[idx], z[idx])
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


# --- the whole calibration -------------------------------------------------------------------------------------


@dataclass
class CalibrationResult:
    """What :func:`calibrate` produced: the model file's content and its cross-validation."""

    model: PainModel
    cv: CVResult
    data: CalibrationData
    weights: list[dict]

    def write(self, path: str | os.PathLike) -> Path:
        """Write the model file (JSON); return its path."""
        p = Path(path)
        p.write_text(json.dumps(self.model.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        return p


def calibrate(
    sessions: Sequence[str | os.PathLike],
    resolved,
    target: str = "rating",
    kind: str = "ridge",
    threshold: float | None = None,
    features: Sequence[str] | None = None,
    lags_s: Sequence[float] = (0.0,),
    rows: str = "ratings",
    k: int = 5,
    scheme: str = "blocked",
    gap_s: float | None = None,
    alphas: Sequence[float] = ALPHAS,
    n_boot: int = 1000,
    block_s: float = 30.0,
    max_age_s: float | None = None,
    seed: int = 0,
) -> CalibrationResult:
    """Fit and cross-validate a pain model from sessions (see the module docstring).

    Parameters
    ----------
    sessions : list of str or Path
        Recordings with EEG and ratings.
    resolved : ResolvedPipeline
        The pipeline the model is for (its features, its ``[ratings]``).
    target : str
        ``"rating"`` (the only target: the ``[ratings]`` stream).
    kind : {"ridge", "logistic"}
        Regression of the rating, or classification of ``rating >= threshold``.
    threshold : float, optional
        ``logistic``: the rating at or above which the target is 1.
    features, lags_s, rows, max_age_s
        See :func:`load_calibration_data`.
    k, scheme, gap_s
        Folds (:func:`folds`); ``gap_s`` default: the largest lag plus the
        window plus three smoothing time constants.
    alphas : list of float
        Penalties tried (inner cross-validation).
    n_boot, block_s, seed
        The block bootstrap of the score.

    Raises
    ------
    CalibrationError
        Naming what is wrong.
    """
    from closedloop import __version__

    if target != "rating":
        raise CalibrationError(f"--target {target!r}: the only target is 'rating' (the pipeline's [ratings] stream)")
    if kind not in ("ridge", "logistic"):
        raise CalibrationError(f"--model must be 'ridge' or 'logistic', not {kind!r}")
    if kind == "logistic" and threshold is None:
        raise CalibrationError("--model logistic needs --threshold (the rating at or above which the target is 1)")
    cfg = resolved.config
    data = load_calibration_data(sessions, resolved, features, lags_s, rows, max_age_s)
    if len(data) < 10:
        raise CalibrationError(f"only {len(data)} rows with a rating on a usable frame; too few to calibrate")
    yfit = data.y if kind == "ridge" else (data.y >= threshold).astype(float)
    if kind == "logistic" and np.unique(yfit).size < 2:
        raise CalibrationError(f"every rating is on the same side of --threshold {threshold:g}; nothing to classify")
    if gap_s is None:
        f = cfg.features
        gap_s = max(lags_s) + f.window_samples / cfg.sfreq + 3 * f.smoothing_s
        if rows == "frames":
            gap_s += max_age_s or cfg.ratings.max_age_s or 30.0
    cv = cross_validate(data, kind, yfit, k, scheme, gap_s, alphas, n_boot, block_s, seed)
    alpha = _choose_alpha(kind, data.X, yfit, data.t, data.session, alphas, min(k, 5), gap_s)
    final = _fit(kind, data.X, yfit, alpha)
    sd = cv.fold_coefs.std(axis=0) if cv.fold_coefs.shape[0] > 1 else np.full(len(data.terms), math.nan)
    weights = [
        {"feature": f, "lag_s": lag, "coef": float(c), "coef_sd_folds": float(s)}
        for (f, lag), c, s in zip(data.terms, final.coef, sd)
    ]
    training = {
        "sessions": data.files,
        "rows": len(data),
        "rows_per": rows,
        "data_sha256": data.sha256(),
        "features_sha256": features_hash(
            cfg.features.model_dump(mode="json"), cfg.preprocess.model_dump(mode="json"), cfg.sfreq
        ),
        "pipeline": {"name": cfg.pipeline.name, "file": str(resolved.path)},
        "alpha": alpha,
        "cv": {
            "scheme": scheme,
            "folds": len(cv.per_fold),
            "gap_s": gap_s,
            "score": cv.score_name,
            "value": cv.score,
            "ci95": list(cv.ci95),
            "per_fold": cv.per_fold,
            "alphas": cv.alphas,
            "bootstrap": {"resamples": n_boot, "block_s": block_s, "seed": seed},
        },
        "weights": weights,
        "target_mean": float(data.y.mean()),
        "target_sd": float(data.y.std()),
        "notes": data.notes,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "closedloop_version": __version__,
    }
    model = PainModel(
        format=FORMAT,
        kind=kind,
        target=target,
        threshold=threshold,
        terms=[ModelTerm(feature=f, lag_s=lag) for f, lag in data.terms],
        center=[float(v) for v in final.center],
        scale=[float(v) for v in final.scale],
        coef=[float(v) for v in final.coef],
        intercept=float(final.intercept),
        frame_interval_s=data.frame_interval_s,
        training=training,
    )
    return CalibrationResult(model, cv, data, weights)
