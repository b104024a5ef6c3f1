"""Nothing is compiled once a session runs: every kernel signature the loop meets is warmed up first.

A numba compilation holds the GIL for 0.1–1 s. One that happens on the loop
thread after warm-up (a kernel called with a read-only array where warm-up used
a writable one, a new dtype, a branch reached late) stalls the loop: latency
spikes, and past 0.3 s the loop watchdog ends the session. Every shipped
pipeline on the built-in synthetic stream and a simulated device is run here
live for a few seconds with numba's compile events recorded.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from numba.core import event
from numba.core.dispatcher import Dispatcher

from closedloop.lslconfig import configure_lsl

configure_lsl()

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.session.driver import SessionDriver  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIMULATED = [
    "alpha_tacs",
    "alpha_tacs_open",
    "alpha_tacs_pi",
    "alpha_tacs_sham",
    "alpha_tus_sim",
    "pain_markers_tacs",
    "phase_alpha_rtms_sim",
    "theta_alpha_tdcs_dual",
]


class CompileLog(event.Listener):
    """Every numba compilation (or cache load) with the time it started and the thread it ran on."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []

    def on_start(self, ev) -> None:
        self.events.append((time.monotonic(), threading.current_thread().name, str(ev.data.get("dispatcher"))))

    def on_end(self, ev) -> None:
        pass


def closedloop_kernels() -> dict[str, Dispatcher]:
    """closedloop's module-level numba kernels, by qualified name."""
    found = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("closedloop") and mod is not None:
            for attr, obj in list(vars(mod).items()):
                if isinstance(obj, Dispatcher):
                    found[f"{mod_name}.{attr}"] = obj
    return found


@pytest.mark.lsl
@pytest.mark.parametrize("name", SIMULATED)
def test_a_running_session_compiles_nothing(name, tmp_path, monkeypatch):
    resolved = load_pipeline(REPO / "pipelines" / f"{name}.toml")
    assert resolved.config.source.kind == "synthetic" and resolved.profile.device.adapter.startswith("sim")
    warm: list[float] = []
    after_warmup: dict[str, int] = {}
    kernels: dict[str, Dispatcher] = {}
    original = SessionDriver.warmup

    def warmup(self) -> None:
        original(self)
        kernels.update(closedloop_kernels())
        # how many signatures each holds (compiled or loaded from numba's disk cache)
        after_warmup.update({k: len(d.overloads) for k, d in kernels.items()})
        warm.append(time.monotonic())

    monkeypatch.setattr(SessionDriver, "warmup", warmup)
    steps: list[float] = []
    at_last_step: dict[str, int] = {}

    def on_step(step) -> None:
        steps.append(time.monotonic())
        at_last_step.update({k: len(d.overloads) for k, d in kernels.items()})

    log = CompileLog()
    event.register("numba:compile", log)
    try:
        summary = LiveSession(resolved, 3.0, tmp_path, show_status=False, on_step=on_step).run()
    finally:
        event.unregister("numba:compile", log)
    assert summary["stop_reason"] == "duration reached" and len(warm) == 1 and steps
    during = [(th, what) for t, th, what in log.events if warm[0] < t < steps[-1]]
    assert during == [], f"compiled while the session ran: {during}"
    # a signature loaded from numba's disk cache does not raise a compile event, but it is new work too
    grown = {k: (after_warmup.get(k, 0), n) for k, n in at_last_step.items() if n > after_warmup.get(k, 0)}
    assert grown == {}, f"kernels met a new signature while the session ran: {grown}"
