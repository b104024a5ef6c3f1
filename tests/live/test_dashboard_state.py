"""What the dashboard draws: decimation, spectrum, thresholds, blinding, snapshots and deltas."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import welch

from closedloop.config import load_pipeline
from closedloop.live.dashboard.feed import LiveFeed
from closedloop.live.dashboard.state import (
    EEG_POINTS_PER_S,
    EEG_SPAN_S,
    SPECTRUM_SPAN_S,
    DashboardInfo,
    DashboardState,
    finite_list,
)
from closedloop.pipeline import Pipeline
from closedloop.safety import SafetyEvent
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.types import Chunk

FS = 500.0


def info_for(repo, name="alpha_tacs", overrides=None, ch_names=None):
    resolved = load_pipeline(repo / "pipelines" / f"{name}.toml", overrides or {})
    ch = ch_names or SyntheticEEG(n_channels=32, sfreq=FS, seed=1).ch_names
    pipe = Pipeline(resolved, ch)
    info = DashboardInfo.from_config(
        resolved.config.model_dump(mode="json"),
        resolved.envelope(),
        resolved.profile.device.modality,
        ch,
        pipe.feature_names,
    )
    return info, resolved, pipe


def test_info_names_the_controlled_feature_its_thresholds_and_the_limits(repo):
    info, resolved, _ = info_for(repo)
    cfg = resolved.config
    assert info.controlled == cfg.controller.feature == "alpha"
    assert info.lines == {"lower": cfg.controller.lower, "upper": cfg.controller.upper}
    assert info.display == info.roi == cfg.features.channels
    assert info.limits["max_amplitude_mA"] == 1.5  # the pipeline's [safety] override, not the profile's 2.0
    assert info.rates == {"max_ramp_rate_mA_per_s": 0.2, "emergency_ramp_rate_mA_per_s": 2.0}
    assert info.bands == {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}
    hello = info.hello()
    json.dumps(hello, allow_nan=False)
    assert hello["flag_names"]["1"] == "ARTIFACT"


def test_info_shows_the_channels_asked_for_and_notes_the_unknown_ones(repo):
    info, _, _ = info_for(repo, overrides={"output.dashboard_channels": ["Cz", "Xx", "O1"]})
    assert info.display == ["Cz", "O1"]
    assert any("Xx" in n and "output.dashboard_channels" in n for n in info.notes)


def test_min_max_decimation_keeps_a_one_sample_spike_and_bounds_the_points(repo):
    info, _, _ = info_for(repo)
    state = DashboardState(info)
    n = int(3 * FS)
    data = np.zeros((n, 3))
    data[777, 1] = 250.0  # one sample, on O2
    data[1234, 2] = -180.0
    for i in range(0, n, 7):  # odd chunk sizes: buckets straddle chunks
        state.add_eeg(100.0 + i / FS, data[i : i + 7], None)
    snap = state.snapshot()
    t = np.array(snap["eeg"]["t"])
    v = np.array(snap["eeg"]["v"], dtype=float)
    assert v[1].max() == 250.0 and v[2].min() == -180.0 and np.all(v[0] == 0.0)
    assert len(t) <= EEG_POINTS_PER_S * 3 + 2
    assert np.all(np.diff(t) > 0) and t[0] == pytest.approx(0.0) and t[-1] <= n / FS
    # the spike is drawn where it happened (within its bucket)
    assert abs(t[np.argmax(v[1])] - 777 / FS) <= 2 * info.sfreq**-1 * np.ceil(2 * FS / EEG_POINTS_PER_S)


def test_the_eeg_window_scrolls(repo):
    info, _, _ = info_for(repo)
    state = DashboardState(info)
    n = int(12 * FS)
    x = np.ones((n, 3))
    for i in range(0, n, 50):
        state.add_eeg(i / FS, x[i : i + 50], None)
    t = np.array(state.snapshot()["eeg"]["t"])
    assert t[-1] - t[0] == pytest.approx(EEG_SPAN_S, abs=0.02)


def test_the_roi_spectrum_matches_scipy_welch_and_peaks_at_the_planted_rhythm(repo):
    info, _, _ = info_for(repo)
    state = DashboardState(info)
    rng = np.random.default_rng(3)
    n = int(SPECTRUM_SPAN_S * FS)
    t = np.arange(n) / FS
    roi = 20.0 * np.sin(2 * np.pi * 10.0 * t) + rng.normal(0, 2.0, n)
    state.add_eeg(0.0, np.zeros((n, 3)), roi)
    state.update_spectrum()
    spec = state.snapshot()["spectrum"]
    f, p = np.array(spec["f"]), np.array(spec["p"], dtype=float)
    assert f[np.argmax(p)] == pytest.approx(10.0, abs=0.5)
    ref_f, ref_p = welch(roi, FS, window="hann", nperseg=n // 2, noverlap=n // 4, detrend="constant")
    keep = (ref_f >= 1.0) & (ref_f <= 45.0)
    np.testing.assert_allclose(f, ref_f[keep], atol=0.01)
    # numpy.hanning is the symmetric window, scipy's "hann" the periodic one: a few per cent apart
    np.testing.assert_allclose(p, np.log10(ref_p[keep]), atol=0.05)


def test_consecutive_deltas_add_up_to_the_snapshot(repo):
    info, resolved, pipe = info_for(repo)
    gen = SyntheticEEG(n_channels=32, sfreq=FS, seed=2)
    feed = LiveFeed(gen.ch_names, info.display, info.roi)
    state = DashboardState(info)
    got = {"eeg_t": [], "frames_t": [], "stim_t": [], "events": []}
    for i in range(60):
        data = gen.generate(25)
        chunk = Chunk(data, (np.arange(25) + 25 * i) / FS)
        steps = pipe.process(chunk)
        feed.on_chunk(chunk)
        if steps:
            feed.on_frames(steps, "off", pipe.safety, None, 0.001, 0.0005)
            for s in steps:
                feed.on_applied(s.allowed, s.frame.time + 0.001, 0.001)
        if i == 30:
            feed.on_event(SafetyEvent(chunk.timestamps[-1], "clamp", "amplitude clamped", 3.0, 1.5))
        if i % 4 == 3:
            feed.drain(state)
            d = state.delta()
            json.dumps(d, allow_nan=False)
            got["eeg_t"] += d["eeg"]["t"]
            got["frames_t"] += d["frames"]["t"]
            got["stim_t"] += d["stim"]["t"]
            got["events"] += d["events"]
    snap = state.snapshot()
    json.dumps(snap, allow_nan=False)
    n_eeg = len(snap["eeg"]["t"])
    assert got["eeg_t"][-n_eeg:] == snap["eeg"]["t"]
    assert got["frames_t"] == snap["frames"]["t"] and len(snap["frames"]["t"]) == (60 * 25 - 500) // 25 + 1
    assert got["stim_t"] == snap["stim"]["t"]
    assert got["events"] == snap["events"] and snap["events"][0]["kind"] == "clamp"
    st = snap["status"]
    assert st["latency_ms"]["median"] == pytest.approx(1.0) and st["data_age_ms"]["last"] == pytest.approx(0.5)
    assert [g["label"] for g in st["dose"]] == ["amplitude", "charge"]
    assert feed.dropped == 0


def test_a_blinded_session_shows_nothing_that_reveals_the_arm(repo):
    info, resolved, pipe = info_for(repo, "alpha_tacs_open")
    assert info.blinded
    hello = info.hello()
    assert hello["limits"] == {}
    state = DashboardState(info)
    state.add_applied(1.0, 1.0, True, False)
    state.add_desired(1.0, 1.0)
    state.add_event(1.0, "state", "armed → stimulating: output on")
    state.add_event(1.1, "clamp", "amplitude clamped to 1.5 mA")
    state.add_event(1.2, "operator", "stop requested by X")
    state.status.update({"amplitude_mA": 1.0, "output": "on", "dose": {"charge_C": 0.1}, "safety_state": "stimulating"})
    snap = state.snapshot()
    text = json.dumps(snap)
    assert snap["stim"]["a"] == [] and snap["stim"]["da"] == []
    assert [e["kind"] for e in snap["events"]] == ["operator"]
    st = snap["status"]
    assert st["output"] == "blinded" and "amplitude_mA" not in st and "dose" not in st and "safety_state" not in st
    assert "stimulating" not in text and "charge" not in text


def test_finite_list_turns_nan_and_inf_into_null():
    assert finite_list([1.23456, np.nan, np.inf, -2.0], 2) == [1.23, None, None, -2.0]
    json.dumps(finite_list(np.array([np.nan])), allow_nan=False)
