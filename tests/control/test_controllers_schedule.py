"""Open-loop schedule and sham: timing on the frame clock, identical blinded displays."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from safety_helpers import at, make

from closedloop.config import ScheduleConfig
from closedloop.control import ScheduleController, display_state
from closedloop.safety import TESEnvelope
from closedloop.types import Frame, Quality

DT = 0.05


def cfg(**kw):
    base = dict(amplitude_mA=1.0, frequency_Hz=10.0, start_s=2.0, on_s=20.0, off_s=10.0, ramp_s=5.0, cycles=2)
    base.update(kw)
    return ScheduleConfig(**base)


def run(config, seconds=70.0, t0=123.4):
    ctl = ScheduleController(config)
    t = t0 + np.arange(int(round(seconds / DT))) * DT
    cmds = [ctl.update(Frame(ti, np.array([1.0]), ("alpha",))) for ti in t]
    return t - t0, np.array([c.amplitude_mA for c in cmds]), np.array([c.on for c in cmds]), ctl


def expected_active(tau):
    """Trapezoid of the active arm at session time tau (start 2 s, 20 s on, 10 s off, 5-s ramps, 2 cycles)."""
    out = np.zeros_like(tau)
    for k in range(2):
        x = tau - 2.0 - 30.0 * k
        inside = (x >= 0) & (x < 20.0)
        out[inside] = np.clip(np.minimum(x[inside] / 5.0, (20.0 - x[inside]) / 5.0), 0.0, 1.0)
    return out


def test_active_arm_follows_the_block_schedule():
    t, amp, on, ctl = run(cfg())
    np.testing.assert_allclose(amp, expected_active(t), atol=1e-9)
    np.testing.assert_array_equal(on, ((t >= 2) & (t < 22)) | ((t >= 32) & (t < 52)))
    assert ctl.finished and ctl.state()["block"] == 1.0


def test_sham_ramps_at_both_ends_and_delivers_nothing_between():
    t, amp, on, _ = run(cfg(arm="sham", sham_hold_s=1.0, on_s=30.0), seconds=80.0)
    x = t - 2.0
    first = (x >= 0) & (x < 30)
    # up 5 s, hold 1 s, down 5 s at the start; the same 11 s at the block's end; nothing between
    assert np.all(amp[first & (x >= 11.0) & (x <= 19.0)] == 0.0)
    for when, level in ((2.5, 0.5), (5.5, 1.0), (8.5, 0.5), (21.5, 0.5), (24.5, 1.0), (27.5, 0.5)):
        assert amp[np.argmin(abs(x - when))] == pytest.approx(level)
    # the arms cannot be told apart by `on`
    _, _, on_active, _ = run(cfg(on_s=30.0), seconds=80.0)
    np.testing.assert_array_equal(on, on_active)


def test_sham_middle_is_zero_with_a_long_block():
    t, amp, _, _ = run(cfg(arm="sham", on_s=60.0, cycles=1), seconds=70.0)
    x = t - 2.0
    assert np.all(amp[(x >= 10.0) & (x < 50.0)] == 0.0) and amp.max() == pytest.approx(1.0)


def test_blinded_display_never_reveals_the_arm():
    shown = {}
    recorded = {}
    for arm in ("active", "sham"):
        ctl = ScheduleController(cfg(arm=arm, blinded=True))
        disp, rec = [], []
        for i in range(1400):
            ctl.update(Frame(i * DT, np.array([1.0]), ("alpha",)))
            disp.append(display_state(ctl))
            rec.append(ctl.state())
        shown[arm], recorded[arm] = disp, rec
    assert shown["active"] == shown["sham"]
    assert all("arm_active" not in d and "amplitude_mA" not in d for d in shown["active"])
    assert {r["arm_active"] for r in recorded["active"]} == {1.0} and {r["arm_active"] for r in recorded["sham"]} == {
        0.0
    }
    assert list(ScheduleController(cfg()).state()) == list(recorded["sham"][-1])  # stable keys


def test_schedule_passes_the_safety_layer_unchanged():
    env = TESEnvelope(2.0, 0.2, 2.0, 2400.0, 7.2, 0.0, 100.0, 0.3)
    for arm in ("active", "sham"):
        ctl = ScheduleController(cfg(arm=arm))
        safety = make(env)
        for i in range(1400):
            desired = ctl.update(Frame(i * DT, np.array([1.0]), ("alpha",)))
            allowed = at(safety, i * DT).step(desired)
            assert allowed.amplitude_mA == pytest.approx(desired.amplitude_mA, abs=1e-9)
        assert safety.clamps == 0


def test_bad_frames_can_ramp_down():
    ctl = ScheduleController(cfg(start_s=0.0, ramp_s=0.0, on_bad_frame="ramp_down", feature="alpha"))
    assert ctl.update(Frame(0.0, np.array([1.0]), ("alpha",))).amplitude_mA == 1.0
    out = ctl.update(Frame(0.05, np.array([1.0]), ("alpha",), Quality.ARTIFACT))
    assert out.amplitude_mA == 0.0 and out.on


def test_config_checks():
    with pytest.raises(ValidationError, match="ramp_s"):
        cfg(ramp_s=11.0)
    with pytest.raises(ValidationError, match="sham ramps"):
        cfg(arm="sham", sham_hold_s=11.0)
    with pytest.raises(ValidationError, match="feature"):
        cfg(on_bad_frame="ramp_down")
    assert cfg().ramp_rates_mA_per_s() == {"ramp_s": 0.2}


def test_check_output_of_blinded_arms_is_identical(tmp_path, repo):
    """Two neutral per-participant files, one per arm: ``closedloop check`` prints the same for both."""
    import shutil

    from typer.testing import CliRunner

    from closedloop.cli import app

    outputs = []
    for arm in ("open", "sham"):
        folder = tmp_path / arm
        shutil.copytree(repo / "devices", folder / "devices")
        (folder / "pipelines").mkdir()
        text = (repo / "pipelines" / f"alpha_tacs_{arm}.toml").read_text()
        text = text.replace(f'name = "alpha_tacs_{arm}"', 'name = "participant_07"')
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("#", "description")))
        (folder / "pipelines" / "session.toml").write_text(text)
        result = CliRunner().invoke(app, ["check", str(folder / "pipelines" / "session.toml")])
        assert result.exit_code == 0, result.output
        outputs.append(result.output.replace(str(folder), "<folder>"))
    assert outputs[0] == outputs[1] and "(blinded)" in outputs[0]
