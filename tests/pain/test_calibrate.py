"""Calibration: time-blocked validation without leakage, the models, and a planted feature → rating relation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pain_helpers import HOP_S, generator, load, write_pipeline

from closedloop.config.load import PipelineError
from closedloop.config.painmodel import file_sha256, read_pain_model
from closedloop.offline.calibrate import (
    CalibrationData,
    CalibrationError,
    auc,
    calibrate,
    cross_validate,
    fit_logistic,
    fit_ridge,
    folds,
    r2,
)
from closedloop.offline.metrics import Trace
from closedloop.offline.replay import replay
from closedloop.recording.reader import XDFReader
from closedloop.synthetic.session import RatingPlan, simulate_session

# --- folds ------------------------------------------------------------------------------------------------------


def _rows(n_per=(60, 40)):
    t = np.concatenate([np.arange(n) * 2.0 for n in n_per])
    s = np.concatenate([np.full(n, i) for i, n in enumerate(n_per)])
    return t, s


def test_blocked_folds_partition_the_rows_in_time_and_purge_the_gap():
    t, s = _rows()
    fl = folds(t, s, k=5, scheme="blocked", gap_s=7.0)
    tested = np.concatenate([te for _, te in fl])
    assert np.array_equal(np.sort(tested), np.arange(t.shape[0]))  # every row tested exactly once
    for train, test in fl:
        assert np.all(np.diff(test) == 1)  # a contiguous block, never shuffled
        assert not np.intersect1d(train, test).size
        for sess in np.unique(s[test]):
            tt = t[test][s[test] == sess]
            near = train[(s[train] == sess) & (t[train] >= tt.min() - 7.0) & (t[train] <= tt.max() + 7.0)]
            assert near.size == 0  # nothing within the gap of the test block in its session
        # rows of the other session are not purged
        other = set(np.unique(s)) - set(np.unique(s[test]))
        assert all(np.any(s[train] == o) for o in other)


def test_forward_folds_only_train_on_the_past_and_sessions_leave_one_out():
    t, s = _rows()
    for train, test in folds(t, s, k=4, scheme="forward"):
        assert train.max() < test.min()
    assert len(folds(t, s, k=4, scheme="forward")) == 3
    fl = folds(t, s, scheme="sessions")
    assert [np.unique(s[te]).tolist() for _, te in fl] == [[0], [1]]
    assert all(np.unique(s[tr]).size == 1 and s[tr][0] != s[te][0] for tr, te in fl)
    with pytest.raises(CalibrationError, match="at least two sessions"):
        folds(t[s == 0], s[s == 0], scheme="sessions")


def test_blocked_validation_does_not_find_skill_in_autocorrelated_noise():
    # ten features and the target are independent random walks: there is nothing to predict. Shuffled
    # folds put near-copies of each test row in the training set and "find" a relation; time blocks do not.
    rng = np.random.default_rng(1)
    n = 1500
    X = np.cumsum(rng.normal(size=(n, 10)), axis=0)
    y = np.cumsum(rng.normal(size=n))
    t, s = np.arange(n, dtype=float), np.zeros(n, dtype=int)
    data = CalibrationData([(f"f{i}", 0.0) for i in range(10)], X, y, t, s, [], 1.0)
    perm = rng.permutation(n)
    shuffled = np.empty(n)
    for part in np.array_split(perm, 5):
        train = np.setdiff1d(perm, part)
        shuffled[part] = fit_ridge(X[train], y[train], 1e-3).linear(X[part])
    blocked = cross_validate(data, "ridge", k=5, gap_s=10.0, alphas=[1e-3], n_boot=200)
    assert r2(y, shuffled) > 0.5
    assert blocked.score < 0.1
    assert blocked.ci95[0] < 0.1


def test_a_test_block_never_informs_its_own_predictions():
    rng = np.random.default_rng(2)
    n = 400
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -0.5, 0.0] + rng.normal(size=n)
    t, s = np.arange(n, dtype=float), np.zeros(n, dtype=int)
    data = CalibrationData([("a", 0), ("b", 0), ("c", 0)], X, y, t, s, [], 1.0)
    first = cross_validate(data, "ridge", k=4, alphas=[0.1], n_boot=0 or 10)
    test = folds(t, s, 4)[1][1]
    y2 = y.copy()
    y2[test] += 100.0  # wild targets in one block ...
    data2 = CalibrationData(data.terms, X, y2, t, s, [], 1.0)
    second = cross_validate(data2, "ridge", k=4, alphas=[0.1], n_boot=10)
    assert np.array_equal(first.oof[test], second.oof[test])  # ... do not move that block's predictions


# --- models and scores ------------------------------------------------------------------------------------------


def test_ridge_without_penalty_is_least_squares_and_logistic_recovers_its_weights():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 3)) * [1.0, 5.0, 0.2] + [0.0, 10.0, -3.0]
    y = 2.0 + X @ [1.0, -0.3, 4.0] + rng.normal(0, 0.5, 500)
    A = np.column_stack([np.ones(500), X])
    beta, *_ = np.linalg.lstsq(A, y, rcond=None)
    m = fit_ridge(X, y, 0.0)
    assert np.allclose(m.linear(X), A @ beta, atol=1e-9)
    assert np.allclose(m.coef / m.scale, beta[1:], rtol=1e-9)
    Z = rng.normal(size=(20000, 2))
    p = 1 / (1 + np.exp(-(0.5 + Z @ [1.5, -1.0])))
    yb = (rng.random(20000) < p).astype(float)
    lm = fit_logistic(Z, yb, 0.0)
    assert np.allclose(lm.coef / lm.scale, [1.5, -1.0], rtol=0.06)
    assert lm.intercept - np.dot(lm.coef, lm.center / lm.scale) == pytest.approx(0.5, abs=0.06)


def test_auc_counts_ordered_pairs_with_ties_as_half():
    rng = np.random.default_rng(4)
    y = rng.random(60) < 0.4
    score = rng.integers(0, 5, 60).astype(float)  # many ties
    pos, neg = score[y], score[~y]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(y, score) == pytest.approx(pairs / (pos.size * neg.size))


# --- a planted relation on synthetic EEG --------------------------------------------------------------------

#: rating = 5 + 3 (theta_front - 0.9) - 2 (alpha_post - 1.3) + N(0, 0.75), from the features one second before
W_THETA, W_ALPHA, NOISE = 3.0, -2.0, 0.75


def planted(t, feature_at, gen, rng):
    x = t - 1.0 + HOP_S / 2  # the frame one second before
    return (
        5.0
        + W_THETA * (feature_at("theta_front", x) - 0.9)
        + W_ALPHA * (feature_at("alpha_post", x) - 1.3)
        + (rng.normal(0.0, NOISE))
    )


@pytest.fixture(scope="module")
def planted_session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    resolved = load(write_pipeline(folder))
    plan = RatingPlan(every_s=2.0, rate=planted, start_s=3.0, seed=7)
    sim = simulate_session(resolved, 900.0, folder / "s", generator=generator(seed=11), ratings=plan)
    trace = sim.trace
    k = np.searchsorted(trace.time, sim.rating_times) - round(1.0 / HOP_S)
    truth = 5.0 + W_THETA * (trace.feature("theta_front")[k] - 0.9) + W_ALPHA * (trace.feature("alpha_post")[k] - 1.3)
    return resolved, sim, folder, truth


def test_a_planted_relation_is_recovered(planted_session):
    resolved, sim, folder, truth = planted_session
    r2_true = r2(sim.ratings, truth)  # the best any model can do on these ratings
    assert 0.3 < r2_true < 0.7
    res = calibrate([folder / "s" / "session.xdf"], resolved, lags_s=[1.0], n_boot=300)
    assert len(res.data) >= 0.95 * len(sim.ratings)  # one row per rating on a usable frame
    assert abs(res.cv.score - r2_true) <= 0.05, (res.cv.score, r2_true)
    lo, hi = res.cv.ci95
    assert lo < r2_true < hi
    per_unit = {w["feature"]: w["coef"] / s for w, s in zip(res.weights, res.model.scale)}
    assert per_unit["theta_front"] == pytest.approx(W_THETA, rel=0.15)
    assert per_unit["alpha_post"] == pytest.approx(W_ALPHA, rel=0.15)
    assert abs(per_unit["alpha_front"]) < 0.3 * abs(W_ALPHA) and abs(per_unit["theta_post"]) < 0.3 * W_THETA
    # the wrong lag explains less
    wrong = calibrate([folder / "s" / "session.xdf"], resolved, lags_s=[0.0], n_boot=0 or 50)
    assert wrong.cv.score < res.cv.score - 0.05


def test_a_planted_binary_target_is_recovered_by_the_logistic_model(planted_session):
    resolved, sim, folder, truth = planted_session
    threshold = float(np.median(sim.ratings))
    auc_true = auc(sim.ratings >= threshold, truth)
    res = calibrate(
        [folder / "s" / "session.xdf"],
        resolved,
        kind="logistic",
        threshold=threshold,
        features=["theta_front", "alpha_post"],
        lags_s=[1.0],
        n_boot=300,
    )
    assert res.cv.score_name == "AUC"
    assert abs(res.cv.score - auc_true) <= 0.05, (res.cv.score, auc_true)
    assert res.model.kind == "logistic" and res.model.threshold == threshold


def test_the_model_file_becomes_the_pain_index_and_travels_with_every_session(planted_session, tmp_path):
    resolved, sim, folder, truth = planted_session
    res = calibrate(
        [folder / "s" / "session.xdf"], resolved, features=["theta_front", "alpha_post"], lags_s=[0.0, 1.0], n_boot=50
    )
    model_path = res.write(tmp_path / "model.json")
    model = read_pain_model(model_path)
    assert model.training["data_sha256"] == res.data.sha256()
    assert model.training["sessions"][0]["sha256"] == file_sha256(folder / "s" / "session.xdf")
    using = load(write_pipeline(tmp_path, "with_index.toml", model="model.json"))  # relative to the pipeline
    rep = replay(folder / "s" / "session.xdf", using, tmp_path / "r", keep="trace", report=False)
    tr = rep.trace
    # pain_index = the model on each frame's features at their lags
    x = {(f, lag): tr.feature(f) for f, lag in [(t.feature, t.lag_s) for t in model.terms]}
    lags = [round(t.lag_s / HOP_S) for t in model.terms]
    z = np.full(len(tr), model.intercept)
    for term, c, m, s, lag in zip(model.terms, model.coef, model.center, model.scale, lags):
        col = x[(term.feature, term.lag_s)]
        z[lag:] += c * (col[: len(col) - lag] - m) / s
    z[: max(lags)] = np.nan
    z[tr.flags & 0b110111 != 0] = np.nan
    got = tr.feature("pain_index")
    ok = np.isfinite(got)
    assert ok.mean() > 0.8
    assert np.allclose(got[ok], z[ok], rtol=0, atol=1e-9)
    # out of sample on its own training data it predicts the ratings as calibrated
    k = np.searchsorted(tr.time, sim.rating_times)
    keep = np.isfinite(got[k])
    assert r2(sim.ratings[keep], got[k][keep]) > 0.9 * r2(sim.ratings, truth)
    # the model and its training data hashes are in the recording header and the summary
    header = json.loads(XDFReader(tmp_path / "r" / "session.xdf").file_header.findtext("pain_model_json"))
    for facts in (header, rep.summary["pain_index"]):
        assert facts["sha256"] == file_sha256(model_path)
        assert facts["training_data_sha256"] == res.data.sha256()
        assert facts["training_files"] == [file_sha256(folder / "s" / "session.xdf")]
    assert Trace.from_xdf(tmp_path / "r" / "session.xdf").feature_names[-3:] == ("pain_index", "rating", "rating_age_s")


def test_check_refuses_a_model_that_does_not_fit_the_pipeline(planted_session, tmp_path):
    resolved, sim, folder, _ = planted_session
    res = calibrate([folder / "s" / "session.xdf"], resolved, features=["theta_front"], lags_s=[1.0], n_boot=10)
    res.write(tmp_path / "m.json")
    path = write_pipeline(tmp_path, "p.toml", model="m.json")
    with pytest.raises(PipelineError, match=r"features.pain_index.model: the model was fitted on a frame every 0.1"):
        load(path, **{"features.hop_samples": 50})
    with pytest.raises(PipelineError, match=r"the model reads 'theta_front', not a feature of this pipeline"):
        load(path, **{"features.rois": {"frontal": ["F3", "Fz", "F4"]}})
    with pytest.raises(PipelineError, match=r"features.pain_index.model: model file not found: .*nope.json"):
        load(write_pipeline(tmp_path, "q.toml", model="nope.json"))
    (tmp_path / "bad.json").write_text('{"format": "closedloop.pain_model/1", "kind": "ridge"}')
    with pytest.raises(PipelineError, match=r"model file .*bad.json: terms: required key is missing"):
        load(write_pipeline(tmp_path, "b.toml", model="bad.json"))


def test_calibration_refuses_what_it_cannot_do(planted_session, tmp_path):
    resolved, sim, folder, _ = planted_session
    xdf = folder / "s" / "session.xdf"
    with pytest.raises(CalibrationError, match="lag 0.15 s is not a whole number of frames"):
        calibrate([xdf], resolved, lags_s=[0.15])
    with pytest.raises(CalibrationError, match="needs --threshold"):
        calibrate([xdf], resolved, kind="logistic")
    with pytest.raises(CalibrationError, match=r"no feature\(s\) \['gamma'\]"):
        calibrate([xdf], resolved, features=["gamma"])
    with pytest.raises(CalibrationError, match="every rating is on the same side of --threshold 99"):
        calibrate([xdf], resolved, kind="logistic", threshold=99.0, lags_s=[1.0])
    with pytest.raises(CalibrationError, match="the only target is 'rating'"):
        calibrate([xdf], resolved, target="mood")
    assert math.isnan(auc(np.zeros(5, dtype=bool), np.arange(5.0)))
