"""Tests of the synthetic EEG generator and its LSL publisher, against known truth."""

from closedloop.lslconfig import configure_lsl

configure_lsl()  # before anything touches pylsl

import math  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pylsl  # noqa: E402
import pytest  # noqa: E402
from pylsl.util import LostError  # noqa: E402
from scipy.signal import welch  # noqa: E402

from closedloop.synthetic.eeg import PlantModel, SyntheticEEG, standard_channel_names  # noqa: E402
from closedloop.synthetic.outlet import SynthPublisher, run_synth  # noqa: E402

QUIET = dict(blink_rate_per_min=0.0, line_uV=0.0)  # rhythms and background only


def band_power(x, sfreq, lo, hi, nperseg=None):
    """Power (µV²) in [lo, hi] Hz per channel from Welch's PSD."""
    f, p = welch(x, sfreq, nperseg=nperseg or int(4 * sfreq), axis=0)
    m = (f >= lo) & (f <= hi)
    return p[m].sum(axis=0) * (f[1] - f[0])


def ch(gen, name):
    return gen.ch_names.index(name)


# --------------------------------------------------------------- channel names
def _montage_names():
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated name in MNE >= 1.13
        try:
            montage = mne.channels.make_standard_montage("standard_1005")
        except ValueError:  # removed in MNE 1.14: same positions under a new name
            montage = mne.channels.make_standard_montage("colin27_1005")
    return set(montage.ch_names)


@pytest.mark.parametrize("n", [0, 1, 19, 32, 64])
def test_standard_channel_names_valid_in_standard_1005(n):
    names = standard_channel_names(n)
    assert len(names) == n
    assert len(set(names)) == n
    assert set(names) <= _montage_names()


def test_standard_channel_names_order_and_extension():
    names = standard_channel_names(70)
    assert names[:19] == "Fp1 Fp2 F7 F3 Fz F4 F8 T7 C3 Cz C4 T8 P7 P3 Pz P4 P8 O1 O2".split()
    assert names[64:] == ["E65", "E66", "E67", "E68", "E69", "E70"]
    assert names[:32] == standard_channel_names(32)
    with pytest.raises(ValueError):
        standard_channel_names(-1)


# -------------------------------------------------------------- spectral truth
@pytest.fixture(scope="module")
def steady():
    """60 s at 250 Hz, fixed pain, no amplitude modulation, plus its background alone."""
    kw = dict(n_channels=64, sfreq=250.0, seed=3, pain_sd=0.0, envelope_sd=0.0, **QUIET)
    gen = SyntheticEEG(**kw)
    x = gen.generate(250 * 60).astype(float)
    bg = SyntheticEEG(**{**kw, "alpha_uV": 0.0, "theta_uV": 0.0}).generate(250 * 60).astype(float)
    return gen, x, bg


def test_alpha_peak_frequency_and_posterior_topography(steady):
    gen, x, bg = steady
    f, p = welch(x[:, ch(gen, "Oz")], gen.sfreq, nperseg=int(8 * gen.sfreq))
    m = (f >= 7) & (f <= 13)
    assert f[m][np.argmax(p[m])] == pytest.approx(10.0, abs=0.3)
    alpha = band_power(x, gen.sfreq, 8, 12)
    for posterior in ("O1", "O2", "Pz", "P3", "P4", "PO3", "PO4"):
        assert alpha[ch(gen, posterior)] > 3 * alpha[ch(gen, "Fz")], posterior
    # calibrated: a sinusoid of amplitude A·w has power (A·w)²/2
    excess = alpha - band_power(bg, gen.sfreq, 8, 12)
    expected = (10.0 * gen.alpha_topography) ** 2 / 2
    i = ch(gen, "Oz")
    assert excess[i] == pytest.approx(expected[i], rel=0.1)


def test_theta_strongest_at_frontal_midline(steady):
    gen, x, bg = steady
    fz = x[:, ch(gen, "Fz")]
    f, p = welch(fz, gen.sfreq, nperseg=int(8 * gen.sfreq))
    m = (f >= 4) & (f <= 8)
    assert f[m][np.argmax(p[m])] == pytest.approx(6.0, abs=0.3)
    theta = band_power(x, gen.sfreq, 4, 8)
    for site in ("Fz", "FCz", "Cz"):
        assert theta[ch(gen, site)] > 1.4 * theta[ch(gen, "Oz")], site
    # calibrated: the rhythm alone (data minus the same-seed background) has power (A·w)²/2
    rhythm = band_power(x - bg, gen.sfreq, 4, 8)
    assert rhythm[ch(gen, "Fz")] == pytest.approx((4.0 * gen.theta_topography[ch(gen, "Fz")]) ** 2 / 2, rel=0.05)
    assert rhythm[ch(gen, "Fz")] > 8 * rhythm[ch(gen, "Oz")]


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_background_is_one_over_f(exponent):
    gen = SyntheticEEG(8, 250.0, seed=5, alpha_uV=0, theta_uV=0, background_exponent=exponent, **QUIET)
    x = gen.generate(250 * 60).astype(float)
    f, p = welch(x, gen.sfreq, nperseg=1000, axis=0)
    m = (f >= 1) & (f <= 40)
    slope = np.polyfit(np.log10(f[m]), np.log10(p[m].mean(axis=1)), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)
    assert np.mean(x.std(axis=0)) == pytest.approx(8.0, rel=0.2)  # background_uV is the RMS


def test_neighbouring_channels_correlate():
    kw = dict(n_channels=64, sfreq=250.0, seed=2, alpha_uV=0, theta_uV=0, **QUIET)
    gen = SyntheticEEG(**kw)
    c = np.corrcoef(gen.generate(250 * 20).T)
    assert c[ch(gen, "C3"), ch(gen, "C1")] > 0.25
    assert c[ch(gen, "C3"), ch(gen, "C1")] > abs(c[ch(gen, "C3"), ch(gen, "O2")]) + 0.2
    alone = SyntheticEEG(**kw, spatial_spread=0.0)
    c0 = np.corrcoef(alone.generate(250 * 20).T)
    assert abs(c0[ch(gen, "C3"), ch(gen, "C1")]) < 0.1


@pytest.mark.parametrize("line_hz", [50.0, 60.0])
def test_line_noise_peak(line_hz):
    gen = SyntheticEEG(4, 500.0, seed=1, blink_rate_per_min=0, line_hz=line_hz, line_uV=2.0)
    f, p = welch(gen.generate(500 * 20), gen.sfreq, nperseg=5000, axis=0)
    peak = p[np.argmin(abs(f - line_hz))]
    around = p[(abs(f - line_hz) > 3) & (abs(f - line_hz) < 10)].mean(axis=0)
    assert np.all(peak > 20 * around)
    assert f[(f > 30) & (f < 100)][np.argmax(p[(f > 30) & (f < 100), 0])] == line_hz


# -------------------------------------------------------------------- blinks
def test_blinks_frontal_and_reported():
    kw = dict(n_channels=32, sfreq=250.0, seed=4, line_uV=0.0)
    blinking = SyntheticEEG(**kw, blink_rate_per_min=60.0)
    still = SyntheticEEG(**kw, blink_rate_per_min=0.0)
    diff = np.zeros((250 * 30, 32))
    events = []
    for k in range(0, len(diff), 250):  # 1-s chunks: blinks cross chunk boundaries
        diff[k : k + 250] = blinking.generate(250)
        diff[k : k + 250] -= still.generate(250)
        events += blinking.pop_events()
    assert blinking.pop_events() == [] and still.pop_events() == []
    assert 12 <= len(events) <= 45  # about 30 expected
    assert all(label == "blink" for _, label in events)
    onsets = np.array([i for i, _ in events])
    assert np.all(np.diff(onsets) > 0.3 * 250)
    length = int(0.3 * 250)
    mask = np.zeros(len(diff), bool)
    for onset in onsets:
        seg = diff[onset : onset + length]
        assert 100 - 1e-3 <= seg[:, ch(blinking, "Fp1")].max() <= 200 + 1e-3
        assert seg[:, ch(blinking, "O1")].max() < 0.1 * seg[:, ch(blinking, "Fp1")].max()
        assert seg[:, ch(blinking, "F3")].max() < seg[:, ch(blinking, "Fp1")].max()
        assert np.all(seg[0] == 0)  # the onset sample starts the blink from zero
        mask[onset : onset + length] = True
    assert np.all(diff[~mask] == 0)  # blinks add nothing outside their windows


# ----------------------------------------------------- determinism, chunking
def test_same_seed_same_data_and_different_seed_differs():
    a, b, c = (SyntheticEEG(16, 250.0, seed=s, blink_rate_per_min=30) for s in (7, 7, 8))
    for n, stim in [(100, 0.0), (37, 1.0), (500, 0.5)]:
        xa, xb, xc = a.generate(n, stim), b.generate(n, stim), c.generate(n, stim)
        assert np.array_equal(xa, xb)
        assert not np.allclose(xa, xc)
    assert a.truth() == b.truth()


@pytest.mark.parametrize("stim", [0.0, 1.5])
def test_chunk_size_does_not_change_samples(stim):
    kw = dict(n_channels=16, sfreq=250.0, seed=11, blink_rate_per_min=40)
    whole_gen = SyntheticEEG(**kw)
    whole = whole_gen.generate(4000, stim)
    pieces_gen = SyntheticEEG(**kw)
    sizes = [1, 7, 255, 256, 257, 0, 513, 1000, 3]
    parts = [pieces_gen.generate(n, stim) for n in sizes]
    parts.append(pieces_gen.generate(4000 - sum(sizes), stim))
    assert np.array_equal(np.concatenate(parts), whole)
    assert pieces_gen.pop_events() == whole_gen.pop_events() != []
    assert pieces_gen.truth() == whole_gen.truth()


def test_out_buffer_is_filled_in_place():
    gen, ref = SyntheticEEG(8, seed=1), SyntheticEEG(8, seed=1)
    buf = np.empty((20, 8), np.float32)
    assert gen.generate(20, out=buf) is buf
    assert np.array_equal(buf, ref.generate(20))
    with pytest.raises(ValueError):
        gen.generate(20, out=np.empty((20, 8)))  # float64
    with pytest.raises(ValueError):
        SyntheticEEG(4, ch_names=["Fz", "Cz"])


def test_64_channels_at_2000_hz_in_small_chunks():
    gen = SyntheticEEG(64, 2000.0, seed=0, blink_rate_per_min=30)
    assert len(set(gen.ch_names)) == 64 and gen.n_channels == 64
    buf = np.empty((20, 64), np.float32)
    chunks = []
    for _ in range(100):
        chunks.append(gen.generate(20, 1.0, out=buf).copy())
    x = np.concatenate(chunks)
    assert x.shape == (2000, 64) and np.all(np.isfinite(x))
    assert gen.samples_generated == 2000
    assert np.array_equal(x, SyntheticEEG(64, 2000.0, seed=0, blink_rate_per_min=30).generate(2000, 1.0))
    f, p = welch(x[:, ch(gen, "POz")], 2000.0, nperseg=2000)
    assert f[(f > 5) & (f < 20)][np.argmax(p[(f > 5) & (f < 20)])] == pytest.approx(10.0, abs=1.0)


# --------------------------------------------------------------------- plant
def test_plant_first_order_step_response():
    gen = SyntheticEEG(4, 500.0, seed=0, plant=PlantModel(gain_per_mA=0.8, tau_s=2.0))
    assert gen.alpha_gain == 1.0
    gen.generate(1000, stim_mA=1.0)  # exactly one time constant
    assert gen.alpha_gain == pytest.approx(1 + 0.8 * (1 - math.exp(-1)), abs=1e-9)
    gen.generate(5000, stim_mA=1.0)
    assert gen.alpha_gain == pytest.approx(1 + 0.8 * (1 - math.exp(-6)), abs=1e-9)
    gen.generate(5000, stim_mA=0.0)  # decays back after stimulation stops
    assert gen.alpha_gain - 1 == pytest.approx(0.8 * (1 - math.exp(-6)) * math.exp(-5), rel=1e-6)


def test_stimulation_raises_alpha_power_by_plant_gain():
    kw = dict(
        n_channels=8,
        ch_names=["Fz", "Cz", "Pz", "POz", "Oz", "O1", "O2", "P3"],
        sfreq=250.0,
        seed=9,
        pain_sd=0.0,
        **QUIET,
    )
    on, off = SyntheticEEG(**kw), SyntheticEEG(**kw)
    background = SyntheticEEG(**kw, alpha_uV=0.0)
    for g, mA in ((on, 1.0), (off, 0.0), (background, 0.0)):
        g.generate(250 * 10, mA)  # 5 time constants
    x_on, x_off, x_bg = (g.generate(250 * 40, mA).astype(float) for g, mA in ((on, 1.0), (off, 0.0), (background, 0.0)))
    i = 4  # Oz
    p_on, p_off, p_bg = (band_power(x, 250.0, 8, 12)[i] for x in (x_on, x_off, x_bg))
    assert p_on / p_off == pytest.approx(1.8**2, rel=0.15)
    assert (p_on - p_bg) / (p_off - p_bg) == pytest.approx(1.8**2, rel=0.05)
    assert on.alpha_amplitude_uV / off.alpha_amplitude_uV == pytest.approx(on.alpha_gain, rel=1e-9)


def test_no_plant_means_stimulation_has_no_effect():
    a = SyntheticEEG(4, seed=2, plant=None)
    b = SyntheticEEG(4, seed=2, plant=None)
    assert np.array_equal(a.generate(500, 2.0), b.generate(500, 0.0))
    assert a.alpha_gain == 1.0


# ----------------------------------------------------------------- pain state
def test_pain_drift_moves_alpha_and_theta_in_opposite_directions():
    # no waxing/waning, so the band powers follow the pain state rather than burst noise
    gen = SyntheticEEG(
        ch_names=["Fz", "FCz", "Oz", "POz"],
        sfreq=100.0,
        seed=21,
        pain_tau_s=10.0,
        blink_rate_per_min=0.0,
        envelope_sd=0.0,
    )
    pain, alpha, theta = [], [], []
    for _ in range(160):  # 800 s in 5-s windows
        x = gen.generate(500).astype(float)
        pain.append(gen.pain_state)
        alpha.append(np.log(band_power(x[:, 2:], 100.0, 8, 12, nperseg=200).mean()))
        theta.append(np.log(band_power(x[:, :2], 100.0, 4, 8, nperseg=200).mean()))
    pain = np.array(pain)
    assert 0.0 <= pain.min() and pain.max() <= 1.0 and pain.std() > 0.1
    assert np.corrcoef(pain, alpha)[0, 1] < -0.5
    assert np.corrcoef(pain, theta)[0, 1] > 0.3
    assert np.corrcoef(alpha, theta)[0, 1] < -0.3
    # the truth amplitudes follow the documented couplings
    centred = gen.pain_state - 0.5
    assert gen.alpha_amplitude_uV == pytest.approx(10.0 * (1 - 0.6 * centred))
    assert gen.theta_amplitude_uV == pytest.approx(4.0 * (1 + 0.8 * centred))


# ------------------------------------------------------------------------ LSL
def _unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _resolve(source_id, timeout=5.0):
    found = pylsl.resolve_byprop("source_id", source_id, 1, timeout)
    assert found, f"stream {source_id} not found"
    return found[0]


@pytest.mark.lsl
def test_publisher_metadata_data_timestamps_and_loss():
    name = _unique("test-synth")
    gen = SyntheticEEG(8, 500.0, seed=13, blink_rate_per_min=0)
    pub = SynthPublisher(gen, name=name, chunk_size=10, markers=False)
    assert pub.source_id == f"closedloop-synth-{name}" and pub.marker_name == f"{name}-markers"
    pub.start()
    try:
        info = _resolve(pub.source_id)
        inlet = pylsl.StreamInlet(info, max_buflen=10, recover=False)
        full = inlet.info(timeout=5.0)
        assert full.name() == name and full.type() == "EEG" and full.channel_count() == 8
        assert full.nominal_srate() == 500.0 and full.channel_format() == pylsl.cf_float32
        assert full.get_channel_labels() == gen.ch_names
        assert full.get_channel_units() == ["microvolts"] * 8
        assert full.get_channel_types() == ["EEG"] * 8
        assert full.desc().child_value("manufacturer") == "closedloop"
        assert full.desc().child("closedloop").child_value("seed") == "13"
        inlet.open_stream(timeout=5.0)
        data, stamps = [], []
        deadline = time.monotonic() + 5.0
        while sum(len(s) for s in stamps) < 250 and time.monotonic() < deadline:
            d, t = inlet.pull_chunk(timeout=0.2, max_samples=100)
            if t:
                data.append(np.asarray(d, np.float32))
                stamps.append(np.asarray(t))
        x, t = np.concatenate(data), np.concatenate(stamps)
        assert len(t) >= 250
        assert np.allclose(np.diff(t), 1 / 500.0, atol=1e-6)
        first = round((t[0] - pub.start_time) * 500.0)
        assert t[0] == pytest.approx(pub.timestamp_of(first), abs=1e-6)
        ref = SyntheticEEG(8, 500.0, seed=13, blink_rate_per_min=0).generate(first + len(t))
        assert np.array_equal(x, ref[first:])
    finally:
        pub.stop()
    assert pub.error is None
    with pytest.raises(LostError):
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            inlet.pull_chunk(timeout=0.2)
    assert not pub.running


@pytest.mark.lsl
def test_publisher_markers_and_stim_polling():
    name = _unique("test-synth-mk")
    calls = []

    def stim():
        calls.append(1)
        return 1.0

    kw = dict(n_channels=4, sfreq=250.0, seed=17, blink_rate_per_min=240.0)
    gen = SyntheticEEG(**kw)
    pub = SynthPublisher(gen, name=name, source_id=_unique("sid"), chunk_size=5, stim_amplitude=stim)
    pub.start()
    try:
        info = _resolve(pub.marker_source_id)
        assert info.name() == f"{name}-markers" and info.type() == "Markers"
        assert info.nominal_srate() == pylsl.IRREGULAR_RATE and info.channel_format() == pylsl.cf_string
        inlet = pylsl.StreamInlet(info, recover=False)
        inlet.open_stream(timeout=5.0)
        markers = []
        deadline = time.monotonic() + 5.0
        while len(markers) < 2 and time.monotonic() < deadline:
            sample, ts = inlet.pull_sample(timeout=0.2)
            if sample is not None:
                markers.append((sample[0], ts))
    finally:
        pub.stop()
    assert len(markers) >= 2
    assert all(label == "blink" for label, _ in markers)
    ref = SyntheticEEG(**kw)
    ref.generate(gen.samples_generated, 1.0)
    onsets = np.array([pub.timestamp_of(i) for i, _ in ref.pop_events()])
    for _, ts in markers:  # each marker carries the time of a blink's onset sample
        assert np.min(abs(onsets - ts)) < 1e-6
    assert len(calls) == gen.samples_generated // 5 and gen.alpha_gain > 1.0


@pytest.mark.lsl
def test_run_synth_streams_for_duration():
    name = _unique("test-run-synth")
    seen = {}

    def on_start(pub):
        seen["info"] = _resolve(pub.source_id)
        seen["pub"] = pub
        seen["started"] = time.monotonic()  # the duration counts from here (resolving may take long when busy)

    run_synth(name, n_channels=4, sfreq=250.0, seed=1, chunk_size=10, duration_s=0.5, on_start=on_start)
    assert time.monotonic() - seen["started"] >= 0.5  # streamed for its duration, then returned (a hang times out)
    assert seen["info"].name() == name and seen["info"].channel_count() == 4
    assert not seen["pub"].running and seen["pub"].samples_pushed >= 100
