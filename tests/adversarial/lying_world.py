"""The world as an adversarial user makes it: a lying LSL outlet, and a sampler of what the device outputs.

:class:`LyingOutlet` publishes synthetic EEG over LSL (32 channels at 500 Hz,
chunks of 5 samples) whose timestamps and values can go wrong on command:
Unix-epoch stamps, a fixed offset, a step back, a jump forward, a stop, NaN or
1e30 values. :class:`DeviceSampler` reads the device's own output
(``adapter.output_mA(t)``, or an emulator's state) on the local clock every few
milliseconds, so the tests assert what the device delivered — charge as our
own ∫|I|dt, when it reached zero — not what the safety layer believes.
:class:`DeviceInputs` records every command the simulated tACS device
receives, and when, and rebuilds its exact output from them: slopes are read
from that, since a sampler thread starved on a busy machine misses the shape
between its readings.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pylsl

from closedloop.config.sources import standard_channel_names
from closedloop.synthetic.eeg import SyntheticEEG

SFREQ = 500.0
CHUNK = 5
N_CHANNELS = 32


@dataclass
class Lie:
    """What the outlet does wrong, from when (seconds after its start), and how."""

    stamps: str = "true"  # "true", "epoch", "offset", "step", "jump"
    stamp_shift_s: float = 0.0  # for "offset", "step" (negative: back) and "jump"
    values: str = "true"  # "true", "nan", "huge"
    stop: bool = False  # stop sending altogether
    at_s: float | None = None  # when the lie starts (None: from the start)
    started: float | None = field(default=None, init=False)  # local clock when it started


class LyingOutlet:
    """Publish synthetic EEG over LSL on this machine and lie on command.

    Parameters
    ----------
    name : str
        Stream name and source_id (unique per test).
    lie : Lie
        What to do wrong; :meth:`start_lying` may start it later.
    """

    def __init__(self, name: str, lie: Lie | None = None) -> None:
        self.name = name
        self.lie = lie or Lie()
        self.gen = SyntheticEEG(n_channels=N_CHANNELS, sfreq=SFREQ, seed=3, plant=None)
        info = pylsl.StreamInfo(name, "EEG", N_CHANNELS, SFREQ, pylsl.cf_float32, name)
        chans = info.desc().append_child("channels")
        for label in standard_channel_names(N_CHANNELS):
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", "EEG")
        self.outlet = pylsl.StreamOutlet(info, CHUNK, 30)
        self.sent = 0
        self.last_push: float | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lying-outlet-{name}", daemon=True)

    def start(self) -> LyingOutlet:
        """Start publishing (paced by the local clock)."""
        self.t0 = pylsl.local_clock()
        self._thread.start()
        return self

    def start_lying(self) -> float:
        """Start the lie now; return the local time it started."""
        now = pylsl.local_clock()
        self.lie.at_s = now - self.t0
        return now

    def stop(self) -> None:
        """Stop the thread and close the outlet."""
        self._halt.set()
        self._thread.join(timeout=5.0)

    def _stamp_offset(self, now: float) -> float:
        lie = self.lie
        lying = lie.at_s is not None and now - self.t0 >= lie.at_s
        if lie.at_s is None or lying:
            if lie.started is None:
                lie.started = now
            if lie.stamps == "epoch":
                return time.time() - pylsl.local_clock()
            if lie.stamps in ("offset", "step", "jump"):
                return lie.stamp_shift_s
        return 0.0

    def _run(self) -> None:
        period = CHUNK / SFREQ
        next_t = self.t0
        buf = np.empty((CHUNK, N_CHANNELS), dtype=np.float32)
        while not self._halt.is_set():
            now = pylsl.local_clock()
            if now < next_t:
                self._halt.wait(next_t - now)
                continue
            lie = self.lie
            lying = lie.at_s is None or now - self.t0 >= lie.at_s
            if lying and lie.stop:
                self._halt.wait(0.01)
                continue
            buf[:] = self.gen.generate(CHUNK)
            if lying and lie.values == "nan":
                buf[:] = np.nan
            elif lying and lie.values == "huge":
                buf[:] = 1e30
            shift = self._stamp_offset(now)
            first = self.t0 + self.sent / SFREQ + shift
            stamps = first + np.arange(CHUNK) / SFREQ
            self.outlet.push_chunk(buf, stamps.tolist())
            self.sent += CHUNK
            self.last_push = now
            next_t += period


class DeviceSampler:
    """Sample ``read(t)`` — the device's output in mA — on the local clock every ``period_s``."""

    def __init__(self, read: Callable[[float], float], period_s: float = 0.005) -> None:
        self.read = read
        self.period_s = period_s
        self.t: list[float] = []
        self.a: list[float] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-sampler", daemon=True)

    def __enter__(self) -> DeviceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._halt.is_set():
            now = pylsl.local_clock()
            self.t.append(now)
            self.a.append(float(self.read(now)))
            self._halt.wait(self.period_s)

    def wait_until(self, condition: Callable[[float], bool], timeout: float) -> float:
        """Wait until the output satisfies ``condition``; return when it did (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            n = len(self.a)
            for i in range(seen, n):
                if condition(self.a[i]):
                    return self.t[i]
            seen = n
            time.sleep(0.01)
        raise AssertionError(f"the device output never satisfied the condition within {timeout} s")

    # -- what the device did --------------------------------------------------
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the samples so far as (times, mA) arrays."""
        n = min(len(self.t), len(self.a))
        return np.asarray(self.t[:n]), np.asarray(self.a[:n])

    def charge_C(self) -> float:
        """Return ∫|I|dt of the sampled output (trapezoid), in coulombs."""
        t, a = self.arrays()
        return float(np.trapezoid(np.abs(a), t)) / 1000.0 if t.size > 1 else 0.0

    def zero_after(self, t0: float) -> float:
        """Return how long after ``t0`` the output reached zero and stayed there (inf if it never did)."""
        t, a = self.arrays()
        nonzero = np.nonzero((t >= t0) & (a > 0.0))[0]
        if nonzero.size == 0:
            return 0.0
        last = nonzero[-1]
        return float(t[last + 1] - t0) if last + 1 < t.size else math.inf

    def max_after(self, t0: float) -> float:
        """Return the largest output at or after ``t0``."""
        t, a = self.arrays()
        after = a[t >= t0]
        return float(after.max()) if after.size else 0.0


class DeviceInputs:
    """Record what a :class:`~closedloop.adapters.simulated.SimulatedStimulator` receives; rebuild its output.

    Wraps the adapter's ``apply``: for every command, the local time the
    device got it (``now``), the layer's time stamped on the command, the
    device's output at that moment and the target it then moves to at its own
    transition rate (``adapter.rate``). Between commands the output is
    therefore known exactly, not sampled.
    """

    def __init__(self, adapter) -> None:
        self.adapter = adapter
        self.rate = float(adapter.rate)
        self.rows: list[tuple[float, float, float, float]] = []  # (now, command time, output, target)
        self._apply = adapter.apply
        adapter.apply = self._record

    def _record(self, command, now: float) -> None:
        before = self.adapter.output_mA(now)
        self._apply(command, now)
        self.rows.append((now, float(command.time), before, float(self.adapter.status()["target_mA"])))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return (local times received, layer times, outputs then, targets) as arrays."""
        rows = np.asarray(self.rows, dtype=float).reshape(-1, 4)
        return rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]

    def _after(self, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Return the output at local times ``t`` had command ``k`` been the last one received (mA)."""
        now, _, start, target = self.arrays()
        span = target[k] - start[k]
        moved = np.minimum(self.rate * np.maximum(t - now[k], 0.0), np.abs(span))
        return start[k] + np.sign(span) * moved

    def output(self, t: np.ndarray) -> np.ndarray:
        """Return the device's output (mA) at local times ``t`` (not before the first command)."""
        now = self.arrays()[0]
        return self._after(np.clip(np.searchsorted(now, t, side="right") - 1, 0, None), t)

    def rebuild_error(self) -> float:
        """Return how far the rebuilt output, just before each command, is from what the device read then (mA).

        Zero (to rounding) when the rebuild follows the device's own model and nothing but ``apply`` moved it.
        """
        now, _, start, _ = self.arrays()
        if now.size < 2:
            return 0.0
        return float(np.max(np.abs(self._after(np.arange(now.size - 1), now[1:]) - start[1:])))

    def rises(self, window_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Return the starts of the windows where the largest rises can begin, and each window's rise (mA).

        The output is piecewise linear, with knots where a command arrives and
        where the transition to it ends; the rise over a window is largest with
        one of its ends at a knot.
        """
        now, _, start, target = self.arrays()
        knots = np.concatenate([now, now + np.abs(target - start) / self.rate])
        starts = np.unique(np.concatenate([knots, knots - window_s]))
        starts = starts[(starts >= now[0]) & (starts + window_s <= now[-1])]
        return starts, self.output(starts + window_s) - self.output(starts)

    def max_rise(self, window_s: float) -> float:
        """Return the largest rise ΔI / Δt of the output over any ``window_s`` (mA/s)."""
        _, rise = self.rises(window_s)
        return float(rise.max()) / window_s if rise.size else 0.0

    def worst_rise(self, window_s: float, ramp: float) -> tuple[float, float, float]:
        """Compare every ``window_s`` of the output's rise with what the ramp rate allows on the layer's clock.

        Over a window the output rises from a level the device had reached —
        at least the target of some command ``i`` — to at most the target of
        the last command it received by the window's end, ``m``. The layer
        lets targets rise by at most ``ramp`` × (its time of ``m`` − its time
        of ``i``). With a frame every 50 ms that span is the window plus at
        most a frame; a loop stalled for ``g`` s makes it ``g`` longer, and the
        next target is ``ramp`` × ``g`` higher (docs/safety.md).

        Returns
        -------
        tuple
            The largest ratio of a window's rise to its allowance; that
            window's rise (mA/s over the window) and its span on the layer's clock (s).
        """
        now, layer_t, _, target = self.arrays()
        starts, rise = self.rises(window_s)
        level = self.output(starts)
        worst = (0.0, 0.0, 0.0)
        for s, r, at in zip(starts, rise, level):
            if r <= 1e-12:
                continue
            j = np.searchsorted(now, s, side="right") - 1  # the last command received by the window's start
            reached = np.nonzero(target[: j + 1] <= at + 1e-12)[0]
            i = reached[-1] if reached.size else 0
            m = np.searchsorted(now, s + window_s, side="right") - 1
            span = layer_t[m] - layer_t[i]
            ratio = r / (ramp * span + 1e-9)
            if ratio > worst[0]:
                worst = (ratio, r / window_s, span)
        return worst
