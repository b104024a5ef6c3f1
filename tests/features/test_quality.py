"""Quality flags kept incrementally equal a direct recomputation over each window, for any chunking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from closedloop.config.features import QualityConfig
from closedloop.features.quality import QualityMonitor, emg_filter
from closedloop.types import Quality

FS = 250.0


def nasty(n: int = 6000, n_ch: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise with NaN, ±Inf, spikes, 1e30 and -1e300 garbage, a flat and an all-NaN stretch, a timestamp gap."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_ch)) * 10
    t = np.arange(n) / FS
    x[700, 0] = np.nan
    x[1300, 1] = np.inf
    x[1310, 2] = -np.inf
    x[1600, 0] = 260.0  # a spike (peak-to-peak > 200)
    x[2000:2600, 3] = 4.0 + rng.uniform(-0.4, 0.4, 600)  # flat within ±0.5
    x[2900, 1] = 1e30
    x[3100, 4] = -1e300
    x[3500:3800, 2] = np.nan  # a whole window of NaN in one channel
    x[4200:4450, 4] += 40 * rng.standard_normal(250)  # broadband burst: EMG
    x[5000:5100, 0] = 187_500.0  # railed
    t[5500:] += 0.3
    return x, t


def direct(x: np.ndarray, t: np.ndarray, window: int, hop: int, q: QualityConfig) -> tuple[np.ndarray, list]:
    """Flags and statistics recomputed from scratch over every frame's window (numpy/scipy)."""
    n, n_ch = x.shape
    guard = q.saturation_uV if q.saturation_uV is not None else 1e100
    emg_on = q.emg_rms_uV is not None and q.emg_hz < FS / 2
    y2 = np.zeros_like(x)
    if emg_on:
        sos = emg_filter(FS, q.emg_hz, q.emg_high_hz)
        for c in range(n_ch):
            use = np.flatnonzero(np.abs(x[:, c]) < guard)  # skipped: NaN, Inf, from the guard on
            if use.size:
                v = x[use, c]
                y, _ = signal.sosfilt(sos, v, zi=signal.sosfilt_zi(sos) * v[0])
                y2[use, c] = y * y
    dt = np.diff(t)
    gap = ~(np.abs(dt - 1 / FS) <= 0.5 / FS + q.gap_tolerance_s)  # gap[i]: between samples i and i + 1
    flags, stats = [], []
    for end in range(window, n + 1, hop):
        w = x[end - window : end]
        with np.errstate(invalid="ignore"):
            notnan = ~np.isnan(w)
            mx = np.where(notnan, w, -np.inf).max(axis=0)
            mn = np.where(notnan, w, np.inf).min(axis=0)
            ptp = mx - mn
        ms = y2[end - window : end].sum(axis=0) / window
        bits = 0
        if q.amplitude_uV is not None and np.any(ptp > q.amplitude_uV):
            bits |= Quality.ARTIFACT
        if q.flat_uV is not None and np.any((ptp <= 2 * q.flat_uV) & (mx >= mn)):
            bits |= Quality.FLAT
        if not np.all(np.isfinite(w)):
            bits |= Quality.NONFINITE
        if emg_on and np.any(ms > q.emg_rms_uV**2):
            bits |= Quality.EMG
        if np.any(gap[end - window : end - 1]):
            bits |= Quality.GAP
        if q.saturation_uV is not None and np.any((mx >= q.saturation_uV) | (mn <= -q.saturation_uV)):
            bits |= Quality.SATURATION
        flags.append(int(bits))
        stats.append((mx, mn, ms))
    return np.array(flags), stats


def run(mon: QualityMonitor, x, t, chunk: int, with_stats: bool = False):
    out = np.zeros(x.shape[0] // mon.hop + 2, dtype=np.int64)
    flags, stats = [], []
    for i in range(0, x.shape[0], chunk):
        k = mon.process(x[i : i + chunk], t[i : i + chunk], out)
        flags += out[:k].tolist()
        if with_stats and k:
            assert k == 1
            s = mon.window_stats()
            stats.append((s["max"], s["min"], s["emg_ms"]))
    return np.array(flags), stats


CONFIGS = {
    "defaults": QualityConfig(),
    "high-pass EMG, tight": QualityConfig(amplitude_uV=100.0, emg_high_hz=None, emg_rms_uV=8.0),
    "checks off": QualityConfig(amplitude_uV=None, flat_uV=None, emg_rms_uV=None, saturation_uV=None),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("window,hop", [(250, 10), (250, 250), (200, 30)])
@pytest.mark.parametrize("n_ch", [5, 12])  # up to 8 columns go channel by channel, more row by row
def test_flags_equal_a_direct_recomputation_for_any_chunking(name, window, hop, n_ch):
    q = CONFIGS[name]
    x, t = nasty(n_ch=n_ch)
    ref, ref_stats = direct(x, t, window, hop, q)
    got, stats = run(QualityMonitor(FS, x.shape[1], window, hop, q), x, t, 1, with_stats=True)
    assert got.tobytes() == ref.tobytes()
    for (mx, mn, ms), (rmx, rmn, rms) in zip(stats, ref_stats):
        assert mx.tobytes() == rmx.tobytes() and mn.tobytes() == rmn.tobytes()  # max/min exact
        np.testing.assert_allclose(ms, rms, rtol=1e-9, atol=1e-12)  # sums: only the order of additions differs
    if name == "defaults" and hop == 10:  # every kind is exercised
        seen = {q for q in Quality if q and np.any(ref & q)}
        assert seen == {Quality.ARTIFACT, Quality.FLAT, Quality.NONFINITE, Quality.EMG, Quality.GAP, Quality.SATURATION}
    for chunk in (7, 32, 1000):
        again, _ = run(QualityMonitor(FS, x.shape[1], window, hop, q), x, t, chunk)
        assert again.tobytes() == got.tobytes(), f"chunk {chunk} differs"


def test_no_drift_and_no_residue_after_garbage_over_a_long_run():
    # 1e30 and 1e99 samples pass through the EMG sums; once out of the window nothing of them remains
    q = QualityConfig(saturation_uV=None)  # the EMG filter then takes every finite sample
    rng = np.random.default_rng(1)
    n = 200_000
    x = rng.standard_normal((n, 2)) * 3
    x[50_000, 0] = 1e30
    x[120_000, 1] = 1e99
    t = np.arange(n) / FS
    mon = QualityMonitor(FS, 2, 250, 25, q)
    out = np.zeros(n // 25 + 2, dtype=np.int64)
    mon.process(x, t, out)
    _, stats = direct(x[-2000:], t[-2000:], 250, 25, q)
    # the direct filter restarts 2000 samples before the end; by then the start-up has decayed
    np.testing.assert_allclose(mon.window_stats()["emg_ms"], stats[-1][2], rtol=1e-6)
    assert mon.window_stats()["emg_ms"].max() < 50  # no 1e60-sized residue


def test_saturation_marks_exactly_the_windows_holding_the_extreme_value():
    n, window, hop = 3000, 250, 10
    x = np.random.default_rng(2).standard_normal((n, 3)) * 10
    t = np.arange(n) / FS
    x[1000, 1] = 1e30
    x[2000:2100, 2] = -187_500.0  # an amplifier at its rail
    out = np.zeros(400, dtype=np.int64)
    k = QualityMonitor(FS, 3, window, hop).process(x, t, out)
    ends = window + hop * np.arange(k)

    def holds(i, j):
        return (ends > i) & (ends - window <= j)

    sat = out[:k] & Quality.SATURATION != 0
    np.testing.assert_array_equal(sat, holds(1000, 1000) | holds(2000, 2099))
    off = np.zeros(400, dtype=np.int64)
    QualityMonitor(FS, 3, window, hop, QualityConfig(saturation_uV=None)).process(x, t, off)
    assert not np.any(off & Quality.SATURATION)


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_emg_band_ignores_unnotched_mains_but_catches_muscle(mains_hz):
    fs, n = 500.0, 5000
    rng = np.random.default_rng(3)
    t = np.arange(n) / fs
    eeg = rng.standard_normal(n) * 8 + 20 * np.sin(2 * np.pi * 10 * t)
    mains = 40 * np.sin(2 * np.pi * mains_hz * t) + 10 * np.sin(2 * np.pi * 2 * mains_hz * t)  # no notch
    muscle = signal.sosfilt(signal.butter(4, [20, 150], "bandpass", fs=fs, output="sos"), rng.standard_normal(n))
    muscle *= 30 / muscle.std()  # a 30 µV RMS broadband muscle burst, 2 s long
    burst = np.zeros(n)
    burst[2000:3000] = 1.0
    x = np.stack([eeg + mains, eeg + mains + muscle * burst], axis=1)
    out = np.zeros(n, dtype=np.int64)
    k = QualityMonitor(fs, 2, 500, 50).process(x, t, out)
    ends = 500 + 50 * np.arange(k)
    emg = out[:k] & Quality.EMG != 0
    inside = (ends - 500 >= 2000) & (ends <= 3000)
    assert emg[inside].all()
    assert not emg[(ends <= 2000) | (ends - 500 >= 3000)].any()
    # the high-pass alone (no upper edge) mistakes the same mains for muscle
    hp = np.zeros(n, dtype=np.int64)
    QualityMonitor(fs, 2, 500, 50, QualityConfig(emg_high_hz=None)).process(x, t, hp)
    assert np.all(hp[:k] & Quality.EMG)


def test_flat_and_artifact_use_peak_to_peak_so_offsets_do_not_count():
    n = 2000
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, 2)) * 10 + np.array([25_000.0 - 30_000.0, 3_000.0])  # big electrode offsets
    x[1000:, 1] = 3_000.2  # a dead channel sitting at its offset
    out = np.zeros(400, dtype=np.int64)
    k = QualityMonitor(FS, 2, 250, 25, QualityConfig(saturation_uV=None)).process(x, np.arange(n) / FS, out)
    ends = 250 + 25 * np.arange(k)
    assert not np.any(out[:k] & Quality.ARTIFACT)
    np.testing.assert_array_equal(out[:k] & Quality.FLAT != 0, ends - 250 >= 1000)


def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(ValueError, match="emg_high_hz"):
        QualityConfig(emg_hz=45.0, emg_high_hz=40.0)
    with pytest.raises(ValueError, match="saturation_uV"):
        QualityConfig(saturation_uV=-1.0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_few_columns_give_the_bits_of_the_same_columns_among_many(name):
    # up to 8 columns, usable runs go channel by channel (state in registers) rather than row by row: per
    # channel the same operations in the same order, so the same statistics to the bit, for any chunking
    q = CONFIGS[name]
    x, t = nasty(n_ch=5)
    x[5700:5960, 3] = np.where(np.arange(260) % 2, 0.0, -0.0)  # signed zeros: max/min ties keep the running value
    many = np.ascontiguousarray(np.hstack([x, x[:, ::-1]]))  # 10 columns (the same 5 twice): row by row
    out = np.zeros(2 * (x.shape[0] // 10 + 2), dtype=np.int64)
    for chunk in (1, 7, 32, 1000):
        few = QualityMonitor(FS, 5, 250, 10, q)
        ref = QualityMonitor(FS, 10, 250, 10, q)
        for i in range(0, x.shape[0], chunk):
            k = few.process(x[i : i + chunk], t[i : i + chunk], out)
            assert ref.process(many[i : i + chunk], t[i : i + chunk], out[k:]) == k
            assert out[:k].tobytes() == out[k : 2 * k].tobytes()
            a, b = few.window_stats(), ref.window_stats()
            for key in a:
                assert a[key].tobytes() == b[key][:5].tobytes(), f"chunk {chunk}, {key} at sample {i}"


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_a_dead_channel_leaves_the_other_channels_statistics_bit_identical(chunk):
    # a channel that is NaN in every row (a dead electrode) sends every row down the bad-row path; the other
    # channels' max, min and EMG sums there must be the bits they get without it (clean rows, paired EMG)
    q = QualityConfig()
    x, t = nasty(n_ch=12, seed=3)
    live = np.ascontiguousarray(x)
    dead = np.hstack([x, np.full((x.shape[0], 1), np.nan)])
    a = QualityMonitor(FS, 12, 250, 10, q)
    b = QualityMonitor(FS, 13, 250, 10, q)
    out_a = np.zeros(x.shape[0] // 10 + 2, dtype=np.int64)
    out_b = np.zeros_like(out_a)
    frames = 0
    for i in range(0, x.shape[0], chunk):
        k = a.process(live[i : i + chunk], t[i : i + chunk], out_a)
        assert b.process(dead[i : i + chunk], t[i : i + chunk], out_b) == k
        assert np.all(out_b[:k] & Quality.NONFINITE)  # the dead channel is reported
        sa, sb = a.window_stats(), b.window_stats()
        for key in sa:
            assert sa[key].tobytes() == sb[key][:12].tobytes(), f"{key} at sample {i}"
        frames += k
    assert frames > 500
