"""IAF-anchored bands, feature expressions, baseline-normalised PAF, and the new features' loop discipline."""

from __future__ import annotations

import gc
import math
import tracemalloc

import numpy as np
import pytest
from scipy import signal

from closedloop.config.expressions import ExpressionError, compile_expressions, parse
from closedloop.features import FeatureExtractor, FeaturesConfig, PreprocessConfig, build_chain, features_of
from closedloop.types import Chunk, Quality

FS = 250.0


def pink(n: int, rng, exponent: float = 1.0, scale: float = 10.0) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    spec[1:] /= f[1:] ** (exponent / 2)
    spec[0] = 0.0
    y = np.fft.irfft(spec, n)
    return scale * y / y.std()


def two_rois(n: int, seed: int = 0, peaks=(9.3, 10.6)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = np.stack([pink(n, rng) + 5 * np.sin(2 * np.pi * p * t + i) for i, p in enumerate(peaks)], axis=1)
    return x, t


def cfg(**kw) -> FeaturesConfig:
    base = dict(
        rois={"frontal": ["Fz"], "posterior": ["O1"]},
        window_samples=500,
        hop_samples=25,
        spectrum={"segment_samples": 500, "segments": 8},
        iaf={},
        baseline={"duration_s": 30.0},
    )
    base.update(kw)
    return FeaturesConfig(**base)


def extract(fc: FeaturesConfig, x: np.ndarray, t: np.ndarray, chunk: int = 100) -> list:
    ext = FeatureExtractor.from_config(fc, FS, list(fc.signal_names()))
    frames = []
    for i in range(0, x.shape[0], chunk):
        frames += [f.as_dict() | {"_flags": int(f.flags)} for f in ext.step(Chunk(x[i : i + chunk], t[i : i + chunk]))]
    return frames


def test_iaf_is_estimated_at_the_baseline_end_and_fixes_klimesch_bands():
    x, t = two_rois(int(60 * FS))
    frames = extract(cfg(), x, t)
    ends = 500 + 25 * np.arange(len(frames))
    during = ends < 30 * FS
    iaf = np.array([[f["iaf_frontal"], f["iaf_posterior"]] for f in frames])
    assert np.all(np.isnan(iaf[during]))
    assert np.all(np.abs(iaf[~during] - [9.3, 10.6]) < 0.1)  # the planted alpha peaks
    assert np.all(iaf[~during] == iaf[-1])  # fixed for the session
    # the IAF bands' powers: the Welch spectrum of the last 8 segments summed over [IAF + lo, IAF + hi)
    last = frames[-1]
    end = ends[-1]
    span = 500 + 7 * 250
    start = end - (end - 500) % 250 - span  # the last spectrum update ended on a segment boundary
    f, p = signal.welch(x[start : start + span], fs=FS, window="hann", nperseg=500, noverlap=250, axis=0)
    for c, roi in enumerate(("frontal", "posterior")):
        for name, (lo, hi) in {"theta_iaf": (-6, -4), "alpha1_iaf": (-4, -2), "alpha3_iaf": (0, 2)}.items():
            a, b = iaf[-1, c] + lo, iaf[-1, c] + hi
            want = p[(f >= a - 1e-9) & (f < b - 1e-9), c].sum() * (f[1] - f[0])
            assert last[f"{name}_{roi}"] == pytest.approx(math.log10(want), rel=1e-9)
    # upper alpha holds the peak: it stands above theta on the 1/f background
    assert last["alpha3_iaf_posterior"] > last["theta_iaf_posterior"]


def test_iaf_from_one_channel_and_a_fixed_iaf():
    x, t = two_rois(int(45 * FS), seed=1)
    frames = extract(cfg(iaf={"channel": "posterior", "method": "cog", "search_hz": [8.0, 12.0]}), x, t)
    late = frames[-1]
    assert late["iaf_frontal"] == late["iaf_posterior"] and 10.0 < late["iaf_posterior"] < 11.2
    fixed = extract(cfg(iaf={"fixed_hz": 9.0}, baseline=None), x, t)
    assert all(f["iaf_frontal"] == 9.0 for f in fixed)
    assert np.isfinite(fixed[-1]["alpha3_iaf_frontal"])


def test_expressions_equal_numpy_on_the_linear_values():
    x, t = two_rois(int(20 * FS), seed=2)
    fc = cfg(
        iaf=None,
        baseline=None,
        log10=False,
        ratios={"theta_alpha": ("theta", "alpha"), "cross": ("theta_frontal", "alpha_posterior")},
        expressions={
            "asym": "(alpha_posterior - alpha_frontal) / (alpha_posterior + alpha_frontal)",
            "logratio": "log10(theta_frontal) - log10(alpha_posterior)",
            "nested": "2 * asym + sqrt(abs(logratio)) - 1 / 4",
        },
    )
    assert features_of(fc)[-4:] == ["cross", "asym", "logratio", "nested"]
    for f in extract(fc, x, t):
        tf, ap, af = f["theta_frontal"], f["alpha_posterior"], f["alpha_frontal"]
        assert f["cross"] == pytest.approx(tf / ap, rel=1e-12)
        asym = (ap - af) / (ap + af)
        assert f["asym"] == pytest.approx(asym, rel=1e-12)
        lr = math.log10(tf) - math.log10(ap)
        assert f["logratio"] == pytest.approx(lr, rel=1e-12)
        assert f["nested"] == pytest.approx(2 * asym + math.sqrt(abs(lr)) - 0.25, rel=1e-12)
    logged = extract(fc.model_copy(update={"log10": True}), x, t)
    # log10 output: a cross-channel ratio is log10'd like the per-channel ones; expressions still see µV²
    f0 = logged[-1]
    assert f0["cross"] == pytest.approx(f0["theta_frontal"] - f0["alpha_posterior"], rel=1e-9)
    assert f0["logratio"] == pytest.approx(f0["cross"], rel=1e-9)


def test_runtime_division_by_zero_and_logs_of_negatives_give_nan():
    x = np.zeros((800, 1))  # zero power: every band power is 0
    ext = FeatureExtractor(
        FS, ["c"], {"alpha": (8.0, 12.0)}, window=250, hop=50, log10=False,
        expressions={"r": "alpha / alpha", "l": "log(alpha - 1)", "s": "sqrt(-1 - alpha)", "z": "log10(alpha)"},
    )  # fmt: skip
    f = ext.step(Chunk(x, np.arange(800) / FS))[-1]
    assert np.isnan(f["r"]) and np.isnan(f["l"]) and np.isnan(f["s"]) and f["z"] == -np.inf


@pytest.mark.parametrize(
    "exprs, message",
    [
        ({"a": "theta_frontal / (3 - 3)"}, "expressions.a: divides by a constant zero"),
        ({"a": "gamma_frontal + 1"}, "expressions.a: unknown feature 'gamma_frontal'"),
        ({"a": "b + 1", "b": "c * 2", "c": "a"}, "expressions.a: refers to itself through a -> b -> c -> a"),
        ({"a": "a + 1"}, "expressions.a: refers to itself through a -> a"),
        ({"a": "__import__('os').system('true')"}, "expressions.a: calls __import__('os').system()"),
        ({"a": "theta_frontal if 1 else 2"}, "expressions.a: 'theta_frontal if 1 else 2' is not allowed"),
        ({"a": "theta_frontal["}, "expressions.a: is not a valid expression"),
        ({"a": "max(theta_frontal, 1)"}, "expressions.a: calls max(), which is not allowed"),
        ({"a": "log(theta_frontal, 2)"}, "expressions.a: log() takes exactly one argument"),
        ({"a": "'x'"}, "expressions.a: 'x' is not allowed"),
        ({"theta_frontal": "1 + alpha_frontal"}, "expressions.theta_frontal: the name is already a feature"),
        ({"a": ""}, "expressions.a: is empty"),
    ],
)
def test_bad_expressions_are_one_line_errors_naming_the_key(exprs, message):
    with pytest.raises(ValueError) as err:
        cfg(iaf=None, baseline=None, expressions=exprs)
    assert message in str(err.value)


def test_cross_channel_ratio_refusal_is_gone_and_bad_parts_are_named():
    fc = cfg(iaf=None, baseline=None, ratios={"ta": ("theta_frontal", "alpha_posterior")})
    assert "ta" in features_of(fc)
    with pytest.raises(ValueError, match="ratios.x: refers to 'beta', neither a band"):
        cfg(iaf=None, baseline=None, ratios={"x": ("theta", "beta")})
    with pytest.raises(ValueError, match="ratios.x: mixes band 'theta' with feature 'alpha_posterior'"):
        cfg(iaf=None, baseline=None, ratios={"x": ("theta", "alpha_posterior")})


def test_parse_folds_constants_and_never_evaluates_names():
    assert parse("2 ** 3 - 1").value == 7.0
    assert parse("-(4 / 2)").value == -2.0
    programs, problems = compile_expressions({"a": "x * (1 + 1)"}, ["x"])
    assert not problems and programs[0].constants == (2.0,)
    with pytest.raises(ExpressionError, match="divides by a constant zero"):
        parse("x / (2 - 2)")


def test_paf_search_down_to_6_hz_and_baseline_difference():
    # slowing below 8 Hz: a 6.6 Hz dominant rhythm after a 9.6 Hz baseline
    rng = np.random.default_rng(5)
    n = int(80 * FS)
    t = np.arange(n) / FS
    freq = np.where(t < 40, 9.6, 6.6)
    x = (pink(n, rng, scale=3.0) + 12 * np.sin(2 * np.pi * np.cumsum(freq) / FS))[:, None]
    fc = FeaturesConfig(
        channels=["c"],
        window_samples=500,
        hop_samples=125,
        paf={"segment_samples": 500, "segments": 15, "cog_band": [6.0, 12.0], "peak_band": [5.5, 12.5]},
        baseline={"duration_s": 40.0, "difference": ["paf_cog", "paf_peak"]},
    )
    ext = FeatureExtractor.from_config(fc, FS, ["c"])
    frames = ext.step(Chunk(x, t))
    raw = FeatureExtractor.from_config(fc.model_copy(update={"baseline": None}), FS, ["c"]).step(Chunk(x, t))
    ends = 500 + 125 * np.arange(len(frames))
    late = ends > 70 * FS  # the 15-segment buffer holds the new rhythm only
    assert np.all(np.abs(np.array([f["paf_peak"] for f, b in zip(raw, late) if b]) - 6.6) < 0.1)
    mean_bl = np.nanmean([f["paf_peak"] for f, e in zip(raw, ends) if e <= 40 * FS])
    for f, r, e in zip(frames, raw, ends):
        if e > 40 * FS:
            assert f["paf_peak"] == pytest.approx(r["paf_peak"] - mean_bl, rel=1e-9, abs=1e-12)
        else:
            assert np.isnan(f["paf_peak"]) and f.flags & Quality.BASELINE
    assert frames[-1]["paf_peak"] == pytest.approx(6.6 - 9.6, abs=0.15)  # the slowing, in Hz


def test_after_baseline_features_cannot_be_normalised():
    with pytest.raises(ValueError, match="baseline.features: 'alpha3_iaf' is defined only once the baseline"):
        cfg(baseline={"duration_s": 30.0, "features": ["alpha3_iaf"]})
    fc = cfg(aperiodic={}, baseline={"duration_s": 30.0, "features": ["ap_exponent"], "difference": ["alpha_ap"]})
    assert "ap_exponent_frontal" in features_of(fc)


def troubled(n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    x, t = two_rois(n, seed=7)
    x[1900, 0] = np.nan
    x[3100, 1] = 500.0
    t = t.copy()
    t[4000:] += 0.3
    return x, t


@pytest.mark.parametrize("method", ["welch", "sliding_dft", "iir"])
def test_new_features_bit_identical_for_any_chunking(method):
    x, t = troubled()
    fc = cfg(
        method=method,
        window_samples=250,
        hop_samples=10,
        smoothing_s=0.5,
        spectrum={"segment_samples": 250, "segments": 4},
        aperiodic={"range_hz": [2.0, 40.0], "corrected": ["theta", "alpha", "alpha3_iaf"]},
        iaf={"search_hz": [7.0, 13.0]},
        baseline={"duration_s": 8.0, "difference": ["ap_exponent"]},
        ratios={"cross": ("theta_frontal", "alpha_posterior")},
        expressions={"asym": "(alpha_ap_posterior - alpha_ap_frontal) / (alpha_posterior + alpha_frontal)"},
    )

    def run(chunk):
        ext = FeatureExtractor.from_config(fc, FS, ["frontal", "posterior"])
        rows = []
        for i in range(0, x.shape[0], chunk):
            rows += [
                (f.time, f.values.copy(), int(f.flags)) for f in ext.step(Chunk(x[i : i + chunk], t[i : i + chunk]))
            ]
        return rows

    ref = run(x.shape[0])
    values = np.array([r[1] for r in ref])
    assert np.isfinite(values[-1]).all()  # every new feature is defined late in the run
    for chunk in (1, 7, 32, 1000):
        got = run(chunk)
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            assert a[0] == b[0] and a[2] == b[2] and a[1].tobytes() == b[1].tobytes(), f"chunk {chunk} differs"


def test_new_features_allocate_nothing_in_steady_state():
    names = [f"E{i}" for i in range(8)]
    fc = FeaturesConfig(
        rois={"frontal": names[:4], "posterior": names[4:]},
        window_samples=500,
        hop_samples=10,
        method="sliding_dft",
        smoothing_s=1.0,
        spectrum={"segment_samples": 500, "segments": 4},
        aperiodic={},
        iaf={"fixed_hz": 10.0},
        ratios={"cross": ("theta_frontal", "alpha_posterior")},
        expressions={"asym": "(alpha_posterior - alpha_frontal) / (alpha_posterior + alpha_frontal)"},
    )
    pre, ext = build_chain(fc, PreprocessConfig(highpass_hz=1.0), 500.0, names)
    rng = np.random.default_rng(0)
    n = 60000
    x = (rng.standard_normal((n, 8)) * 10).astype(np.float32)
    t = np.arange(n) / 500.0
    chunks = [Chunk(x[i : i + 40], t[i : i + 40]) for i in range(0, n, 40)]
    gc.collect()
    tracemalloc.start()
    try:
        for c in chunks[:1000]:
            ext.step(pre.step(c))
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        n_frames = 0
        for c in chunks[1000:]:
            n_frames += len(ext.step(pre.step(c)))
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_frames == 500 * 4
    assert now - base < 512, f"kept {now - base} bytes"
    assert peak - base < 12_000, f"peak grew by {peak - base} bytes"
