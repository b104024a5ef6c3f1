"""The session driver hands every frame's command to the adapter, the recording and the published outputs alike."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from closedloop.adapters.simulated import simulated_adapter
from closedloop.config import load_pipeline
from closedloop.pipeline import Pipeline
from closedloop.session.clocks import SampleClock
from closedloop.session.driver import SessionDriver
from closedloop.synthetic.eeg import SyntheticEEG
from closedloop.types import Chunk


class RecordingSpy:
    """Keeps what the driver hands a session recording (chunks, steps, applied rows)."""

    def __init__(self) -> None:
        self.applied: list[np.ndarray] = []
        self.issue_times: list[np.ndarray] = []
        self.samples = 0

    def on_chunk(self, data, stamps) -> None:
        self.samples += len(stamps)

    def on_steps(self, steps) -> None:
        pass

    def on_applied_rows(self, rows, issue_times, commands) -> None:
        self.applied.append(rows.copy())
        self.issue_times.append(issue_times.copy())


@pytest.mark.parametrize("recorded", [False, True])
def test_every_applied_command_reaches_the_published_outputs(recorded):
    # alpha always below the lower threshold: stimulation ramps up, so commands change from frame to frame
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", {"controller.lower": 5.0, "controller.upper": 6.0})
    cfg = resolved.config
    gen = SyntheticEEG(n_channels=32, sfreq=cfg.sfreq, seed=3)
    clock = SampleClock(cfg.sfreq, cfg.features.window_samples, cfg.features.hop_samples)
    pipe = Pipeline(resolved, gen.ch_names, clock=clock)
    device = simulated_adapter(resolved.profile, clock=clock)
    spy = RecordingSpy() if recorded else None
    driver = SessionDriver(pipe, device, clock, lambda t: t, recording=spy)
    published: list[tuple[float, float, float]] = []
    driver.on_applied = lambda command, issued, latency: published.append((command.amplitude_mA, issued, latency))
    device.connect()
    device.arm()
    allowed = []
    n = 37  # not a multiple of the hop: chunks carry 0, 1 or 2 frames
    for j in range(int(20 * cfg.sfreq) // n):
        data = gen.generate(n).astype(float)
        stamps = (j * n + np.arange(n)) / cfg.sfreq
        allowed += [s.allowed.amplitude_mA for s in driver.feed(Chunk(data, stamps), data, stamps)]
    assert driver.stats.commands_applied == len(allowed) == len(published) > 300
    amps = np.array([a for a, _, _ in published])
    np.testing.assert_array_equal(amps, allowed)
    assert amps.max() > 0.5  # stimulation was on: the commands carried something
    assert np.all(np.array([lat for _, _, lat in published]) >= 0)
    if recorded:
        rows = np.concatenate(spy.applied)
        np.testing.assert_array_equal(rows[:, 0], amps)  # the recording and the outputs saw the same commands
        np.testing.assert_array_equal(np.concatenate(spy.issue_times), [t for _, t, _ in published])
        assert spy.samples == (int(20 * cfg.sfreq) // n) * n
