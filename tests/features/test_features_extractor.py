"""The whole extractor: chunking invariance, no allocation, frame safety, derived features, build_chain."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from scipy import signal

from closedloop.config.features import FeatureBaselineConfig, IIRConfig, PafConfig, QualityConfig, WelchConfig
from closedloop.features import FeatureExtractor, FeaturesConfig, PreprocessConfig, build_chain, features_of
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.types import Chunk, Quality

FS = 250.0
BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}
RATIOS = {"theta_alpha": ("theta", "alpha")}


def troubled_signal(n: int = 3000, n_ch: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus alpha with a NaN, an Inf, a spike, a flat stretch, a 1e30 sample and a timestamp gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = rng.standard_normal((n, n_ch)) * 5 + 15 * np.sin(2 * np.pi * 10.3 * t)[:, None]
    x[900, 0] = np.nan
    x[1400, 1] = np.inf
    x[1700, 0] = 400.0
    x[2000:2400, 1] = 3.0
    x[2450, 0] = 1e30  # garbage: SATURATION
    t = t.copy()
    t[2600:] += 0.5
    return x, t


def extractor(method: str, **kw) -> FeatureExtractor:
    opts = {"welch": WelchConfig(segment_samples=125, overlap=0.5), "iir_ema": IIRConfig(smoothing="ema")}.get(method)
    return FeatureExtractor(
        FS,
        ["a", "b"],
        BANDS,
        RATIOS,
        window=250,
        hop=10,
        per_channel=True,
        smoothing_s=0.5,
        method="iir" if method == "iir_ema" else method,
        method_options=opts,
        relative_to=(1.0, 40.0),
        paf=PafConfig(segment_samples=250, segments=3),
        baseline=FeatureBaselineConfig(duration_s=3.0),
        **kw,
    )


def run(ext: FeatureExtractor, x: np.ndarray, t: np.ndarray, chunk: int):
    times, values, flags, index = [], [], [], []
    for i in range(0, x.shape[0], chunk):
        for f in ext.step(Chunk(x[i : i + chunk], t[i : i + chunk])):
            times.append(f.time)
            values.append(f.values.copy())
            flags.append(int(f.flags))
            index.append(f.index)
    return np.array(times), np.array(values), np.array(flags), np.array(index)


@pytest.mark.parametrize("method", ["welch", "sliding_dft", "iir", "iir_ema"])
def test_frames_bit_identical_for_any_chunking(method):
    x, t = troubled_signal()
    ref = run(extractor(method), x, t, x.shape[0])
    assert ref[0].shape[0] == (x.shape[0] - 250) // 10 + 1
    assert np.all(ref[3] == np.arange(ref[0].shape[0]))
    assert {Quality.NONFINITE, Quality.ARTIFACT, Quality.FLAT, Quality.GAP, Quality.SATURATION, Quality.BASELINE} <= {
        q for q in Quality if q and np.any(ref[2] & q)
    }
    for chunk in (1, 7, 32, 1000):
        got = run(extractor(method), x, t, chunk)
        for a, b in zip(got, ref):
            assert a.tobytes() == b.tobytes(), f"chunk {chunk} differs"


@pytest.mark.parametrize("method", ["welch", "sliding_dft", "iir"])
def test_fused_step_frames_bit_identical_for_any_chunking_and_layout(method):
    # without PAF the kernels run as one fused call, and chunks of at most a hop take the step's lean path:
    # hop-sized, shorter and longer chunks, float32, column slices of a wider array and read-only arrays
    # in one stream give the frames one big chunk gives
    x, t = troubled_signal(seed=5)

    def make():
        return FeatureExtractor(
            FS, ["a", "b"], BANDS, RATIOS, window=250, hop=10, per_channel=True, method=method, relative_to=(1.0, 40.0)
        )

    ref = run(make(), x, t, x.shape[0])
    assert make()._fused is not None
    for chunk in (1, 7, 10, 32):
        got = run(make(), x, t, chunk)
        for a, b in zip(got, ref):
            assert a.tobytes() == b.tobytes(), f"chunk {chunk} differs"
    wide = np.ascontiguousarray(np.hstack([x, x]))
    frozen = x.copy()
    frozen.flags.writeable = False
    ext = make()
    got, i, sizes = [], 0, [10, 3, 7, 10, 25, 10, 1, 9]
    while i < x.shape[0]:
        n = sizes[len(got) % len(sizes)]
        kind = (i // 10) % 4
        data = (
            x[i : i + n]
            if kind == 0
            else x[i : i + n].astype(np.float32)
            if kind == 1
            else wide[i : i + n, :2]
            if kind == 2
            else frozen[i : i + n]
        )
        got += [(f.time, f.values.copy(), int(f.flags), f.index) for f in ext.step(Chunk(data, t[i : i + n]))]
        i += n
    assert [g[3] for g in got] == list(range(len(ref[0])))
    assert np.array([g[0] for g in got]).tobytes() == ref[0].tobytes()
    assert np.array([g[2] for g in got]).tobytes() == ref[2].tobytes()
    f32 = [j for j in range(len(got)) if ((250 + 10 * j - 1) // 10) % 4 != 1]  # frames whose chunk was float32
    assert len(f32) > 50
    values = np.array([g[1] for g in got])
    both = np.isfinite(values) & np.isfinite(ref[1])
    assert np.array_equal(np.isnan(values), np.isnan(ref[1]))
    # float32 chunks round their samples, so values match to float32 precision (flags and times exactly)
    np.testing.assert_allclose(values[both], ref[1][both], rtol=1e-4, atol=1e-6)


def test_single_segment_welch_equals_the_blas_welch_method():
    # "welch" with one segment runs as the sliding DFT inside the extractor: the same band powers to rounding,
    # through NaN, Inf, a flat stretch, a spike and a 1e8 µV sample (1000x the SATURATION default; the sliding
    # DFT's rounding residue of a sample g is ~1e-16 g for up to a window after it, < 1e-9 relative up to 1e8)
    from closedloop.features import WelchBandPower

    x, t = troubled_signal(seed=6)
    x[2450, 0] = 1e8
    ext = FeatureExtractor(FS, ["a", "b"], BANDS, window=250, hop=10, per_channel=True, method="welch", log10=False)
    assert ext.bandpower.name == "sliding_dft"
    frames = ext.step(Chunk(x, t))
    power, times = WelchBandPower(FS, 2, BANDS, window=250, hop=10).step(x, t)
    got = np.array([f.values for f in frames]).reshape(power.shape)
    assert np.array_equal(np.array([f.time for f in frames]), times)
    bad = ~np.isfinite(power)
    assert bad.any() and np.isnan(got[bad]).all()  # a window holding NaN or Inf has no band power
    # relative to rounding, and absolute below 1e-20 µV² (the flat stretch: both give rounding noise of zero)
    np.testing.assert_allclose(got[~bad], power[~bad], rtol=1e-9, atol=1e-20)
    assert any(f.flags & Quality.SATURATION for f in frames)


def test_no_allocation_in_steady_state():
    # 64 channels of float32 at 1 kHz in 40-sample chunks through preprocessing and features
    names = [f"E{i}" for i in range(64)]
    fcfg = FeaturesConfig(
        channels=names,
        combine="each",
        window_samples=1000,
        hop_samples=10,
        method="sliding_dft",
        smoothing_s=1.0,
        relative_to=(1.0, 40.0),
    )
    pcfg = PreprocessConfig(reference="average", highpass_hz=1.0, notch_hz=50.0)
    pre, ext = build_chain(fcfg, pcfg, 1000.0, names)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((80000, 64)) * 10).astype(np.float32)
    t = np.arange(80000) / 1000.0
    chunks = [Chunk(x[i : i + 40], t[i : i + 40]) for i in range(0, 80000, 40)]
    gc.collect()
    tracemalloc.start()  # traced from the start, so that recycled objects free what they replace
    try:
        for c in chunks[:1500]:  # numba's dispatcher keeps ~1000 calls' worth of small objects, then settles
            ext.step(pre.step(c))
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        n_frames = 0
        for c in chunks[1500:]:
            n_frames += len(ext.step(pre.step(c)))
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_frames == 500 * 4
    assert now - base < 512, f"kept {now - base} bytes"  # nothing grows
    # transient use stays a few small Python objects; one float64 copy of a chunk alone would be 20 kB
    assert peak - base < 12_000, f"peak grew by {peak - base} bytes"
    assert ext._pool.replaced == 0


def test_kept_frames_never_change_and_are_read_only():
    x, t = troubled_signal(seed=1)
    ext = extractor("sliding_dft")
    kept, copies = [], []
    for i in range(0, 3000, 50):
        frames = ext.step(Chunk(x[i : i + 50], t[i : i + 50]))
        kept += frames
        copies += [f.values.copy() for f in frames]
    assert ext._pool.replaced > 0  # the pool noticed the frames were kept ...
    for f, c in zip(kept, copies):  # ... and never wrote into them
        assert f.values.tobytes() == c.tobytes()
    with pytest.raises(ValueError):
        kept[-1].values[0] = 1.0


def test_views_of_kept_values_never_change():
    # a consumer may keep only a view of a frame's values (values[1:], values.reshape(...)): the pool
    # must notice it through the buffer the values are a view of, and never reuse that slot
    x, t = troubled_signal(seed=4)
    ext = extractor("sliding_dft")
    kept, copies = [], []
    for i in range(0, 3000, 10):
        for f in ext.step(Chunk(x[i : i + 10], t[i : i + 10])):
            if f.index % 3 == 0:
                kept.append(f.values[1:])
                copies.append(f.values[1:].copy())
    assert len(kept) > 50 and ext._pool.replaced > 0
    for v, c in zip(kept, copies):
        assert v.tobytes() == c.tobytes()


def test_transient_frames_are_recycled():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 1))
    ext = FeatureExtractor(FS, ["c"], BANDS, window=250, hop=10)
    seen = set()
    for i in range(0, 2000, 10):
        for f in ext.step(Chunk(x[i : i + 10], np.arange(i, i + 10) / FS)):
            seen.add(id(f.values))
    assert len(seen) <= len(ext._pool._slots) and ext._pool.replaced == 0


def test_hop_chunks_reuse_the_slots_a_caller_left_free():
    # the live loop's case (chunks of one hop, one frame each): a caller that drops its frames gets the
    # same slot back every step, one that keeps the last frame alternates between two; none is replaced,
    # and a frame still held is never written
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 2)) * 5
    t = np.arange(3000) / FS
    for keep_last in (False, True):
        ext = FeatureExtractor(
            FS, ["a", "b"], BANDS, RATIOS, window=250, hop=10, per_channel=True, method="sliding_dft"
        )
        ext.step(Chunk(x[:250], t[:250]))
        ids, last, last_copy = set(), None, None
        for i in range(250, 3000, 10):
            (f,) = ext.step(Chunk(x[i : i + 10], t[i : i + 10]))
            ids.add(id(f.values))
            if keep_last:
                assert last is None or last.values.tobytes() == last_copy  # untouched while held
                last, last_copy = f, f.values.tobytes()
            del f
        assert len(ids) == (2 if keep_last else 1), ids
        assert ext._pool.replaced == 0


def test_derived_features_follow_band_powers():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1500, 1)) * 4
    ts = np.arange(1500) / FS
    plain = FeatureExtractor(FS, ["c"], BANDS, RATIOS, 250, 25, log10=False, relative_to=(1.0, 40.0))
    frames = plain.step(Chunk(x, ts))
    broad = FeatureExtractor(FS, ["c"], {"b": (1.0, 40.0)}, None, 250, 25, log10=False).step(Chunk(x, ts))
    for f, fb in zip(frames, broad):
        assert f["theta_alpha"] == pytest.approx(f["theta"] / f["alpha"], rel=1e-12)
        assert f["alpha_rel"] == pytest.approx(f["alpha"] / fb["b"], rel=1e-12)
    logged = FeatureExtractor(FS, ["c"], BANDS, RATIOS, 250, 25, relative_to=(1.0, 40.0)).step(Chunk(x, ts))
    for f, g in zip(frames, logged):
        np.testing.assert_allclose(g.values, np.log10(f.values), rtol=1e-12)


def test_ema_smoothing_with_time_constant():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 1))
    ts = np.arange(2000) / FS
    raw = [f["alpha"] for f in FeatureExtractor(FS, ["c"], BANDS, window=250, hop=25).step(Chunk(x, ts))]
    sm = [
        f["alpha"] for f in FeatureExtractor(FS, ["c"], BANDS, window=250, hop=25, smoothing_s=1.0).step(Chunk(x, ts))
    ]
    a = 1 - np.exp(-25 / 250.0)  # hop of 0.1 s against a 1 s time constant
    ema = raw[0]
    assert sm[0] == ema
    for r, s in zip(raw[1:], sm[1:]):
        ema += a * (r - ema)
        assert s == pytest.approx(ema, rel=1e-12)


def test_baseline_zscore_against_calibration_block():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 1)) * 3
    ts = np.arange(5000) / FS
    raw = FeatureExtractor(FS, ["c"], BANDS, RATIOS, 250, 25).step(Chunk(x, ts))
    ext = FeatureExtractor(
        FS,
        ["c"],
        BANDS,
        RATIOS,
        250,
        25,
        baseline=FeatureBaselineConfig(duration_s=8.0, features=["alpha", "theta_alpha"]),
    )
    frames = ext.step(Chunk(x, ts))
    ends = 250 + 25 * np.arange(len(frames))
    in_bl = ends <= 2000
    assert all(f.flags & Quality.BASELINE for f, b in zip(frames, in_bl) if b)
    assert not any(f.flags & Quality.BASELINE for f, b in zip(frames, in_bl) if not b)
    assert all(np.isnan(f["alpha"]) for f, b in zip(frames, in_bl) if b)
    for name in ("alpha", "theta_alpha"):
        ref = np.array([f[name] for f in raw])
        mu, sd = ref[in_bl].mean(), ref[in_bl].std(ddof=1)
        got = np.array([f[name] for f in frames])
        np.testing.assert_allclose(got[~in_bl], (ref[~in_bl] - mu) / sd, rtol=1e-9)
    # features not listed stay in their own units
    np.testing.assert_array_equal([f["theta"] for f in frames], [f["theta"] for f in raw])


def test_build_chain_rois_laplacian_and_quality_on_clean_synthetic_eeg():
    gen = SyntheticEEG(n_channels=32, sfreq=500.0, seed=3, blink_rate_per_min=0.0)
    fcfg = FeaturesConfig(
        rois={"posterior": ["O1", "O2", "Pz"], "frontal": {"Fz": 0.5, "Cz": 0.5}},
        window_samples=500,
        hop_samples=25,
        method="iir",
        relative_to=(1.0, 40.0),
        paf={"segment_samples": 1000, "segments": 5},
        baseline={"duration_s": 4.0},
    )
    pcfg = PreprocessConfig(
        reference="average",
        laplacian={"Pz": ["P3", "P4", "PO3", "PO4"]},
        highpass_hz=1.0,
        notch_hz=50.0,
        notch_harmonics=2,
    )
    pre, ext = build_chain(fcfg, pcfg, 500.0, gen.ch_names)
    assert ext.names == tuple(features_of(fcfg))
    assert pre.signal_names == ["posterior", "frontal"] and pre.monitor_names == ["O1", "O2", "Pz", "Fz", "Cz"]
    pre.warmup()
    ext.warmup()
    assert ext.frames == 0
    frames = []
    for _ in range(20):
        chunk = Chunk(gen.generate(500), np.arange(gen.samples_generated - 500, gen.samples_generated) / 500.0)
        frames += ext.step(pre.step(chunk))
    assert len(frames) == (20 * 500 - 500) // 25 + 1
    bad = Quality.ARTIFACT | Quality.FLAT | Quality.NONFINITE | Quality.EMG | Quality.GAP
    assert not any(f.flags & bad for f in frames)
    late = frames[-1]
    assert np.isfinite(late["alpha_posterior"]) and 8.0 < late["paf_cog_posterior"] < 12.0


def test_flat_electrode_inside_an_roi_is_flagged():
    # a dead O2 disappears in the ROI mean but the monitor column shows it
    gen = SyntheticEEG(n_channels=32, sfreq=500.0, seed=4, blink_rate_per_min=0.0)
    fcfg = FeaturesConfig(channels=["O1", "O2", "Pz"], window_samples=500, hop_samples=50)
    pre, ext = build_chain(fcfg, PreprocessConfig(highpass_hz=1.0), 500.0, gen.ch_names)
    data = gen.generate(3000)
    data[:, gen.ch_names.index("O2")] = 12.0
    frames = ext.step(pre.step(Chunk(data, np.arange(3000) / 500.0)))
    assert frames and all(f.flags & Quality.FLAT for f in frames[5:])


def test_quality_flags_cover_exactly_the_windows_that_hold_the_event():
    rng = np.random.default_rng(6)
    n, win, hop = 3000, 250, 10
    t = np.arange(n) / FS
    x = rng.standard_normal((n, 1)) * 5
    x[1000, 0] = 150.0  # a spike: peak-to-peak over 100 µV
    x[1500:1550, 0] += 15 * np.abs(rng.standard_normal(50)) * (np.arange(50) % 2 * 2 - 1)  # EMG-like burst
    x[2000, 0] = np.nan
    t[2500:] += 0.2  # gap between samples 2499 and 2500
    ext = FeatureExtractor(
        FS, ["c"], BANDS, window=win, hop=hop, quality=QualityConfig(amplitude_uV=100.0, emg_hz=60.0, emg_high_hz=None)
    )
    frames = ext.step(Chunk(x, t))
    ends = win + hop * np.arange(len(frames))

    def holds(i, j=None):
        j = i if j is None else j
        return (ends > j) & (ends - win <= i)

    flags = np.array([int(f.flags) for f in frames])
    np.testing.assert_array_equal(flags & Quality.ARTIFACT != 0, holds(1000))
    np.testing.assert_array_equal(flags & Quality.NONFINITE != 0, holds(2000))
    np.testing.assert_array_equal(flags & Quality.GAP != 0, holds(2499, 2500))
    emg = flags & Quality.EMG != 0
    assert emg[holds(1500, 1549)].all()  # the spike counts as high-frequency power too; clean windows do not
    touches_burst = (ends > 1500) & (ends - win <= 1549)
    assert not emg[~touches_burst & ~holds(1000)].any()
    assert not np.any(flags & Quality.FLAT)
    # values are NaN only while the NaN is in the window, then everything recovers
    vals = np.array([f["alpha"] for f in frames])
    np.testing.assert_array_equal(np.isnan(vals), holds(2000))


def test_nan_never_poisons_the_preprocessing_filters():
    gen = SyntheticEEG(n_channels=8, sfreq=FS, seed=5, blink_rate_per_min=0.0)
    fcfg = FeaturesConfig(channels=["F3", "F4"], window_samples=250, hop_samples=25, method="sliding_dft")
    pcfg = PreprocessConfig(reference="average", highpass_hz=1.0, notch_hz=50.0)
    pre, ext = build_chain(fcfg, pcfg, FS, gen.ch_names)
    data = gen.generate(4000)
    data[1000:1003, 2] = np.nan  # one channel: the common average spreads it to every output sample
    frames = ext.step(pre.step(Chunk(data, np.arange(4000) / FS)))
    ends = 250 + 25 * np.arange(len(frames))
    alpha = np.array([f["alpha"] for f in frames])
    assert np.all(np.isnan(alpha[(ends > 1000) & (ends - 250 <= 1002)]))
    assert np.all(np.isfinite(alpha[ends - 250 > 1002]))
    assert np.all(np.isfinite(pre.zi))


def test_extractor_warmup_leaves_state_alone():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((800, 1))
    a = FeatureExtractor(FS, ["c"], BANDS, window=250, hop=25, method="sliding_dft")
    b = FeatureExtractor(FS, ["c"], BANDS, window=250, hop=25, method="sliding_dft")
    b.warmup()
    fa = a.step(Chunk(x, np.arange(800) / FS))
    fb = b.step(Chunk(x, np.arange(800) / FS))
    assert [f.values.tobytes() for f in fa] == [f.values.tobytes() for f in fb]
    assert [f.index for f in fb] == list(range(len(fa)))


def test_welch_frames_equal_scipy_through_the_extractor():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((600, 1))
    frames = FeatureExtractor(FS, ["roi"], BANDS, RATIOS, window=250, hop=50).step(Chunk(x, np.arange(600) / FS))
    f, p = signal.welch(x[:250, 0], fs=FS, window="hann", nperseg=250)
    theta = p[(f >= 4) & (f < 8)].sum() * (f[1] - f[0])  # half-open bands
    alpha = p[(f >= 8) & (f < 12)].sum() * (f[1] - f[0])
    assert frames[0]["theta"] == pytest.approx(np.log10(theta), rel=1e-9)
    assert frames[0]["theta_alpha"] == pytest.approx(np.log10(theta / alpha), rel=1e-9)
