"""Limits re-checked inside every adapter (defence in depth).

The safety layer bounds every command before it reaches an adapter; the
adapter checks again against its device profile, so that a bug anywhere
upstream (or a third-party runtime that skips the safety layer) cannot drive
a stimulator outside its profile. These functions return a list of problems
(empty = allowed); adapters refuse the command and drive the device safe.

Command conventions (``closedloop.types.Command``):

- tES: ``amplitude_mA`` (peak), ``frequency_Hz`` (0 = tDCS).
- rTMS: ``extra`` keys ``intensity_pct`` (in the unit of the profile's
  ``max_intensity_pct``: % of the resting motor threshold, %MT, for the
  built-in profiles), ``pulses``, ``train_duration_s``, ``fire`` (1.0 = fire
  now), ``abort`` (1.0 = stop the running train); the train rate is
  ``frequency_Hz``. A fired train must fit a verified cell of the profile's
  train-duration table (``train_max_s_<rate>Hz_<intensity>pctMT``) when the
  profile has one.
- TUS: ``extra`` keys ``pnp_MPa``, ``center_frequency_MHz``,
  ``isppa_W_per_cm2``, ``duty_cycle``, ``prf_Hz``, ``burst_s``. MI, I_SPPA
  and I_SPTA are bounded, PNP and I_SPPA must agree with the plane-wave
  relation within the profile's tolerance, and a sonication needs the
  profile's thermal figure; :class:`ThermalGuard` keeps the session's
  thermal bound (docs/safety.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from closedloop.config.profile import DeviceProfile
from closedloop.types import Command

#: Limits each modality's adapters enforce, when the profile defines them.
TES_LIMITS = ("max_amplitude_mA", "min_frequency_Hz", "max_frequency_Hz")
RTMS_LIMITS = (
    "max_intensity_pct",
    "max_frequency_Hz",
    "max_pulses_per_train",
    "max_train_duration_s",
    "min_inter_train_interval_s",
    "max_pulses_per_session",
)
TUS_LIMITS = (
    "max_mechanical_index",
    "max_isppa_W_per_cm2",
    "max_ispta_mW_per_cm2",
    "plane_wave_impedance_MRayl",
    "max_isppa_pnp_mismatch",
    "max_temperature_rise_C",
    "max_duty_cycle",
    "max_burst_s",
)


def missing_limits(profile: DeviceProfile, needed: tuple[str, ...]) -> list[str]:
    """Names in ``needed`` that the profile does not define."""
    return [n for n in needed if n not in profile.limits]


def _lim(profile: DeviceProfile, name: str) -> float | None:
    lim = profile.limits.get(name)
    return None if lim is None else lim.value


def _finite(problems: list[str], name: str, value: float) -> bool:
    if not math.isfinite(value):
        problems.append(f"{name} is {value!r} (not a finite number)")
        return False
    return True


def fires(command: Command) -> bool:
    """Whether an rTMS/TUS command asks to deliver a train or burst now."""
    return command.on and command.fire


def check_tes(command: Command, profile: DeviceProfile) -> list[str]:
    """Problems of a tES command against the profile (amplitude and frequency range)."""
    # runs on every command: the helpers _finite and _lim inlined (a function call costs more than the check)
    p: list[str] = []
    a, f = command.amplitude_mA, command.frequency_Hz
    limits = profile.limits
    if math.isfinite(a):
        top = limits.get("max_amplitude_mA")
        top = None if top is None else top.value
        if a < 0 or (top is not None and a > top):
            p.append(f"amplitude {a} mA outside 0-{top} mA")
    else:
        p.append(f"amplitude_mA is {a!r} (not a finite number)")
    if math.isfinite(f):
        lo, hi = limits.get("min_frequency_Hz"), limits.get("max_frequency_Hz")
        lo = None if lo is None else lo.value
        hi = None if hi is None else hi.value
        if (lo is not None and f < lo) or (hi is not None and f > hi):
            p.append(f"frequency {f} Hz outside {lo}-{hi} Hz")
    else:
        p.append(f"frequency_Hz is {f!r} (not a finite number)")
    return p


def train_duration_s(command: Command) -> float:
    """Effective train length: the longer of ``train_duration_s`` and ``pulses / frequency``."""
    pulses = command.extra.get("pulses", 1.0)
    f = command.frequency_Hz
    by_rate = pulses / f if f > 0 and pulses > 1 else 0.0
    return max(command.extra.get("train_duration_s", 0.0), by_rate)


def check_rtms(command: Command, profile: DeviceProfile) -> list[str]:
    """Problems of an rTMS command: intensity, rate, pulses per train, train length."""
    p: list[str] = []
    x = command.extra
    intensity = x.get("intensity_pct", 0.0)
    pulses = x.get("pulses", 1.0)
    if _finite(p, "intensity_pct", intensity):
        top = _lim(profile, "max_intensity_pct")
        if intensity < 0 or (top is not None and intensity > top):
            p.append(f"intensity {intensity} % outside 0-{top} %")
    if _finite(p, "frequency_Hz", command.frequency_Hz):
        top = _lim(profile, "max_frequency_Hz")
        if command.frequency_Hz < 0 or (top is not None and command.frequency_Hz > top):
            p.append(f"train rate {command.frequency_Hz} Hz outside 0-{top} Hz")
    if _finite(p, "pulses", pulses):
        top = _lim(profile, "max_pulses_per_train")
        if pulses < 0 or pulses != int(pulses) or (top is not None and pulses > top):
            p.append(f"pulses per train {pulses} not a whole number in 0-{top}")
    if _finite(p, "train_duration_s", x.get("train_duration_s", 0.0)):
        dur = train_duration_s(command)
        top = _lim(profile, "max_train_duration_s")
        if top is not None and dur > top:
            p.append(f"train duration {dur:.3g} s exceeds {top} s")
    if fires(command) and pulses > 1 and command.frequency_Hz <= 0:
        p.append("a train of several pulses needs a train rate frequency_Hz > 0")
    if fires(command) and not p:
        p += _check_train_table(command, profile)
    return p


def _check_train_table(command: Command, profile: DeviceProfile) -> list[str]:
    """Return why a fired train fits no verified cell (same rate, intensity at or below the cell's)."""
    from closedloop.safety.rtms import parse_train_limit

    cells = [(cell, lim.value) for name, lim in profile.limits.items() if (cell := parse_train_limit(name)) is not None]
    if not cells:
        return []
    f, intensity = command.frequency_Hz, command.extra.get("intensity_pct", 0.0)
    fitting = [top for (rate, pct), top in cells if math.isclose(rate, f, abs_tol=1e-9) and intensity <= pct]
    if not fitting:
        return [f"no verified train-duration cell covers {f:g} Hz at {intensity:g} % in the profile"]
    dur = train_duration_s(command)
    if dur > min(fitting) * (1 + 1e-9):
        return [f"train of {dur:.3g} s exceeds the verified {min(fitting):g} s at {f:g} Hz"]
    return []


def check_tus(command: Command, profile: DeviceProfile) -> list[str]:
    """Problems of a TUS command: MI, derated I_SPPA and I_SPTA, PNP/I_SPPA agreement, duty, burst, thermal figure."""
    p: list[str] = []
    x = command.extra
    pnp = x.get("pnp_MPa", 0.0)
    fc = x.get("center_frequency_MHz", 0.0)
    isppa = x.get("isppa_W_per_cm2", 0.0)
    duty = x.get("duty_cycle", 0.0)
    burst = x.get("burst_s", 0.0)
    if not all(
        _finite(p, k, v)
        for k, v in (
            ("pnp_MPa", pnp),
            ("center_frequency_MHz", fc),
            ("isppa_W_per_cm2", isppa),
            ("duty_cycle", duty),
            ("burst_s", burst),
        )
    ):
        return p
    if pnp < 0 or isppa < 0 or burst < 0:
        p.append("pressure, intensity and burst length must be >= 0")
    if not 0.0 <= duty <= 1.0:
        p.append(f"duty cycle {duty} outside 0-1")
    top = _lim(profile, "max_mechanical_index")
    if pnp > 0:
        if fc <= 0:
            p.append("center_frequency_MHz must be > 0 to compute the mechanical index")
        elif top is not None and pnp / math.sqrt(fc) > top:
            p.append(f"mechanical index {pnp / math.sqrt(fc):.3g} exceeds {top}")
    top = _lim(profile, "max_isppa_W_per_cm2")
    if top is not None and isppa > top:
        p.append(f"I_SPPA {isppa:.4g} W/cm² exceeds {top} W/cm²")
    z, tol = _lim(profile, "plane_wave_impedance_MRayl"), _lim(profile, "max_isppa_pnp_mismatch")
    if z is not None and tol is not None and (pnp > 0 or isppa > 0):
        plane = 50.0 * pnp * pnp / z  # p² / (2 ρc) in W/cm², p in MPa, ρc in MRayl
        if abs(isppa - plane) > tol * plane:
            p.append(
                f"I_SPPA {isppa:.4g} W/cm² disagrees with PNP {pnp:g} MPa (plane wave in {z:g} MRayl: "
                f"{plane:.4g} W/cm², allowed ±{100 * tol:g} %)"
            )
    top = _lim(profile, "max_ispta_mW_per_cm2")
    ispta = isppa * duty * 1000.0
    if top is not None and ispta > top:
        p.append(f"I_SPTA {ispta:.4g} mW/cm² (I_SPPA × duty cycle) exceeds {top} mW/cm²")
    top = _lim(profile, "max_duty_cycle")
    if top is not None and duty > top:
        p.append(f"duty cycle {duty} exceeds {top}")
    top = _lim(profile, "max_burst_s")
    if top is not None and burst > top:
        p.append(f"burst {burst} s exceeds {top} s")
    if command.on and ispta > 0 and _lim(profile, "thermal_rise_C_per_J_per_cm2") is None:
        p.append("no thermal figure for this setup (limits.thermal_rise_C_per_J_per_cm2): sonications are refused")
    return p


#: The check of each modality (see :func:`check_command`).
CHECKS = {"tes": check_tes, "rtms": check_rtms, "tus": check_tus}


def check_command(command: Command, profile: DeviceProfile) -> list[str]:
    """Problems of ``command`` against ``profile`` for the profile's modality."""
    return CHECKS[profile.device.modality](command, profile)


@dataclass
class ThermalGuard:
    """The session's thermal bound, kept from what the adapter applied (defence in depth).

    ``rise_C_per_J_per_cm2 × Σ I_SPTA·t`` over every sonication of the
    session bounds the peak temperature rise (no credit for cooling; see
    :mod:`closedloop.safety.tus`). Each :meth:`check` first accounts the time
    since the previous one at the intensity then applied (assumed applied
    even if the device refused it: the bound only grows), then refuses a
    sonication whose bound, ``tolerance_s`` ahead, exceeds ``max_rise_C``.
    """

    rise_C_per_J_per_cm2: float | None
    max_rise_C: float
    #: Slack: the adapter measures time on the wall clock at ``apply``, the
    #: safety layer (which stops a watchdog interval early) on its own clock.
    tolerance_s: float = 0.05
    energy_J_per_cm2: float = 0.0
    _ispta_W_per_cm2: float = 0.0
    _since: float | None = None

    @property
    def rise_bound_C(self) -> float:
        """Upper bound of the peak temperature rise so far (°C); NaN without a thermal figure."""
        k = self.rise_C_per_J_per_cm2
        return math.nan if k is None else k * self.energy_J_per_cm2

    def check(self, command: Command, now: float) -> list[str]:
        """Account the time up to ``now``; problems of applying ``command`` from ``now`` on."""
        if self._since is not None and now > self._since:
            self.energy_J_per_cm2 += self._ispta_W_per_cm2 * (now - self._since)
        self._since = now if self._since is None else max(self._since, now)
        x = command.extra
        ispta = x.get("isppa_W_per_cm2", 0.0) * x.get("duty_cycle", 0.0) if command.on else 0.0
        self._ispta_W_per_cm2 = ispta if math.isfinite(ispta) and ispta > 0 else 0.0
        if self._ispta_W_per_cm2 == 0.0 or self.rise_C_per_J_per_cm2 is None:
            return []  # check_tus refuses a sonication without a thermal figure
        rise = self.rise_C_per_J_per_cm2 * (self.energy_J_per_cm2 + self._ispta_W_per_cm2 * self.tolerance_s)
        if rise > self.max_rise_C:
            e = self.energy_J_per_cm2
            return [f"thermal bound {rise:.3g} °C (Σ I_SPTA·t = {e:.4g} J/cm²) exceeds {self.max_rise_C} °C"]
        return []


@dataclass
class TrainGuard:
    """Rules across trains: inter-train interval and a per-session pulse cap.

    Parameters
    ----------
    min_interval_s : float
        Minimum time from the end of one train to the start of the next
        (profile limit ``min_inter_train_interval_s``).
    max_session_pulses : float
        Pulses allowed per session (profile limit ``max_pulses_per_session``).
    """

    min_interval_s: float = 0.0
    max_session_pulses: float = math.inf
    #: Slack for the interval check: the adapter measures it on the wall clock at
    #: ``apply``, the safety layer on frame times, which jitter by a few ms.
    tolerance_s: float = 0.05
    last_end: float | None = None
    pulses: int = 0
    trains: int = 0
    #: TUS: the session's thermal bound (``None`` for rTMS).
    thermal: ThermalGuard | None = None

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> TrainGuard:
        """Return the guard of ``profile``'s inter-train, pulse and (TUS) thermal limits."""
        thermal = None
        if profile.device.modality == "tus":
            thermal = ThermalGuard(
                _lim(profile, "thermal_rise_C_per_J_per_cm2"), _lim(profile, "max_temperature_rise_C") or 0.0
            )
        return cls(
            min_interval_s=_lim(profile, "min_inter_train_interval_s") or 0.0,
            max_session_pulses=_lim(profile, "max_pulses_per_session") or math.inf,
            thermal=thermal,
        )

    def check(self, command: Command, now: float) -> list[str]:
        """Problems of applying ``command`` at ``now`` given what was applied before."""
        p = [] if self.thermal is None else self.thermal.check(command, now)
        if not fires(command):
            return p
        if self.last_end is not None and now - self.last_end < self.min_interval_s - self.tolerance_s:
            p.append(f"inter-train interval {now - self.last_end:.3g} s is shorter than {self.min_interval_s} s")
        n = int(command.extra.get("pulses", 1.0))
        if self.pulses + n > self.max_session_pulses:
            p.append(f"session pulse cap {self.max_session_pulses:g} would be exceeded ({self.pulses} fired + {n})")
        return p

    def commit(self, command: Command, now: float) -> None:
        """Count a train fired at ``now``."""
        self.last_end = now + train_duration_s(command)
        self.pulses += int(command.extra.get("pulses", 1.0))
        self.trains += 1
