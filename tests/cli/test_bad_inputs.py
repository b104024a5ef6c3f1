"""No traceback ever reaches a user for bad input: over 100 bad pipelines, profiles and arguments.

Each case runs through the command line (``closedloop.cli.main``, the entry
point of the ``closedloop`` script and of ``python -m closedloop``; a sample
also as a real subprocess) and must end with exit code 2 and one line
``error: ...`` that names what is wrong — followed, when one input holds
several problems, by one ``  - key: ...`` line per problem (all reported at once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from closedloop.cli import main

REPO = Path(__file__).resolve().parents[2]

#: ``--set`` overrides of a shipped pipeline, each invalid in one way, and a word the message must hold.
OVERRIDES = [
    ("alpha_tacs", "features.window_samples=1e30", "features.window_samples: is too large"),
    ("alpha_tacs", "features.window_samples=2.5", "features.window_samples: must be a whole number"),
    ("alpha_tacs", "features.window_samples=0", "features.window_samples: must be greater than or equal to 8"),
    ("alpha_tacs", "features.window_samples=-5", "features.window_samples"),
    ("alpha_tacs", "features.window_samples=2000000", "less than or equal to 1048576"),
    ("alpha_tacs", "features.window_samples='long'", "features.window_samples"),
    ("alpha_tacs", "features.window_samples=nan", "features.window_samples"),
    ("alpha_tacs", "features.window_samples=inf", "features.window_samples"),
    ("alpha_tacs", "features.hop_samples=0", "features.hop_samples"),
    ("alpha_tacs", "features.hop_samples=600", "features.hop_samples: 600 must be <= features.window_samples"),
    ("alpha_tacs", "features.hop_samples=true", "features.hop_samples"),
    ("alpha_tacs", "source.sfreq=nan", "source.sfreq: must be a finite number"),
    ("alpha_tacs", "source.sfreq=inf", "source.sfreq"),
    ("alpha_tacs", "source.sfreq=-500", "source.sfreq: must be greater than 0"),
    ("alpha_tacs", "source.sfreq=0", "source.sfreq"),
    ("alpha_tacs", "source.sfreq='fast'", "source.sfreq"),
    ("alpha_tacs", "source.kind='serial'", "source.kind: 'serial' is not allowed; allowed: 'synthetic', 'lsl', 'file'"),
    ("alpha_tacs", "source.n_channels=0", "source.n_channels"),
    ("alpha_tacs", "source.n_channels=1000", "source.n_channels"),
    ("alpha_tacs", "source.chunk_size=0", "source.chunk_size"),
    ("alpha_tacs", "source.seed=1.5", "source.seed"),
    ("alpha_tacs", "source.samplerate=500", "source.samplerate: unknown key"),
    ("alpha_tacs_lsl", "source.poll='spin'", "source.poll: must be 'wait' or 'busy' (got 'spin')"),
    ("alpha_tacs", "features.bands.alpha=[12.0, 8.0]", "features.bands.alpha: need 0 < low < high"),
    ("alpha_tacs", "features.bands.alpha=[8.0]", "features.bands.alpha"),
    ("alpha_tacs", "features.bands.alpha=[8.0, 'x']", "features.bands.alpha[1]"),
    ("alpha_tacs", "features.bands.alpha=[0.0, 12.0]", "features.bands.alpha"),
    ("alpha_tacs", "features.bands.gamma=[60.0, 300.0]", "features.bands.gamma: upper edge 300.0 Hz is above Nyquist"),
    ("alpha_tacs", "features.bands={}", "features.bands: at least one band"),
    ("alpha_tacs", "features.channels=[]", "features.channels"),
    ("alpha_tacs", "features.channels=['Xx9']", "features.channels: ['Xx9'] not among"),
    ("alpha_tacs", "features.channels=['O1', 'O1']", "features.channels: a channel is listed twice"),
    ("alpha_tacs", "features.method='fft'", "features.method"),
    ("alpha_tacs", "features.log10='maybe'", "features.log10"),
    ("alpha_tacs", "features.smoothing_s=-1", "features.smoothing_s"),
    ("alpha_tacs", "features.windw_samples=3", "features.windw_samples: unknown key; did you mean 'window_samples'?"),
    ("alpha_tacs", "features.ratios.x=['alpha', 'beta']", "features.ratios.x: refers to 'beta', neither a band"),
    ("alpha_tacs", "features.expressions.x='theta / (2 - 2)'", "features.expressions.x: divides by a constant zero"),
    ("alpha_tacs", "features.expressions.x='gamma + 1'", "features.expressions.x: unknown feature 'gamma'"),
    ("alpha_tacs", "features.expressions.x='x + 1'", "features.expressions.x: refers to itself through x -> x"),
    ("alpha_tacs", "features.expressions.x='open(1)'", "features.expressions.x: calls open(), which is not allowed"),
    ("alpha_tacs", "features.expressions.x='theta.real'", "features.expressions.x: 'theta.real' is not allowed"),
    ("alpha_tacs", "features.ratios.x=['theta', 'alpha_O1']", "features.ratios.x: refers to 'alpha_O1'"),
    ("alpha_tacs", "features.iaf.search_hz=[7.0, 13.0]", "features.iaf: needs [features.baseline]"),
    ("alpha_tacs", "features.iaf.bands.t=[-9.0, -7.0]", "features.iaf.bands: the lowest band starts at"),
    ("alpha_tacs", "features.aperiodic.range_hz=[2.0, 400.0]", "features.aperiodic.range_hz: reaches 400 Hz"),
    ("alpha_tacs", "features.aperiodic.corrected=['gamma']", "features.aperiodic.corrected: 'gamma' is not a band"),
    ("alpha_tacs", "features.aperiodic.range_hz=[8.0, 9.0]", "features.aperiodic.corrected: 'theta' spans [4, 8) Hz"),
    (
        "alpha_tacs",
        "features.aperiodic={range_hz = [8.0, 11.0], corrected = []}",
        "features.aperiodic.range_hz: holds 4 bins at 500 samples",
    ),
    (
        "alpha_tacs",
        "features.baseline={duration_s = 10.0, difference = ['paf_cog']}",
        "features.baseline.difference: 'paf_cog' is not a feature name",
    ),
    ("alpha_tacs", "output.publish='maybe'", "output.publish"),
    ("alpha_tacs", "output.rating_prompt_s=0", "output.rating_prompt_s: must be greater than 0"),
    ("alpha_tacs", "output.dashboard_channels='O1'", "output.dashboard_channels"),
    ("alpha_tacs", "features.quality.amplitude_uV=-1", "features.quality.amplitude_uV"),
    ("alpha_tacs", "features.paf.segment_samples=4", "features.paf.segment_samples"),
    ("alpha_tacs", "preprocess.reference='foo'", "preprocess.reference"),
    ("alpha_tacs", "preprocess.reference=[]", "preprocess.reference"),
    ("alpha_tacs", "preprocess.notch_hz=300", "preprocess.notch_hz: 300.0 Hz is not below Nyquist"),
    ("alpha_tacs", "preprocess.highpass_hz=-1", "preprocess.highpass_hz"),
    ("alpha_tacs", "preprocess.filter_order=99", "preprocess.filter_order"),
    ("alpha_tacs", "preprocess.bandpass_hz=[40.0, 1.0]", "preprocess.bandpass_hz"),
    ("alpha_tacs", "preprocess.picks=['O1', 'Nope']", "preprocess.picks"),
    ("alpha_tacs", "controller.kind='x'", "controller.kind: 'x' is not allowed"),
    ("alpha_tacs", "controller.lower=9", "controller.lower: 9.0 must be <= controller.upper"),
    ("alpha_tacs", "controller.amplitude_mA=-1", "controller.amplitude_mA: must be greater than 0"),
    ("alpha_tacs", "controller.amplitude_mA=inf", "controller.amplitude_mA: must be a finite number"),
    ("alpha_tacs", "controller.amplitude_mA=5", "controller.amplitude_mA: 5.0 mA exceeds the device limit"),
    ("alpha_tacs", "controller.feature='gamma'", "controller.feature: 'gamma' is not a feature"),
    ("alpha_tacs", "controller.frequency_Hz=500", "controller.frequency_Hz: 500.0 Hz outside the device range"),
    ("alpha_tacs", "controller.onset=0", "controller.onset"),
    ("alpha_tacs", "controller.direction='sideways'", "controller.direction"),
    ("alpha_tacs", "controller.amplitud_mA=1", "controller.amplitud_mA: unknown key; did you mean 'amplitude_mA'?"),
    ("alpha_tacs", "controller.kind.x=1", "controller.kind: is a value, not a section"),
    ("alpha_tacs", "device.profile='nope'", "device.profile: device profile 'nope' not found"),
    ("alpha_tacs", "device.profile='alpha_tacs'", "device.profile: device profile 'alpha_tacs' not found"),
    ("alpha_tacs", "device.motor_threshold_pct_mso=50", "device.motor_threshold_pct_mso: only rTMS devices"),
    ("alpha_tacs", "device.motor_threshold_pct_mso=200", "device.motor_threshold_pct_mso"),
    ("alpha_tacs", "device.profile=''", "device.profile"),
    ("alpha_tacs", "safety.max_amplitude_mA=3", "safety.max_amplitude_mA: 3.0 is looser than the device limit"),
    ("alpha_tacs", "safety.max_amplitude_mA=-1", "safety.max_amplitude_mA"),
    ("alpha_tacs", "safety.bogus=1", "safety.bogus: unknown key"),
    ("alpha_tacs", "safety.watchdog_timeout_s=nan", "safety.watchdog_timeout_s"),
    ("alpha_tacs", "safety.max_pulses_per_session=10", "safety.max_pulses_per_session: the tes profile has no"),
    ("alpha_tacs", "pipeline.name='a b'", "pipeline.name"),
    ("alpha_tacs", "output.folder=''", "output.folder"),
    ("alpha_tacs", "stimulator.x=1", "stimulator: unknown key"),
    ("alpha_tacs", "recording.streams=[{}]", "recording.streams[0]: give at least one of name, type, source_id"),
    ("alpha_tacs", "source.kind='lsl'", "source.seed: unknown key; allowed: kind, name"),
    ("alpha_tacs", "source.kind='file'", "source.seed: unknown key"),
    ("alpha_rtms_magstim", "controller.train.intensity_pct=120", "intensity 120 %MT above the cap 110 %MT"),
    ("alpha_rtms_magstim", "controller.train.pulses=0", "controller.train.pulses"),
    ("alpha_rtms_magstim", "controller.refractory_s=5", "controller.refractory_s: 5 s is shorter than the train"),
    ("alpha_rtms_magstim", "controller.intensity_pct=110", "it belongs in [controller.train]"),
    ("alpha_rtms_magstim", "controller.modality='tes'", "controller.modality: 'tes' is not allowed"),
    (
        "alpha_rtms_magstim",
        "controller.train.frequency_Hz=10",
        "controller.train: the safety layer would refuse every train: train refused: "
        "train_duration_s 1.6 disagrees with pulses / rate = 3.2 s",
    ),
    (
        "alpha_rtms_magstim",
        "controller.train.duration_s=0.001",
        "controller.train: the safety layer would refuse every train: train refused: train_duration_s 0.001 disagrees",
    ),
    ("alpha_rtms_magstim", "device.motor_threshold_pct_mso=0", "device.motor_threshold_pct_mso"),
    ("alpha_tus_sim", "controller.sonication.pnp_MPa=1.5", "mechanical index 2.12 above the limit 1.9"),
    ("alpha_tus_sim", "controller.sonication.duty_cycle=2", "controller.sonication.duty_cycle"),
    ("alpha_tus_sim", "controller.refractory_s=25", "controller.refractory_s: 25 s is shorter than the sonication"),
    ("theta_alpha_tdcs_dual", "controller.derive.lower='q25'", "controller.derive.lower"),
    ("theta_alpha_tdcs_dual", "controller.inner.kind='baseline'", "controller.inner.kind"),
    (
        "alpha_tacs",
        "controller={kind = 'rule', on_when = 'alpha <', amplitude_mA = 1.0, frequency_Hz = 10.0}",
        "controller.on_when: does not parse at column 7",
    ),
    (
        "alpha_tacs",
        "controller={kind = 'rule', on_when = 'alpha < 1 and gamma > 2', amplitude_mA = 1.0, frequency_Hz = 10.0}",
        "controller.on_when: 'gamma' is not a feature of this pipeline",
    ),
    (
        "alpha_tacs",
        "controller={kind = 'rule', on_when = 'open(1) > 2', amplitude_mA = 1.0, frequency_Hz = 10.0}",
        "controller.on_when: the call 'open(1)' is not allowed",
    ),
    (
        "alpha_tacs",
        "controller={kind = 'rule', on_when = 'alpha', amplitude_mA = 1.0, frequency_Hz = 10.0}",
        "controller.on_when: 'alpha' is a number, not a condition",
    ),
    (
        "alpha_tacs",
        "controller={kind = 'rule', on_when = 'alpha < 1', off_when = 'rating > 3', amplitude_mA = 1.0, "
        "frequency_Hz = 10.0}",
        "controller.off_when: 'rating' is not a feature of this pipeline",
    ),
    ("alpha_tacs", "ratings={stream = {}}", "ratings.stream: give at least one of name, type, source_id"),
    ("alpha_tacs", "ratings={stream = {name = 'r'}, scale = [10.0, 0.0]}", "ratings.scale: need low < high"),
    ("alpha_tacs", "ratings={stream = {name = 'r'}, channel = -1}", "ratings.channel: an index is >= 0"),
    ("alpha_tacs", "features.pain_index={model = 'missing.json'}", "features.pain_index.model: model file not found"),
    ("alpha_tacs", "controller.feature='pain_index'", "controller.feature: 'pain_index' is not a feature"),
    (
        "phase_alpha_rtms_sim",
        "controller.min_interval_s=5",
        "controller.min_interval_s: 5 s is shorter than the train (0.05 s) plus the minimum inter-train interval",
    ),
    ("phase_alpha_rtms_sim", "controller.target='valley'", "controller.target: must be 'peak', 'trough', 'rising'"),
    ("phase_alpha_rtms_sim", "controller.rhythm='beta'", "controller.rhythm: 'beta_phase' is not a feature"),
    ("phase_alpha_rtms_sim", "controller.channel='O2'", "controller.rhythm: 'alpha_phase_O2' is not a feature"),
    ("phase_alpha_rtms_sim", "controller.tolerance_deg=500", "controller.tolerance_deg"),
    ("phase_alpha_rtms_sim", "features.phase.alpha.train_s=20", "train_s: only estimator 'etp' reads it"),
    ("phase_alpha_rtms_sim", "features.phase.alpha.estimator='pll'", "features.phase.alpha.estimator"),
    ("phase_alpha_rtms_sim", "features.phase.alpha.band=[8.0, 300.0]", "features.phase.alpha.band: upper edge"),
    ("phase_alpha_rtms_sim", "features.phase.alpha.window_s=0.05", "features.phase.alpha.window_s: 0.05 s is shorter"),
    ("phase_alpha_rtms_sim", "features.phase.alpha.snr_flank_hz=9", "features.phase.alpha.snr_flank_hz"),
]

PIPELINE_TEXT = (REPO / "pipelines" / "alpha_tacs.toml").read_text()
PROFILE_TEXT = (REPO / "devices" / "sim_tacs.toml").read_text()

_head, _emergency = PROFILE_TEXT.split("[limits.emergency_ramp_rate_mA_per_s]")
SLOW_EMERGENCY = _head + "[limits.emergency_ramp_rate_mA_per_s]" + _emergency.replace("value = 2.0", "value = 0.1", 1)

#: Whole files: (pipeline text, {profile file name: text}, a word the message must hold).
FILES = [
    ("this is = not [toml", {}, "not valid TOML"),
    ("", {}, "pipeline: required section [pipeline] is missing"),
    (PIPELINE_TEXT.replace("[features]", "[featurez]"), {}, "featurez: unknown key; did you mean 'features'?"),
    (PIPELINE_TEXT.split("[controller]")[0] + "[controller]\nkind = 'threshold'\n", {}, "device: required with"),
    (PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "lab"'), {"lab.toml": "x = [1"}, "not valid TOML"),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "lab"'),
        {"lab.toml": PROFILE_TEXT.replace("[limits.emergency_ramp_rate_mA_per_s]", "[limits.emergency_ramp]")},
        "lacks limits ['emergency_ramp_rate_mA_per_s']",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "slow"'),
        {"slow.toml": SLOW_EMERGENCY},
        "an emergency ramp must be at least as fast",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "ghost"'),
        {"ghost.toml": PROFILE_TEXT.replace('adapter = "simulated"', 'adapter = "ghost_adapter"')},
        "no adapter named 'ghost_adapter' is installed",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "wrong"'),
        {"wrong.toml": PROFILE_TEXT.replace('adapter = "simulated"', 'adapter = "magstim"')},
        "'magstim' drives rtms, not tes",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "partial"'),
        {"partial.toml": PROFILE_TEXT.split("[limits.max_charge_C]")[0]},
        "lacks limits",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "nanlim"'),
        {"nanlim.toml": PROFILE_TEXT.replace("value = 2.0\n", "value = nan\n", 1)},
        "must be a finite number",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "nosrc"'),
        {"nosrc.toml": PROFILE_TEXT.replace("source = ", "sauce = ", 1)},
        "device.profile (nosrc)",
    ),
    (
        PIPELINE_TEXT.replace('profile = "sim_tacs"', 'profile = "../pipelines/p.toml"'),
        {},
        "is a pipeline file, not a device profile",
    ),
    (
        PIPELINE_TEXT.replace("hop_samples = 25", "hop_samples = 400\nwindow_samples = 1000").replace(
            "window_samples = 500", ""
        ),
        {},
        "slower than the watchdog",
    ),
    ("\x00\x01\x02binary", {}, "pipeline"),
    (PIPELINE_TEXT.replace("[pipeline]", "[pipeline]\n[pipeline]"), {}, "not valid TOML"),
]


def run_cli(capsys, args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, word: str | None) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert lines and lines[0].startswith("error: "), err
    assert all(line.startswith("  - ") for line in lines[1:]), err  # one line per further problem
    if len(lines) > 1:
        assert lines[0].endswith(":"), err
    if word is not None:
        assert word in err, (word, err)


@pytest.mark.parametrize("pipeline, override, word", OVERRIDES, ids=[o for _, o, _ in OVERRIDES])
def test_bad_override(capsys, pipeline, override, word):
    code, _, err = run_cli(capsys, ["check", pipeline, "--set", override])
    assert_one_line_error(code, err, word)


@pytest.mark.parametrize("text, profiles, word", FILES, ids=[f"file{i}" for i in range(len(FILES))])
def test_bad_pipeline_or_profile_file(capsys, tmp_path, text, profiles, word):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "devices").mkdir()
    for name, body in profiles.items():
        (tmp_path / "devices" / name).write_text(body)
    path = tmp_path / "pipelines" / "p.toml"
    path.write_text(text)
    code, _, err = run_cli(capsys, ["check", path])
    assert_one_line_error(code, err, word)


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    rec = tmp_path / "rec.xdf"
    rec.write_bytes(b"XDF:")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    plant = tmp_path / "plant.json"  # a fitted plant of a feature alpha_tacs does not compute
    plant.write_text(
        '{"format": "closedloop.plant/1", "feature": "beta", "response": "additive", "gain": 1.0, '
        '"tau_s": 2.0, "delay_s": 0.0}'
    )
    return {"rec": rec, "full": full, "folder": tmp_path, "plant": plant}


#: Command lines; ``{rec}`` is an existing (unreadable) recording, ``{full}`` a non-empty folder.
ARGS = [
    (["nope"], "No such command 'nope'"),
    (["run", "alpha_tacs", "--bogus"], "No such option: --bogus"),
    (["run"], "Missing argument"),
    (["check"], "Missing argument"),
    (["replay", "{rec}"], "Missing option '--pipeline'"),
    (["run", "alpha_tacs", "--duration", "-1"], "--duration"),
    (["run", "alpha_tacs", "--duration", "inf"], "--duration"),
    (["run", "alpha_tacs", "--duration", "nan"], "--duration"),
    (["run", "alpha_tacs", "--duration", "abc"], "--duration"),
    (["run", "alpha_tacs", "--participant", "a b"], "--participant"),
    (["run", "alpha_tacs", "--session", "x/y"], "--session"),
    (["run", "no_such_pipeline"], "file not found: no_such_pipeline"),
    (["run", "features_file"], "has no [controller] and [device]"),
    (["run", "alpha_tacs", "--set", "noequals"], "--set 'noequals': expected KEY=VALUE"),
    (["run", "alpha_tacs", "--set", "=1"], "expected KEY=VALUE"),
    (["run", "alpha_tacs", "--set", "a..b=1"], "expected KEY=VALUE"),
    (["check", "alpha_tacs", "--set", "features.channels=[unclosed"], "features.channels"),
    (["check", "{folder}"], "is a folder"),
    (["play", "--speed", "inf", "{rec}"], "--speed"),
    (["play", "--speed", "nan", "{rec}"], "--speed"),
    (["play", "--speed", "0", "{rec}"], "--speed"),
    (["play", "--speed", "-2", "{rec}"], "--speed"),
    (["play", "missing.xdf"], "missing.xdf"),
    (["play", "{rec}", "--wait-consumer", "inf"], "--wait-consumer"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--grid", "controller.kind.x=1"], "controller.kind: is a value"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--grid", "controller.lower"], "expected KEY=VALUE"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--grid", "controller.lower=9"], "controller.lower: 9.0 must be"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--grid", "controller.lower=1", "-g", "controller.lower=2"], "twice"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--band", "1"], "--band '1': expected LOW,HIGH"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--band", "x,y"], "--band"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--band", "2,1"], "need finite LOW < HIGH"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--scheduler", "nonsense"], "expected tcp://HOST:PORT"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--workers", "0"], "--workers"),
    (["sweep", "missing.xdf", "-p", "alpha_tacs"], "missing.xdf"),
    (["sweep", "{rec}", "-p", "features_file"], "has no [controller] and [device]"),
    (["replay", "missing.edf", "-p", "alpha_tacs"], "recording not found: missing.edf"),
    (["replay", "-p", "alpha_tacs"], "give a recording FILE"),
    (["features", "{rec}", "-p", "nope"], "file not found: nope"),
    (["features", "-p", "features_file"], "give a recording FILE"),
    (["init", "{full}"], "is not empty"),
    (["devices", "nope"], "device profile 'nope' not found"),
    (["synth", "--channels", "0"], "--channels"),
    (["synth", "--rate", "inf"], "--rate"),
    (["synth", "--rate", "0"], "--rate"),
    (["synth", "--duration", "nan"], "--duration"),
    (["repair", "missing.xdf"], "missing.xdf"),
    (["check", "alpha_tacs", "--set", "controller.lower=1", "--set"], "--set"),
    (["run", "alpha_tacs", "--study", "missing.toml", "--participant", "01"], "study file not found: missing.toml"),
    (["sessions", "--study", "missing.toml"], "study file not found: missing.toml"),
    (["sessions", "--participant", "a b"], "--participant"),
    (["report"], "Missing option '--participant'"),
    (["report", "--participant", "01", "--study", "missing.toml"], "study file not found: missing.toml"),
    (["bids", "{folder}", "--root", "{folder}/bids"], "no session.xdf"),
    (["bids", "{folder}", "--root", "{folder}/bids", "--format", "FIF"], "--format 'FIF': allowed BrainVision, EDF"),
    (["bids", "{folder}", "--root", "{folder}/bids", "--task", "a-b"], "--task"),
    (["bids", "{folder}"], "Missing option '--root'"),
    (["run", "alpha_tacs", "--dashboard", "--port", "70000"], "--port"),
    (["run", "alpha_tacs", "--dashboard-host", " "], "--dashboard-host: give an address"),
    (["view", "{folder}", "--no-browser"], "no session.xdf in this folder"),
    (["view", "missing_session", "--no-browser"], "missing_session: no such session folder or file"),
    (["view", "{rec}", "--no-browser"], "rec.xdf"),
    (["view", "{folder}", "--port", "-1"], "--port"),
    (["calibrate", "{rec}", "-p", "alpha_tacs"], "--target rating needs [ratings] in the pipeline"),
    (["calibrate", "{rec}", "-p", "alpha_tacs", "--rows", "x"], "--rows 'x': allowed: ratings, frames"),
    (["calibrate", "{rec}", "-p", "alpha_tacs", "--cv", "shuffle"], "--cv 'shuffle': allowed: blocked, forward"),
    (["calibrate", "{rec}", "-p", "alpha_tacs", "--model", "svm"], "--model must be 'ridge' or 'logistic'"),
    (["calibrate", "{rec}", "-p", "alpha_tacs", "--lag", "nan"], "--lag"),
    (["calibrate", "{rec}", "-p", "alpha_tacs", "--folds", "1"], "--folds"),
    (["calibrate", "missing.xdf", "-p", "alpha_tacs"], "missing.xdf"),
    (["calibrate", "{rec}"], "Missing option '--pipeline'"),
    (["identify", "{rec}", "--response", "x"], "--response 'x': allowed: additive, amplitude"),
    (["identify", "{rec}"], "has no closedloop features/commands streams"),
    (["identify", "{rec}", "--max-delay", "inf"], "--max-delay"),
    (["identify", "missing.xdf"], "missing.xdf"),
    (["rate", "--min", "5", "--max", "1"], "--min 5 must be below --max 1"),
    (["rate", "--max", "nan"], "--max"),
    (["replay", "{rec}", "-p", "alpha_tacs", "--plant", "missing.json"], "--plant: plant file not found"),
    (["replay", "{rec}", "-p", "alpha_tacs", "--plant", "{rec}"], "--plant: plant file"),
    (["replay", "{rec}", "-p", "alpha_tacs", "--plant", "{plant}"], "it models 'beta', not a feature"),
    (["sweep", "{rec}", "-p", "alpha_tacs", "--plant", "{plant}"], "it models 'beta', not a feature"),
]


@pytest.mark.parametrize("args, word", ARGS, ids=[" ".join(a) for a, _ in ARGS])
def test_bad_arguments(capsys, files, args, word):
    argv = [a.format(**files) for a in args]
    code, _, err = run_cli(capsys, argv)
    assert_one_line_error(code, err, word)


def test_the_corpus_holds_over_a_hundred_bad_inputs():
    assert len(OVERRIDES) + len(FILES) + len(ARGS) >= 100


@pytest.mark.integration
@pytest.mark.parametrize(
    "args",
    [
        ["check", "alpha_tacs", "--set", "features.window_samples=1e30"],
        ["play", "--speed", "inf", str(REPO / "pipelines" / "alpha_tacs.toml")],
        ["nope"],
        ["check", "missing.toml"],
    ],
)
def test_bad_input_through_the_real_command(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "closedloop", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert_one_line_error(r.returncode, r.stderr, None)
