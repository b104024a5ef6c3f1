"""The whole loop: offline on the generator, live over real LSL, and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import wait_for_stream

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.pipeline import Pipeline  # noqa: E402
from closedloop.synthetic.eeg import PlantModel, SyntheticEEG  # noqa: E402
from closedloop.types import Chunk  # noqa: E402

SUMMARY_KEYS = {
    "samples_in",
    "frames",
    "commands_applied",
    "safety_clamps",
    "stim_time_s",
    "latency_ms",
    "data_age_ms",
    "features",
    "stop_reason",
}


def offline_run(resolved, seconds: float, plant_gain: float):
    """Drive the pipeline with the generator in-process, feeding the applied amplitude back."""
    s = resolved.config.source
    gen = SyntheticEEG(
        n_channels=s.n_channels,
        sfreq=s.sfreq,
        seed=s.seed,
        plant=PlantModel(gain_per_mA=plant_gain, tau_s=s.plant_tau_s),
    )
    pipe = Pipeline(resolved, gen.ch_names)
    steps = []
    n = s.chunk_size
    for i in range(int(seconds * s.sfreq / n)):
        x = gen.generate(n, pipe.safety.amplitude_mA)
        steps += pipe.process(Chunk(x, (np.arange(n) + i * n) / s.sfreq))
    return pipe, steps


def test_amplitude_follows_the_alpha_feature(repo):
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml")
    c = resolved.config.controller
    pipe, steps = offline_run(resolved, 120.0, plant_gain=0.8)
    alpha = np.array([s.frame["alpha"] for s in steps])
    on = np.array([s.desired.on for s in steps])
    amp = np.array([s.allowed.amplitude_mA for s in steps])
    switch_on = np.flatnonzero(~on[:-1] & on[1:]) + 1
    switch_off = np.flatnonzero(on[:-1] & ~on[1:]) + 1
    assert len(switch_on) >= 3 and len(switch_off) >= 3
    # every switch follows `onset`/`termination` frames past the thresholds
    for i in switch_on:
        assert np.all(alpha[i - c.onset + 1 : i + 1] < c.lower)
    for i in switch_off:
        assert np.all(alpha[i - c.termination + 1 : i + 1] > c.upper)
    # the applied amplitude rises only while stimulation is wanted, and falls when it is not
    d = np.diff(amp)
    assert np.all(on[1:][d > 1e-12]) and np.all(~on[1:][d < -1e-12])
    assert amp.max() == pytest.approx(c.amplitude_mA) and amp.max() <= resolved.envelope()["max_amplitude_mA"]["value"]
    # the loop closes: with the plant, stimulation raises alpha, so it spends less time stimulating
    _, steps_open = offline_run(resolved, 120.0, plant_gain=0.0)
    duty_open = np.mean([s.desired.on for s in steps_open])
    assert on.mean() < duty_open


@pytest.mark.lsl
def test_live_session_on_embedded_synthetic_stream(repo, tmp_path):
    resolved = load_pipeline(
        repo / "pipelines" / "alpha_tacs.toml",
        {"controller.lower": 1.45, "controller.upper": 1.6, "controller.onset": 2},
    )
    seen = []
    summary = LiveSession(resolved, 6.0, tmp_path, show_status=False, on_step=seen.append).run()
    assert SUMMARY_KEYS <= set(summary)
    assert json.loads((tmp_path / "summary.json").read_text())["frames"] == summary["frames"]
    fs, hop, win = 500.0, 25, 500
    assert 5.5 * fs <= summary["samples_in"] <= 6.6 * fs
    assert summary["frames"] == (summary["samples_in"] - win) // hop + 1 == len(seen)
    assert summary["stop_reason"] == "duration reached"
    assert 0 < summary["latency_ms"]["median"] < 100 and summary["data_age_ms"]["median"] < 100
    assert set(summary["features"]) == {"theta", "alpha", "theta_alpha"}
    alpha = np.array([s.frame["alpha"] for s in seen])
    assert summary["features"]["alpha"]["mean"] == pytest.approx(alpha.mean(), rel=1e-9)
    # frames come on the sample clock: consecutive frame times are one hop apart
    np.testing.assert_allclose(np.diff([s.frame.time for s in seen]), hop / fs, atol=1e-4)
    amp = np.array([s.allowed.amplitude_mA for s in seen])
    on = np.array([s.desired.on for s in seen])
    assert np.all(on[1:][np.diff(amp) > 1e-12])


def _cli(*args, timeout=90):
    return subprocess.run([sys.executable, "-m", "closedloop", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_check_prints_envelope(repo):
    r = _cli("check", str(repo / "pipelines" / "alpha_tacs.toml"))
    assert r.returncode == 0, r.stderr
    assert "Safety envelope" in r.stdout and "max_charge_C" in r.stdout and "Bikson" in r.stdout
    assert "1.5" in r.stdout  # the pipeline's tightened amplitude limit


def test_cli_check_rejects_invalid(tmp_path, repo):
    bad = tmp_path / "bad.toml"
    bad.write_text((repo / "pipelines" / "alpha_tacs.toml").read_text().replace("hop_samples", "hop_sampels"))
    r = _cli("check", str(bad))
    assert r.returncode == 2 and "features.hop_sampels" in r.stderr


@pytest.mark.lsl
def test_cli_run_writes_summary(repo, tmp_path):
    out = tmp_path / "session"
    r = _cli("run", str(repo / "pipelines" / "alpha_tacs.toml"), "--duration", "3", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["frames"] > 0


@pytest.mark.lsl
def test_synth_process_and_lsl_pipeline_work_together(repo, tmp_path, unique_name):
    """`closedloop synth` in one process; a pipeline with an LSL source picks the right of two streams."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "closedloop",
                "synth",
                "--name",
                f"{unique_name}-{k}",
                "--channels",
                str(n),
                "--rate",
                "250",
                "--duration",
                "40",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for k, n in (("a", 19), ("b", 32))
    ]
    try:
        text = (repo / "pipelines" / "alpha_tacs_lsl.toml").read_text()
        text = (
            text.replace('name = "closedloop-synth"', f'name = "{unique_name}-b"')
            .replace("sfreq = 500.0", "sfreq = 250.0")
            .replace("window_samples = 500", "window_samples = 250")
        )
        p = tmp_path / "pipelines" / "lsl.toml"
        p.parent.mkdir()
        p.write_text(text)
        import shutil

        shutil.copytree(repo / "devices", tmp_path / "devices")
        resolved = load_pipeline(p)
        for k in ("a", "b"):
            wait_for_stream(f"{unique_name}-{k}")
        summary = LiveSession(resolved, 3.0, tmp_path / "out", show_status=False).run()
        assert summary["samples_in"] >= 2.5 * 250 and summary["frames"] > 0
        assert summary["stop_reason"] == "duration reached"
        # kill the source mid-session: the session ramps down and ends with the reason
        seen, killed = [], []

        def kill_later(step):
            seen.append(step)
            if len(seen) == 40:
                procs[1].kill()
                killed.append(time.monotonic())

        summary = LiveSession(resolved, 30.0, tmp_path / "out2", show_status=False, on_step=kill_later).run()
        assert killed and "source lost" in summary["stop_reason"]  # ended on the loss, not at its 30 s
        assert time.monotonic() - killed[0] < 15.0  # noticed, ramped down and closed (generous: a busy machine)
    finally:
        for pr in procs:
            pr.kill()
            pr.wait(5)


def test_cli_run_refuses_an_unwritable_output_folder(repo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = _cli("run", str(repo / "pipelines" / "alpha_tacs.toml"), "--duration", "2", "--out", str(blocker / "x"), "-q")
    assert r.returncode == 3 and "error" in r.stderr and str(blocker) in r.stderr.replace("\n", "")
