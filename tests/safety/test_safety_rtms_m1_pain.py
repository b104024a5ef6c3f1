"""The 10-Hz M1 protocol for neuropathic pain: refused as shipped, and exact on the device once a cell exists.

``pipelines/unverified/rtms_m1_pain_10hz.toml`` asks for 40 trains of 50
pulses at 10 Hz and 90 %MT with 25-s inter-train intervals. No shipped
profile has a verified 10-Hz cell, so the pipeline check refuses it and says
why. With a profile that carries a 10-Hz cell (a test fixture standing in
for a cell a lab has verified), the same pipeline runs through its own
controller and safety layer into the simulated rTMS device, and what the
device delivered is checked pulse by pulse: trains, pulses, rates,
intensities, inter-train intervals, and never a train beyond the cell.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tomli_w
from safety_helpers import at

from closedloop.adapters import LimitViolation, build_adapter
from closedloop.config import PipelineError, load_pipeline
from closedloop.config.profile import load_profile
from closedloop.control import build_controller
from closedloop.safety import build_safety_layer
from closedloop.session.clocks import ManualClock
from closedloop.types import Command, Frame, Quality

PIPELINE = "pipelines/unverified/rtms_m1_pain_10hz.toml"
FIXTURE = "TEST FIXTURE standing in for a cell a lab has verified; not a safety limit"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_pain_protocol_is_refused_until_a_10hz_cell_is_verified(repo):
    with pytest.raises(PipelineError) as e:
        load_pipeline(repo / PIPELINE)
    assert any(
        "no verified safe train duration for 10 Hz at 90 %MT (verified: 20 Hz ≤110 %MT ≤1.6 s)" in p
        for p in e.value.problems
    ), e.value.problems


def with_a_10hz_cell(repo, tmp_path, overrides=None):
    """The pipeline beside a copy of sim_rtms with a 10-Hz cell (5 s up to 100 %MT) and a 2,000-pulse cap."""
    raw = load_profile(repo / "devices" / "sim_rtms.toml").model_dump(exclude={"path", "adapter_options"})
    for name, value in {
        "train_max_s_10Hz_100pctMT": 5.0,
        "max_pulses_per_session": 2000,
        "max_pulses_per_train": 50,  # the adapters' re-check of the cell
        "max_train_duration_s": 5.0,
    }.items():
        raw["limits"][name] = {"value": value, "source": FIXTURE}
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "sim_rtms.toml").write_bytes(tomli_w.dumps(raw).encode())
    (tmp_path / "pipelines").mkdir()
    shutil.copy(repo / PIPELINE, tmp_path / "pipelines" / "pain.toml")
    return load_pipeline(tmp_path / "pipelines" / "pain.toml", overrides)


def run_protocol(resolved, seconds: float, hop: float = 0.05, t0: float = 2.0):
    """Frames every ``hop`` s through the pipeline's controller and safety layer into the simulated device."""
    clock = Clock()
    device = build_adapter(resolved.profile, clock=clock)
    device.connect()  # arms; the stimulator is ready 0.5 s later
    controller = build_controller(resolved.config.controller)
    layer = build_safety_layer(resolved, ManualClock())
    for i in range(int(seconds / hop)):
        clock.t = t = t0 + i * hop
        out = at(layer, t).step(controller.update(Frame(t, np.array([2.0]), ("alpha",), Quality.OK, i)))
        device.apply(out, t)  # a LimitViolation here = the device refused what the layer allowed
    return layer, device, clock


def test_with_a_10hz_cell_the_device_delivers_the_protocol_exactly(repo, tmp_path):
    resolved = with_a_10hz_cell(repo, tmp_path)
    layer, device, clock = run_protocol(resolved, seconds=1260.0)
    trains = device.trains  # (start, intensity %MT, rate Hz, pulses) as the device fired them
    assert len(trains) == 40
    assert all(i == 90.0 and f == 10.0 and n == 50 for _t, i, f, n in trains)
    assert all(n / f <= 5.0 for _t, _i, f, n in trains)  # never longer than the cell
    starts = np.array([t for t, *_ in trains])
    itis = starts[1:] - (starts[:-1] + 5.0)  # end of one train to the start of the next
    assert np.all(itis >= 25.0 - 1e-9) and np.all(itis <= 25.0 + 0.05 + 1e-9)  # one frame of jitter at most
    assert device.pulses_delivered(clock.t) == 2000 == layer.dose["pulses"]
    assert layer.dose["trains"] == 40.0 and device.refused == 0
    assert starts[-1] + 5.0 - starts[0] == pytest.approx(39 * 30.0 + 5.0, abs=40 * 0.05)  # 20 min


def test_a_train_beyond_the_cell_never_reaches_the_device(repo, tmp_path):
    # 55 pulses = 5.5 s > the 5-s cell: the pipeline check refuses it ...
    with pytest.raises(PipelineError) as e:
        with_a_10hz_cell(repo, tmp_path, {"controller.train.pulses": 55, "controller.train.duration_s": 5.5})
    assert any("5.5 s at 10 Hz exceeds the verified 5 s" in p for p in e.value.problems), e.value.problems
    # ... above the cell's intensity, too ...
    with pytest.raises(PipelineError) as e:
        load_pipeline(tmp_path / "pipelines" / "pain.toml", {"controller.train.intensity_pct": 105.0})
    assert any("no verified safe train duration for 10 Hz at 105 %MT" in p for p in e.value.problems)
    # ... and the device refuses it on its own (defence in depth), whatever sent it
    resolved = load_pipeline(tmp_path / "pipelines" / "pain.toml")
    device = build_adapter(resolved.profile, clock=Clock())
    device.connect()
    device.clock.t = 1.0
    long = Command(0.0, 10.0, True, 1.0, {"intensity_pct": 90.0, "pulses": 55.0, "train_duration_s": 5.5}, fire=True)
    with pytest.raises(LimitViolation, match="exceeds"):
        device.apply(long, 1.0)
    assert device.trains == []
