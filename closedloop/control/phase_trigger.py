"""Phase-locked stimulation: fire an rTMS train (a single pulse: a train of one) or a TUS sonication on a phase.

Each frame carries the rhythm's phase, amplitude and frequency at its newest
sample (:mod:`closedloop.features.phase`). The pulse cannot come at that
instant: the sample took time to arrive (transport), the loop took time to
compute the frame, and the adapter takes time to produce the stimulus. The
controller therefore predicts the phase at the moment the pulse is expected,
``phase + 2π · freq · delay``, and fires on the frame whose prediction lands
on the target: when the target lies within half the phase advance between
two chances to fire (so the error of that grid averages out), or, when the
estimate jumped past the target since the previous frame, if it is past by
at most ``tolerance_deg``. The chances to fire are not the frames: the
frames of one chunk are computed together, so they all predict for the same
moment; the next chance comes with the next chunk. The controller tracks the
interval between distinct predicted pulse times (an average over chunks;
offline it is the frame hop).

The delay is a :class:`PulseDelay`: offline it is the configured
``delay_s``; live (:meth:`PhaseTriggerController.use_live_timing`) it is
measured for each frame — the local clock now minus the frame's newest
sample (transport and processing so far), plus the adapter's measured output
latency, plus ``delay_s`` (what no software can see, e.g. the stimulator's
trigger-to-pulse time). The delay used is part of the recorded controller
state, so a replay (:meth:`use_recorded_inputs`) takes the same decisions.

A pulse also needs a present rhythm (amplitude ``>= min_amplitude_uV`` and,
if set, SNR ``>= min_snr_db``), a usable frame, a delay within
``max_horizon_s``, ``min_interval_s`` since the previous pulse onset and
``refractory_s`` since the end of the previous train or sonication (both on
predicted pulse times), and the ``max_count`` cap. Every fire still passes the
safety layer (train table, inter-train interval, pulse cap; TUS limits).

Each fire carries, besides the train or sonication, annotations the safety
layer passes through to the applied command (:data:`closedloop.types.NOTE_PREFIX`)
and the recording keeps (``closedloop-applied-extra``): the target, the
phase predicted at the pulse, the phase at the frame, the delay, amplitude,
frequency and expected pulse time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from closedloop.config.controllers import RTMSPhaseTriggerConfig, TUSPhaseTriggerConfig
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame

__all__ = ["FixedDelay", "LiveDelay", "PhaseTriggerController", "PulseDelay", "RecordedDelay"]

_TWO_PI = 2.0 * math.pi


def _wrap(a: float) -> float:
    """Wrap an angle (rad) to [-π, π)."""
    return (a + math.pi) % _TWO_PI - math.pi


class PulseDelay(Protocol):
    """The expected time from a frame's newest sample to the stimulus it would trigger (s)."""

    def __call__(self, frame: Frame) -> float:
        """Return the delay for ``frame``."""
        ...


class FixedDelay:
    """A constant delay (offline use: the configured ``delay_s``)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = float(delay_s)

    def __call__(self, frame: Frame) -> float:
        """Return the constant."""
        return self.delay_s


class LiveDelay:
    """The delay measured now: data age at this moment, plus the adapter's output latency, plus ``fixed_s``.

    Parameters
    ----------
    clock : callable
        The local clock (the session's; the adapter issues commands on it).
    local_time : callable
        Maps a frame time (pipeline time base) to the local clock.
    output_latency : callable, optional
        The adapter's measured delay from ``apply`` to its output (s); 0 if absent.
    fixed_s : float
        What cannot be measured (the stimulator's own trigger-to-pulse time).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        local_time: Callable[[float], float],
        output_latency: Callable[[], float] | None = None,
        fixed_s: float = 0.0,
    ) -> None:
        self.clock = clock
        self.local_time = local_time
        self.output_latency = output_latency
        self.fixed_s = float(fixed_s)

    def __call__(self, frame: Frame) -> float:
        """Return the delay from ``frame``'s newest sample to the stimulus, were it fired now."""
        out = self.output_latency() if self.output_latency is not None else 0.0
        out = out if math.isfinite(out) and out > 0.0 else 0.0
        return self.clock() - self.local_time(frame.time) + out + self.fixed_s


class RecordedDelay:
    """The delays a live session recorded, by frame index (a replay); ``fallback`` beyond them."""

    def __init__(self, delays, fallback: PulseDelay) -> None:
        self.delays = np.asarray(delays, dtype=float)
        self.fallback = fallback

    def __call__(self, frame: Frame) -> float:
        """Return the delay recorded for ``frame`` (the fallback's where none was)."""
        j = frame.index
        if 0 <= j < self.delays.shape[0] and math.isfinite(self.delays[j]):
            return float(self.delays[j])
        return self.fallback(frame)


class PhaseTriggerController:
    """Fire at a target phase of a present rhythm, compensating the delay to the pulse.

    Parameters
    ----------
    config : RTMSPhaseTriggerConfig or TUSPhaseTriggerConfig
        The ``[controller]`` section.

    Attributes
    ----------
    delay : PulseDelay
        Where the delay to the pulse comes from (replaced live and in replays).
    fires : int
        Fires so far.
    """

    #: State keys that record live inputs a replay must feed back (see :meth:`use_recorded_inputs`).
    replay_inputs = ("delay_s",)

    def __init__(self, config: RTMSPhaseTriggerConfig | TUSPhaseTriggerConfig) -> None:
        self.config = config
        self.delay: PulseDelay = FixedDelay(config.delay_s)
        self.fires = 0
        self.bad_frames = 0
        self._target = math.radians(config.target_deg)
        self._tol = math.radians(config.tolerance_deg)
        self._names = tuple(config.feature_name(k) for k in ("phase", "amp", "freq", "snr"))
        self._index_of: tuple[str, ...] | None = None  # the names tuple the cached indices belong to
        self._idx: tuple[int, int, int, int] = (0, 0, 0, -1)
        self._extra = config.fire_extra()
        self._rate = float(config.rate_Hz)
        self._fire_s = float(config.fire_s)
        self._last_onset = -math.inf  # predicted pulse time of the last fire (frame time base)
        self._last_end = -math.inf  # ... and the end of its train or sonication
        self._sonicate_until = -math.inf
        self._prev_t = math.nan
        self._frame_dt = 0.0  # frame interval (s)
        self._prev_pulse = math.nan  # predicted pulse time of the previous chance to fire
        self._gap = math.nan  # average interval between chances to fire (s)
        self._prev_d = math.nan
        self._delay_s = math.nan
        self._predicted = math.nan
        self._gate = 0.0

    # -- timing ---------------------------------------------------------------------
    def use_live_timing(self, clock: Callable[[], float], local_time: Callable[[float], float], adapter=None) -> None:
        """Measure the delay per frame from now on (a live session): see :class:`LiveDelay`."""
        latency = (lambda: float(getattr(adapter, "output_latency_s", 0.0))) if adapter is not None else None
        self.delay = LiveDelay(clock, local_time, latency, self.config.delay_s)

    def use_recorded_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Replay: take each frame's delay from a recording's ``delay_s`` state (the configured one beyond)."""
        if "delay_s" in inputs:
            self.delay = RecordedDelay(inputs["delay_s"], FixedDelay(self.config.delay_s))

    # -- per frame --------------------------------------------------------------------
    def _indices(self, names: tuple[str, ...]) -> tuple[int, int, int, int]:
        if names is not self._index_of:
            try:
                i_phase, i_amp, i_freq = (names.index(n) for n in self._names[:3])
            except ValueError:
                raise KeyError(f"the frame lacks {list(self._names[:3])}; it has {list(names)}") from None
            snr = names.index(self._names[3]) if self.config.min_snr_db is not None else -1
            self._idx = (i_phase, i_amp, i_freq, snr)
            self._index_of = names
        return self._idx

    def _next_chance(self, t: float, pulse: float) -> None:
        """Track the interval between chances to fire: distinct predicted pulse times, at least half a frame apart."""
        dt = t - self._prev_t
        if dt > 0.0:
            self._frame_dt = dt
        self._prev_t = t
        step = pulse - self._prev_pulse
        floor = 0.5 * max(self._frame_dt, self._gap if math.isfinite(self._gap) else 0.0)
        if not (0.0 < step < 1.0):  # the first frame, or after a stall: start over from here
            self._prev_pulse = pulse
        elif step > floor:  # a new chance (the frames of one chunk all predict for about the same moment)
            self._gap = step if not math.isfinite(self._gap) else self._gap + 0.1 * (step - self._gap)
            self._prev_pulse = pulse

    def update(self, frame: Frame) -> Command:
        """Return the command this frame calls for (a fire when the predicted pulse phase hits the target)."""
        c = self.config
        t = frame.time
        i_ph, i_amp, i_f, i_snr = self._indices(frame.names)
        v = frame.values
        phase, amp, freq = float(v[i_ph]), float(v[i_amp]), float(v[i_f])
        delay = float(self.delay(frame))
        self._delay_s = delay
        fire = False
        if not (usable(frame, phase) and math.isfinite(amp) and math.isfinite(freq) and freq > 0.0):
            self.bad_frames += 1
            self._prev_d = math.nan
            self._predicted = math.nan
            self._gate = 0.0
            if c.on_bad_frame == "ramp_down":
                self._sonicate_until = -math.inf
        else:
            predicted = phase + _TWO_PI * freq * delay
            self._predicted = predicted
            d = _wrap(self._target - predicted)  # > 0: the target is still ahead of the predicted phase
            pulse = t + delay
            self._next_chance(t, pulse)
            half = math.pi * freq * self._gap if math.isfinite(self._gap) else 0.0
            hit = -half <= d < half or (self._prev_d > 0.0 and -self._tol <= d < 0.0)
            snr_ok = c.min_snr_db is None or float(v[i_snr]) >= c.min_snr_db
            gate = amp >= c.min_amplitude_uV and snr_ok
            self._gate = 1.0 if gate else 0.0
            capped = c.max_count is not None and self.fires >= c.max_count
            spaced = pulse - self._last_onset >= c.min_interval_s and pulse - self._last_end >= c.refractory_s
            if hit and gate and spaced and delay <= c.max_horizon_s and not capped:
                fire = True
                self.fires += 1
                self._last_onset = pulse
                self._last_end = pulse + self._fire_s
                if c.modality == "tus":
                    self._sonicate_until = t + self._fire_s
                d = math.nan  # a new approach to the target starts after a fire
            self._prev_d = d
        if fire:
            extra = dict(self._extra)
            extra.update(
                note_target_phase_deg=c.target_deg,
                note_predicted_phase_deg=math.degrees(_wrap(self._predicted)) % 360.0,
                note_frame_phase_deg=math.degrees(phase) % 360.0,
                note_delay_s=delay,
                note_amp_uV=amp,
                note_freq_Hz=freq,
                note_pulse_time=t + delay,
            )
            return Command(0.0, self._rate, True, t, extra, fire=True)
        if c.modality == "tus" and t < self._sonicate_until:
            return Command(0.0, self._rate, True, t, dict(self._extra))
        return Command(0.0, self._rate, False, t, dict(self._extra))

    def state(self) -> dict[str, float]:
        """Return the numbers describing the controller's state (recorded per frame; ``delay_s`` is replayed)."""
        return {
            "fires": float(self.fires),
            "delay_s": self._delay_s,
            "predicted_phase_deg": math.degrees(_wrap(self._predicted)) % 360.0
            if math.isfinite(self._predicted)
            else math.nan,
            "gate": self._gate,
            "last_pulse": self._last_onset if math.isfinite(self._last_onset) else math.nan,
        }

    def display_state(self) -> dict[str, float]:
        """Return what the operator may see."""
        return self.state()
