"""Transcranial ultrasound: MI, I_SPPA, I_SPTA, PNP/I_SPPA agreement, a thermal bound, duty cycle, time.

A controller asks for a sonication with ``on=True`` and, in ``Command.extra``,
the in-situ (derated) acoustic parameters from the calibration of the setup::

    pnp_MPa               peak negative pressure (MPa)
    center_frequency_MHz  centre frequency (MHz)
    isppa_W_per_cm2       spatial-peak pulse-average intensity (W/cm²)
    duty_cycle            fraction of time on (0-1) = burst_s × prf_Hz
    prf_Hz                pulse repetition frequency (Hz)
    burst_s               pulse (burst) length (s), repeated every 1/prf_Hz

The layer computes MI = pnp / sqrt(f_MHz) and I_SPTA = I_SPPA × duty and
refuses a sonication that breaks any limit (nothing is scaled silently):
MI, I_SPPA and I_SPTA are all bounded (FDA Track 3 asks for MI *or* I_SPPA;
both are enforced). PNP and I_SPPA must agree with the plane-wave relation
I = p² / (2 ρc) within the profile's tolerance, so that a wrong unit or a
mixed-up calibration cannot pass one limit with one number and the other
with another. A sonication is on from one call to the next; the layer ends
it early enough that neither the per-sonication nor the session's total
sonication time is exceeded. Its parameters are those of its start: a request with other
parameters ends it (start a new one after the pause).

Thermal bound: sonications are refused unless the profile carries the lab's
own figure for its setup, ``thermal_rise_C_per_J_per_cm2`` — the peak
temperature rise (anywhere: skin, skull, brain) per J/cm² of focal I_SPTA ×
sonication time, taken from the *initial* slope of a measured or simulated
heating curve. Heating under the (linear) bioheat equation is concave in
time and adds up over sonications, so ``rise × Σ I_SPTA·t`` over the whole
session bounds the peak temperature rise from above, with no credit for
cooling in the pauses. The layer keeps that bound at or below
``max_temperature_rise_C`` (docs/safety.md).

The TUS command convention (shared by the layer, the adapters and
:class:`~closedloop.adapters.simulated.SimulatedTUS`): a *sonication* is on
while the allowed command is ``on``; during it the transducer emits pulses of
``burst_s`` every ``1 / prf_Hz``. The allowed command that starts a
sonication has ``fire=True`` (every other one ``False``); the one that ends
it is ``on=False``, with ``abort=True`` when a ramp-down or a stop cut it. A
controller that wants a sonication of a given length (e.g.
:class:`~closedloop.control.trigger.TriggerController`) keeps asking for it
(``on=True``) for that long; ``fire`` in the desired command is not needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

from closedloop.safety.layer import SafetyLayer
from closedloop.safety.profile_limits import envelope_from_limits
from closedloop.types import Command

#: The parameters a TUS command must carry, in ``Command.extra``.
TUS_KEYS = ("pnp_MPa", "center_frequency_MHz", "isppa_W_per_cm2", "duty_cycle", "prf_Hz", "burst_s")


@dataclass(frozen=True, slots=True)
class TUSEnvelope:
    """Hard limits for transcranial ultrasound, with their sources.

    ``thermal_rise_C_per_J_per_cm2`` is the lab's thermal figure for the setup
    (see the module docstring); without it (``None``) every sonication is refused.
    """

    max_mechanical_index: float
    max_isppa_W_per_cm2: float
    max_ispta_mW_per_cm2: float
    plane_wave_impedance_MRayl: float
    max_isppa_pnp_mismatch: float
    max_temperature_rise_C: float
    max_duty_cycle: float
    max_burst_s: float
    min_center_frequency_MHz: float
    max_center_frequency_MHz: float
    max_sonication_s: float
    min_pause_s: float
    max_total_sonication_s: float
    max_session_duration_s: float
    watchdog_timeout_s: float
    thermal_rise_C_per_J_per_cm2: float | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.watchdog_timeout_s > 0:
            raise ValueError("watchdog_timeout_s must be > 0")
        if not 0 < self.max_duty_cycle <= 1:
            raise ValueError("max_duty_cycle must be in (0, 1]")
        if not self.plane_wave_impedance_MRayl > 0:
            raise ValueError("plane_wave_impedance_MRayl must be > 0")
        if not 0 < self.max_isppa_pnp_mismatch < 1:
            raise ValueError("max_isppa_pnp_mismatch must be in (0, 1) (a fraction of the plane-wave I_SPPA)")
        k = self.thermal_rise_C_per_J_per_cm2
        if k is not None and not (math.isfinite(k) and k > 0):
            raise ValueError("thermal_rise_C_per_J_per_cm2 must be a positive number (or absent: no sonication)")

    @classmethod
    def from_envelope(cls, env: dict[str, dict[str, object]]) -> TUSEnvelope:
        """Build from :meth:`closedloop.config.ResolvedPipeline.envelope`."""
        optional = ("thermal_rise_C_per_J_per_cm2",)
        values, sources = envelope_from_limits(cls, env, skip=optional)
        values.update({n: float(cast(float, env[n]["value"])) for n in optional if n in env})
        return cls(**values, sources=sources)


def mechanical_index(pnp_MPa: float, center_frequency_MHz: float) -> float:
    """Return MI = p_neg [MPa] / sqrt(f [MHz])."""
    return pnp_MPa / math.sqrt(center_frequency_MHz)


def ispta_mW_per_cm2(isppa_W_per_cm2: float, duty_cycle: float) -> float:
    """Return I_SPTA = I_SPPA × duty cycle, in mW/cm²."""
    return isppa_W_per_cm2 * duty_cycle * 1000.0


def plane_wave_isppa_W_per_cm2(pnp_MPa: float, impedance_MRayl: float) -> float:
    """Return the pulse-average intensity of a plane wave of amplitude ``pnp_MPa``: p² / (2 ρc), in W/cm².

    (p·10⁶ Pa)² / (2 · Z·10⁶ Rayl) W/m² = 50 p² / Z W/cm²; e.g. 0.9 MPa in
    1.5 MRayl carries 27 W/cm².
    """
    return 50.0 * pnp_MPa * pnp_MPa / impedance_MRayl


class TUSSafetyLayer(SafetyLayer):
    """Allow or refuse sonications by a :class:`TUSEnvelope`; stop them in time."""

    modality = "tus"

    def __init__(self, envelope: TUSEnvelope, clock, on_event=None, auto_arm: bool = True) -> None:
        super().__init__(envelope, clock, on_event, auto_arm)
        self._on = False
        self._cut = False  # the last change was a ramp or stop (the output says abort)
        self._params: dict[str, float] = {}
        self.sonication_s = 0.0  # length of the current (or last) sonication
        self.off_s = math.inf  # time since the last sonication ended
        self.energy_J_per_cm2 = 0.0  # Σ focal I_SPTA × sonication time (the thermal bound's input)

    @property
    def active(self) -> bool:
        """Whether anything is being applied right now."""
        return self._on

    @property
    def thermal_rise_bound_C(self) -> float:
        """Upper bound of the peak temperature rise so far (°C); NaN without a thermal figure."""
        k = self.env.thermal_rise_C_per_J_per_cm2
        return math.nan if k is None else k * self.energy_J_per_cm2

    def _elapse(self, dt: float) -> None:
        if self._on:
            self.sonication_s += dt
            self.account.stim_time_s += dt
            self.energy_J_per_cm2 += self._params["isppa_W_per_cm2"] * self._params["duty_cycle"] * dt
        else:
            self.off_s += dt

    def _output(self, t: float, was_on: bool) -> Command:
        if not self._on:
            extra = {k: 0.0 for k in TUS_KEYS}
            return Command(0.0, 0.0, False, t, extra, abort=was_on and self._cut)
        p = self._params
        extra = dict(p)
        extra["mechanical_index"] = mechanical_index(p["pnp_MPa"], p["center_frequency_MHz"])
        extra["ispta_mW_per_cm2"] = ispta_mW_per_cm2(p["isppa_W_per_cm2"], p["duty_cycle"])
        return Command(0.0, p["prf_Hz"], True, t, extra, fire=not was_on)

    def _set(self, on: bool, params: dict[str, float] | None = None) -> None:
        if on and not self._on:
            self.account.sonications += 1
            self.sonication_s = 0.0
        if self._on and not on:
            self.off_s = 0.0
        self._on = on
        self._params = params or {}

    def _step(self, desired: Command, t: float, dt: float) -> Command:
        env = self.env
        was_on, self._cut = self._on, False
        self._elapse(dt)
        if not (desired.on and self.machine.may_stimulate):
            self._set(False)
            return self._output(t, was_on)
        params, problem = self._check(desired)
        if not problem and not self._on and self.account.sonications and self.off_s < env.min_pause_s:
            problem = f"only {self.off_s:.3g} s since the last sonication; the minimum pause is {env.min_pause_s:g} s"
        h = env.watchdog_timeout_s
        if not problem and (self.sonication_s if self._on else 0.0) + h > env.max_sonication_s:
            problem = f"sonication time limit {env.max_sonication_s:g} s: sonication ended"
        if not problem and self.account.stim_time_s + h > env.max_total_sonication_s:
            problem = f"total sonication time limit {env.max_total_sonication_s:g} s reached"
            self._latch(t, problem, "dose")
        if not problem and self._elapsed(t) + h > env.max_session_duration_s:
            problem = f"session duration limit {env.max_session_duration_s:g} s: no sonication in its last {h:g} s"
        if problem:
            self._event(t, "refuse", f"sonication refused: {problem}")
            self._set(False)
        else:
            self._set(True, params)
        return self._output(t, was_on)

    def _check(self, desired: Command) -> tuple[dict[str, float], str]:
        """Return the requested parameters and why they cannot be applied (empty if they can)."""
        env = self.env
        extra = desired.extra if isinstance(desired.extra, dict) else {}
        params: dict[str, float] = {}
        for key in TUS_KEYS:
            try:
                v = float(extra[key])
            except (KeyError, TypeError, ValueError):
                return params, f"{key} missing or not a number"
            if not (math.isfinite(v) and v > 0):
                return params, f"{key} = {v!r} is not a positive number"
            params[key] = v
        if self.t is None:
            return params, "no valid time yet"
        if self._on and params != self._params:
            changed = ", ".join(k for k in TUS_KEYS if params[k] != self._params.get(k))
            return params, f"{changed} changed during a sonication (a device takes them at its start): sonication ended"
        f = params["center_frequency_MHz"]
        if not env.min_center_frequency_MHz <= f <= env.max_center_frequency_MHz:
            return params, (
                f"centre frequency {f:g} MHz outside the transducer range "
                f"[{env.min_center_frequency_MHz:g}, {env.max_center_frequency_MHz:g}] MHz"
            )
        duty = params["duty_cycle"]
        if duty > env.max_duty_cycle:
            return params, f"duty cycle {duty:g} above the limit {env.max_duty_cycle:g}"
        if params["burst_s"] > env.max_burst_s:
            return params, f"burst (pulse) length {params['burst_s']:g} s above the limit {env.max_burst_s:g} s"
        implied = params["burst_s"] * params["prf_Hz"]
        if abs(implied - duty) > 0.01 * duty:
            return params, f"duty_cycle {duty:g} disagrees with burst_s × prf_Hz = {implied:g}"
        pnp, isppa = params["pnp_MPa"], params["isppa_W_per_cm2"]
        mi = mechanical_index(pnp, f)
        if mi > env.max_mechanical_index:
            return params, f"mechanical index {mi:.3g} above the limit {env.max_mechanical_index:g}"
        if isppa > env.max_isppa_W_per_cm2:
            return params, f"I_SPPA {isppa:.4g} W/cm² above the limit {env.max_isppa_W_per_cm2:g} W/cm²"
        plane = plane_wave_isppa_W_per_cm2(pnp, env.plane_wave_impedance_MRayl)
        if abs(isppa - plane) > env.max_isppa_pnp_mismatch * plane:
            return params, (
                f"I_SPPA {isppa:.4g} W/cm² disagrees with PNP {pnp:g} MPa: a plane wave of that pressure "
                f"in {env.plane_wave_impedance_MRayl:g} MRayl carries {plane:.4g} W/cm² "
                f"(allowed ±{100 * env.max_isppa_pnp_mismatch:g} %)"
            )
        ispta = ispta_mW_per_cm2(isppa, duty)
        if ispta > env.max_ispta_mW_per_cm2:
            return params, f"I_SPTA {ispta:.4g} mW/cm² above the limit {env.max_ispta_mW_per_cm2:g} mW/cm²"
        return params, self._thermal_problem(ispta / 1000.0)

    def _thermal_problem(self, ispta_W_per_cm2: float) -> str:
        """Why sonicating at ``ispta_W_per_cm2`` for one more watchdog interval would break the thermal bound."""
        env = self.env
        k = env.thermal_rise_C_per_J_per_cm2
        if k is None:
            return (
                "no thermal figure for this setup: the profile needs limits.thermal_rise_C_per_J_per_cm2 "
                "(the lab's measured or simulated peak temperature rise per J/cm² of focal I_SPTA × time)"
            )
        rise = k * (self.energy_J_per_cm2 + ispta_W_per_cm2 * env.watchdog_timeout_s)
        if rise > env.max_temperature_rise_C:
            return (
                f"thermal bound: {rise:.3g} °C within the next {env.watchdog_timeout_s:g} s "
                f"(Σ I_SPTA·t = {self.energy_J_per_cm2:.4g} J/cm² × {k:g} °C per J/cm²) would exceed "
                f"the limit {env.max_temperature_rise_C:g} °C"
            )
        return ""

    def _ramp(self, t: float, dt: float) -> Command:
        was_on, self._cut = self._on, True
        self._elapse(dt)
        self._set(False)
        return self._output(t, was_on)
