"""The world as an adversarial user makes it: a lying LSL outlet, and a sampler of what the device outputs.

:class:`LyingOutlet` publishes synthetic EEG over LSL (32 channels at 500 Hz,
chunks of 5 samples) whose timestamps and values can go wrong on command:
Unix-epoch stamps, a fixed offset, a step back, a jump forward, a stop, NaN or
1e30 values. :class:`DeviceSampler` reads the device's own output
(``adapter.output_mA(t)``, or an emulator's state) on the local clock every few
milliseconds, so the tests assert what the device delivered — charge as our
own ∫|I|dt, the largest slope, when it reached zero — not what the safety
layer believes.
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

    def max_rise(self, window_s: float) -> float:
        """Return the largest rise ΔI / Δt over any ``window_s`` of the sampled output (mA/s).

        Rises are bounded by the ramp rate; falls may use the faster emergency rate.
        """
        t, a = self.arrays()
        if t.size < 2:
            return 0.0
        later = np.interp(t + window_s, t, a)
        keep = t + window_s <= t[-1]
        return float(np.max(later[keep] - a[keep]) / window_s) if keep.any() else 0.0

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
