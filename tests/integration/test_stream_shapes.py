"""Streams as real amplifiers and tools publish them: units, types, labels, and bad shapes as one-line errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.sources import LSLSource, SourceError  # noqa: E402

pytestmark = pytest.mark.lsl

REPO = Path(__file__).resolve().parents[2]
LABELS = ["Fz", "Cz", "Pz", "O1", "O2", "ECG"]


def outlet(name, labels=LABELS, units=None, types=None, fs=500.0, fmt="float32", stream_type="EEG", n=None):
    """An LSL outlet with the given header; ``labels=None`` declares no channels at all."""
    n = n if n is not None else len(labels or LABELS)
    info = pylsl.StreamInfo(name, stream_type, n, fs, fmt, name)
    if labels is not None:
        chans = info.desc().append_child("channels")
        for i, lab in enumerate(labels):
            ch = chans.append_child("channel")
            ch.append_child_value("label", lab)
            if units is not None:
                ch.append_child_value("unit", units[i])
            if types is not None:
                ch.append_child_value("type", types[i])
    return pylsl.StreamOutlet(info)


class Pusher:
    """Push ``data`` (n, ch) to an outlet in chunks, paced by the LSL clock, from a thread."""

    def __init__(self, out, data, fs=500.0, chunk=10):
        self.out, self.data, self.fs, self.chunk = out, data, fs, chunk
        self.stop = threading.Event()
        self.t0 = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.t0 = pylsl.local_clock()
        for a in range(0, self.data.shape[0], self.chunk):
            due = self.t0 + (a + self.chunk) / self.fs
            if self.stop.wait(max(0.0, due - pylsl.local_clock())):
                return
            stamps = (self.t0 + (a + np.arange(self.chunk)) / self.fs).tolist()
            self.out.push_chunk(np.ascontiguousarray(self.data[a : a + self.chunk]), stamps)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def pull_until(src, n_samples, deadline_s=10.0):
    got_scaled, got_raw = [], []
    end = pylsl.local_clock() + deadline_s
    total = 0
    while total < n_samples and pylsl.local_clock() < end:
        c = src.pull(timeout=0.05)
        if c is not None:
            got_scaled.append(c.data.copy())
            got_raw.append(src.raw_data.copy())
            total += c.n_samples
    assert total >= n_samples, f"only {total} samples within {deadline_s} s"
    return np.concatenate(got_scaled), np.concatenate(got_raw)


@pytest.mark.parametrize("unit", ["V", "volts", "0"])  # "0": how mne-lsl writes volts (FIFF multiplier)
def test_volts_are_scaled_to_microvolts_and_raw_values_kept(unique_name, unit):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal((600, 6)) * 20e-6).astype(np.float32)
    out = outlet(unique_name, units=[unit] * 5 + ["millivolts"], types=["eeg"] * 5 + ["ecg"], stream_type="eeg")
    src = LSLSource(name=unique_name, type="EEG", sfreq=500.0, resolve_timeout_s=5)  # "eeg" matches "EEG"
    src.open()
    try:
        with Pusher(out, data):
            scaled, raw = pull_until(src, 300)
    finally:
        src.close()
    assert src.ch_types == ["EEG"] * 5 + ["ECG"]
    factors = np.array([1e6] * 5 + [1e3], dtype=np.float32)
    np.testing.assert_array_equal(raw, data[: raw.shape[0]])  # as received (what the recording keeps)
    np.testing.assert_array_equal(scaled, raw * factors)  # the one multiply, in the stream's dtype
    assert 1.0 < np.abs(scaled[:, :5]).std() < 100.0  # µV now, not 1e-5
    assert "values in V, mV scaled to µV" in src.describe()


def test_a_stream_without_units_is_taken_as_microvolts_with_a_notice(unique_name, caplog):
    _alive = outlet(unique_name)  # the outlet must live while the source opens
    src = LSLSource(name=unique_name, sfreq=500.0, resolve_timeout_s=5)
    with caplog.at_level("WARNING"):
        src.open()
    src.close()
    assert np.all(src.factors == 1.0) and "taken as µV" in src.describe()
    assert any("declares no unit" in n for n in src.notes)
    assert any("declares no unit" in r.getMessage() for r in caplog.records)


def test_units_override_and_header_types_leave_non_eeg_out_of_the_average(unique_name):
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs_lsl.toml", {"preprocess.reference": "average"})
    cfg = resolved.config
    _alive = outlet(
        unique_name, labels=["Fz", "Cz", "Pz", "O1", "O2", "X1"], units=["uV"] * 6, types=["EEG"] * 5 + ["EMG"]
    )
    src = LSLSource(
        name=unique_name,
        sfreq=500.0,
        resolve_timeout_s=5,
        units="V",
        features=cfg.features,
        preprocess=cfg.preprocess,
    )
    src.open()
    src.close()
    np.testing.assert_array_equal(src.factors, 1e6)  # the stream said µV; the pipeline knows better
    assert src.ch_types[-1] == "EMG" and src.ref_excluded == ["X1"]
    assert any("left out of the average reference" in n and "'X1' (EMG)" in n for n in src.notes)


@pytest.mark.parametrize(
    "shape, overrides, expected",
    [
        (dict(n=8, labels=None), {"source.n_channels": 6}, "has 8 channels, the pipeline expects 6"),
        (dict(fs=250.0), {}, "runs at 250 Hz, the pipeline expects 500 Hz"),
        (dict(fmt="string"), {}, "carries string values"),
        (dict(fmt="int16"), {}, "carries int16 values"),
        (
            dict(labels=["Fz", "Cz", "P3", "P4", "T7", "ECG"]),
            {},
            r"features.channels: channel\(s\) \['O1', 'O2', 'Pz'\]",
        ),
        (dict(labels=None, n=6), {}, "declares no channel labels"),
        (dict(labels=["Fz", "Cz", "Pz", "O\t1", "O2", "ECG"]), {}, "contains a control character"),
        (dict(labels=["Fz", "Cz", "Pz", "O\x011", "O2", "ECG"]), {}, "not valid XML"),
        (dict(labels=["Fz", "Cz", "", "O1", "O2", "ECG"]), {}, "empty label"),
        (dict(labels=["Fz", "Cz", "Pz", "O1", "O1", "ECG"]), {}, "label 'O1' is used by channels 3 and 4"),
        (dict(units=["V"] * 5 + ["furlong"]), {}, "channel 'ECG' declares unit 'furlong'"),
        (dict(), {"preprocess.picks": ["O1", "O2", "Pz", "T7"]}, r"preprocess.picks: channel\(s\) \['T7'\]"),
    ],
)
def test_bad_stream_shapes_are_one_line_errors(unique_name, shape, overrides, expected):
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs_lsl.toml", {"source.name": unique_name} | overrides)
    cfg = resolved.config
    _alive = outlet(unique_name, **shape)
    src = LSLSource(
        name=unique_name,
        sfreq=cfg.source.sfreq,
        n_channels=cfg.source.n_channels,
        resolve_timeout_s=5,
        features=cfg.features,
        preprocess=cfg.preprocess,
    )
    with pytest.raises(SourceError, match=expected) as err:
        src.open()
    assert "\n" not in str(err.value) and src.inlet is None


def run_cli(tmp_path, pipeline):
    """``closedloop run`` in a subprocess; a wide console, so that Rich does not wrap the one-line error."""
    import os

    return subprocess.run(
        [sys.executable, "-m", "closedloop", "run", str(pipeline), "-d", "1", "-q", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=os.environ | {"COLUMNS": "1000"},
    )


def write_pipeline(tmp_path, name, **source):
    with open(REPO / "pipelines" / "alpha_tacs_lsl.toml", "rb") as f:
        raw = tomllib.load(f)
    raw["source"].update({"name": name, "resolve_timeout_s": 3.0, **source})
    raw["device"]["profile"] = str(REPO / "devices" / "sim_tacs.toml")
    path = tmp_path / "p.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    return path


@pytest.mark.parametrize(
    "shape, expected",
    [
        (dict(fs=250.0), "runs at 250 Hz"),
        (dict(labels=["Fz", "Cz", "P3", "P4", "T7", "ECG"]), "features.channels: channel(s) ['O1', 'O2', 'Pz']"),
        (dict(labels=None, n=6), "declares no channel labels"),
        (dict(units=["V"] * 5 + ["furlong"]), "declares unit 'furlong'"),
    ],
)
def test_closedloop_run_refuses_bad_streams_in_one_line_with_exit_code_3(tmp_path, unique_name, shape, expected):
    _alive = outlet(unique_name, **shape)
    run = run_cli(tmp_path, write_pipeline(tmp_path, unique_name))
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr and expected in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0]


def test_no_stream_error_names_the_scope(tmp_path, unique_name):
    run = run_cli(tmp_path, write_pipeline(tmp_path, unique_name, resolve_timeout_s=0.5))
    assert run.returncode == 3 and "Traceback" not in run.stderr
    assert "no LSL stream matching" in run.stderr and 'scope = "lab"' in run.stderr


def test_a_float32_volts_stream_records_as_received_and_replays_bit_for_bit(tmp_path, unique_name):
    """The usual amplifier case: float32 volts. Live scales in float32; the replay of session.xdf alike."""
    from closedloop.live.runtime import LiveSession
    from closedloop.offline.replay import replay
    from closedloop.recording import XDFReader
    from closedloop.synthetic.eeg import SyntheticEEG

    gen = SyntheticEEG(n_channels=5, sfreq=500.0, seed=9)
    uv = np.hstack([gen.generate(30_000), np.zeros((30_000, 1))])
    data = (uv * 1e-6).astype(np.float32)
    out = outlet(unique_name, labels=[*gen.ch_names, "ECG"], units=["V"] * 6)
    over = {"source.name": unique_name, "features.channels": gen.ch_names[:3], "features.smoothing_s": 0.0}
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs_lsl.toml", over)
    seen = []
    with Pusher(out, data):
        LiveSession(resolved, 2.0, tmp_path, show_status=False, on_step=seen.append).run()
    assert len(seen) > 10
    reader = XDFReader(tmp_path / "session.xdf")
    eeg = next(s for s in reader.streams.values() if s.desc("closedloop/role") == "eeg")
    received = np.concatenate([v for v, _ in reader.iter_samples(eeg.stream_id)])
    assert received.dtype == np.float32 and set(eeg.units) == {"V"} and np.abs(received).max() < 1e-3
    again = replay(tmp_path / "session.xdf", resolved, keep="steps")
    assert [(s.frame.time, s.frame.values.tobytes()) for s in again.steps] == [
        (s.frame.time, s.frame.values.tobytes()) for s in seen
    ]


def _fingerprint(steps) -> list[tuple]:
    return [(s.frame.time, s.frame.values.tobytes(), int(s.frame.flags), s.allowed.amplitude_mA) for s in steps]


def test_a_units_override_is_recorded_so_the_recording_reads_right_without_the_pipeline(tmp_path, unique_name):
    """An amplifier that says µV but sends volts (``[source] units = "V"``) and a trigger channel in counts.

    The recording must say what its values are: replayed without the override, it gives the live frames bit for
    bit; the dashboard's recorded view and the report's EEG excerpt show µV; exported to BIDS, the EEG is in
    volts and the trigger channel keeps its codes.
    """
    pytest.importorskip("mne_bids")
    from mne_bids import BIDSPath, read_raw_bids

    from closedloop.live.dashboard.recorded import RecordedSession
    from closedloop.live.runtime import LiveSession
    from closedloop.offline.replay import replay
    from closedloop.offline.report import _eeg_figure, write_report
    from closedloop.recording import XDFReader
    from closedloop.study.bids import export_sessions

    fs, n = 500.0, 30_000  # 60 s to push (a busy machine may take long to start); the session takes 3 s of it
    t = np.arange(n) / fs
    rng = np.random.default_rng(3)
    volts = 20e-6 * np.sin(2 * np.pi * 10 * t)[:, None] + 5e-6 * rng.standard_normal((n, 5))
    codes = (np.arange(n) // 250 % 4).astype(np.float64)
    data = np.column_stack([volts, codes]).astype(np.float32)
    labels = ["Fz", "Cz", "Pz", "O1", "O2", "TRIG"]
    out = outlet(unique_name, labels=labels, units=["microvolts"] * 5 + ["counts"], types=["EEG"] * 5 + ["STIM"])
    base = {"source.name": unique_name, "recording.report": False, "features.smoothing_s": 0.0}
    live = load_pipeline(REPO / "pipelines" / "alpha_tacs_lsl.toml", base | {"source.units": "V"})
    seen = []
    with Pusher(out, data):
        summary = LiveSession(live, 3.0, tmp_path / "s", show_status=False, on_step=seen.append).run()
    assert summary["stop_reason"] == "duration reached" and len(seen) > 10
    assert 0.0 < np.median([s.frame.values[1] for s in seen]) < 3.0  # log10 alpha in µV², not about -10

    reader = XDFReader(tmp_path / "s" / "session.xdf")
    eeg = next(s for s in reader.streams.values() if s.desc("closedloop/role") == "eeg")
    assert eeg.units == ["V"] * 5 + ["counts"] and eeg.ch_types == ["EEG"] * 5 + ["STIM"]
    received, _ = reader.read_stream(eeg.stream_id)
    assert np.abs(received[:, :5]).max() < 1e-3  # the volts as received

    shown = RecordedSession(tmp_path / "s")  # the dashboard's recorded view: the EEG in µV
    o1 = shown.info.display.index("O1")
    np.testing.assert_allclose(shown.eeg_display[:, o1], received[:, 3].astype(np.float64) * 1e6)

    html = write_report(tmp_path / "s" / "session.xdf", tmp_path / "r.html").read_text()  # its EEG excerpt too
    assert "O1, O2, Pz, Fz, Cz (5 of 6 channels), mean removed, in µV; not voltages, not shown: TRIG." in html
    fig, _ = _eeg_figure(reader, eeg, None)  # what it draws: the five EEG traces in µV (a 20-µV alpha sine)
    assert [tick.get_text() for tick in fig.axes[0].get_yticklabels()] == labels[:5]
    assert 10.0 < np.std(fig.axes[0].lines[0].get_ydata()) < 30.0

    plain = load_pipeline(REPO / "pipelines" / "alpha_tacs_lsl.toml", base)  # no [source] units
    again = replay(tmp_path / "s" / "session.xdf", plain, keep="steps")
    assert _fingerprint(again.steps) == _fingerprint(seen)

    (item,) = export_sessions([tmp_path / "s"], tmp_path / "bids", participant="01")
    raw = read_raw_bids(BIDSPath(subject="01", task="closedloop", datatype="eeg", root=tmp_path / "bids"), verbose=40)
    np.testing.assert_allclose(raw.get_data(picks=labels[:5]).T, received[:, :5], rtol=1e-6, atol=1e-12)
    assert raw.get_channel_types(picks=["TRIG"]) == ["stim"]
    np.testing.assert_array_equal(raw.get_data(picks=["TRIG"])[0], received[:, 5])
    channels = item.eeg.with_name(item.eeg.name.replace("_eeg.vhdr", "_channels.tsv")).read_text(encoding="utf-8")
    units = dict(line.split("\t")[::2][:2] for line in channels.splitlines()[1:])
    assert units == {**dict.fromkeys(labels[:5], "µV"), "TRIG": "n/a"}
