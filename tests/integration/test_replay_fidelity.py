"""Live → offline fidelity: a recorded live session replays to the identical frames and commands.

The live session runs over real LSL on this machine: the synthetic source is
published by :class:`SynthPublisher`, read by :class:`LSLSource`, processed by
:class:`Pipeline` and recorded by :class:`SessionRecording`, wired exactly as
the runtime wires them (``run_live_loop`` below). A second test does the same
through :class:`closedloop.live.runtime.LiveSession` once the runtime records.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.offline.replay import replay  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {"controller.lower": 1.45, "controller.upper": 1.6, "controller.onset": 2, "controller.blanking_s": 0.5}


def fingerprint(steps) -> str:
    """sha256 over every frame (time, values, flags, index) and allowed command (on, amplitude, frequency)."""
    h = hashlib.sha256()
    for s in steps:
        f, a = s.frame, s.allowed
        h.update(struct.pack("<dqq", f.time, int(f.flags), f.index))
        h.update(np.ascontiguousarray(f.values, dtype="<f8").tobytes())
        h.update(struct.pack("<?dd", bool(a.on), a.amplitude_mA, a.frequency_Hz))
    return h.hexdigest()


def run_live_loop(resolved, seconds: float, out_dir: Path, name: str | None = None, forever: bool = False):
    """A live session as the runtime runs it: synthetic LSL source → pipeline → adapter, all recorded.

    Returns the steps seen live, the recording, the marker inlets and the
    (start, end) LSL times of the publisher.
    """
    import pylsl

    from closedloop.adapters import build_adapter
    from closedloop.pipeline import Pipeline
    from closedloop.recording import SessionRecording
    from closedloop.recording.inlets import StreamInlets
    from closedloop.sources import LSLSource
    from closedloop.synthetic.eeg import PlantModel, SyntheticEEG
    from closedloop.synthetic.outlet import SynthPublisher

    src = resolved.config.source
    clock = pylsl.local_clock
    adapter = build_adapter(resolved.profile)
    gen = SyntheticEEG(
        n_channels=src.n_channels,
        sfreq=src.sfreq,
        seed=src.seed,
        alpha_uV=src.alpha_uV,
        theta_uV=src.theta_uV,
        blink_rate_per_min=120.0,
        plant=PlantModel(gain_per_mA=src.plant_gain_per_mA, tau_s=src.plant_tau_s),
    )
    name = name or f"cltest-fidelity-{uuid.uuid4().hex[:8]}"
    pub = SynthPublisher(
        gen, name=name, source_id=name, chunk_size=src.chunk_size, stim_amplitude=lambda: adapter.output_mA(clock())
    )
    pub.start()
    source = LSLSource(
        name=name,
        type="EEG",
        source_id=name,
        sfreq=src.sfreq,
        ch_names=gen.ch_names,
        n_channels=src.n_channels,
        resolve_timeout_s=5.0,
    )
    steps_seen = []
    try:
        source.open()
        pipeline = Pipeline(resolved, source.ch_names)
        pipeline.warmup()
        # the runtime's wiring: one line for the recording, one for the marker streams
        rec = SessionRecording.for_source(out_dir, resolved, source, pipeline)
        inlets = StreamInlets(rec, [{"name": pub.marker_name, "source_id": pub.marker_source_id}]).start()
        adapter.connect()
        source.flush()
        t_first = None
        print("ready", flush=True)
        while True:
            chunk = source.pull(timeout=0.02)
            now = clock()
            if chunk is not None:
                t_first = now if t_first is None else t_first
                rec.on_chunk(chunk.data, source.raw_timestamps)
                steps = pipeline.process(chunk)
                if steps:
                    rec.on_steps(steps)
                    steps_seen.extend(steps)
                    cmd = steps[-1].allowed
                    adapter.apply(cmd, clock())
                    issued = clock()
                    rec.on_applied(cmd, issued, issued - source.local_time(steps[-1].frame.time))
            if rec.error is not None:
                break
            if not forever and t_first is not None and now - t_first >= seconds:
                break
        while pipeline.safety.amplitude_mA > 0:  # ramp down, recorded like the runtime does
            cmd = pipeline.safety.ramp_down(clock(), "session end")
            adapter.apply(cmd, clock())
            rec.on_applied(cmd, clock(), 0.0)
            time.sleep(0.02)
        inlets.stop()
        span = (pub.start_time, clock())
        rec.close({"pipeline": resolved.config.pipeline.name, "frames": len(steps_seen)})
    finally:
        adapter.stop()
        source.close()
        pub.stop()
    return steps_seen, rec, inlets, span


@pytest.mark.lsl
def test_replay_of_a_recorded_live_session_reproduces_it_bit_for_bit(tmp_path):
    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", OVERRIDES)
    live, rec, inlets, (t_start, t_end) = run_live_loop(resolved, 4.0, tmp_path)
    assert rec.error is None and len(live) > 40
    assert any(s.allowed.amplitude_mA > 0 for s in live)  # the loop actually stimulated
    result = replay(rec.path, resolved, keep="steps")
    assert result.summary["frames"] == len(live) == len(result.steps)
    assert fingerprint(result.steps) == fingerprint(live)
    # the controller state and commands recorded live are those the replay computes
    desired = np.array([s.desired.on for s in live])
    assert np.array_equal(desired, [s.desired.on for s in result.steps])
    # blink markers came along as events, inside the session, in the pipeline's time base
    assert inlets.samples[inlets.names[0]] >= 1
    blinks = [e for e in result.events if e.label == "blink"]
    assert len(blinks) == inlets.samples[inlets.names[0]]
    # (markers sent while the session warmed up or ramped down are kept too)
    assert all(t_start <= e.time <= t_end for e in blinks)
    assert (tmp_path / "report.html").stat().st_size > 10_000


@pytest.mark.lsl
def test_live_session_recording_replays_identically(tmp_path):
    import closedloop.live.runtime as runtime

    resolved = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", OVERRIDES)
    seen = []
    runtime.LiveSession(resolved, 4.0, tmp_path, show_status=False, on_step=seen.append).run()
    assert (tmp_path / "session.xdf").exists() and (tmp_path / "report.html").exists()
    result = replay(tmp_path / "session.xdf", resolved, keep="steps")
    assert len(seen) > 40 and fingerprint(result.steps) == fingerprint(seen)
