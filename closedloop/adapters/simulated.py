"""A simulated tES stimulator: no hardware, realistic linear ramps, injectable faults."""

from __future__ import annotations

import threading

from closedloop.adapters.base import LimitViolation
from closedloop.devices import DeviceProfile
from closedloop.types import Command


class SimulatedStimulator:
    """Simulated single-channel tACS/tDCS stimulator.

    The output follows each applied amplitude by a linear ramp at the
    profile's maximum ramp rate, like a real stimulator's transition; the
    plant model of the synthetic EEG reads :meth:`output_mA`.

    Parameters
    ----------
    profile : DeviceProfile
        Limits re-checked on every command (defence in depth).
    """

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.max_mA = profile.limit("max_amplitude_mA")
        self.fmin = profile.limit("min_frequency_Hz")
        self.fmax = profile.limit("max_frequency_Hz")
        self.rate = profile.limit("emergency_ramp_rate_mA_per_s")
        self._lock = threading.Lock()
        self._from = 0.0
        self._to = 0.0
        self._t0 = 0.0
        self.frequency_Hz = 0.0
        self.connected = False
        self.commands = 0
        self.refused = 0
        self.last_command: Command | None = None

    def connect(self) -> None:
        self.connected = True

    def apply(self, command: Command, now: float) -> None:
        if not self.connected:
            raise RuntimeError("simulated stimulator: apply() before connect()")
        a = command.amplitude_mA
        if not (0.0 <= a <= self.max_mA) or not (self.fmin <= command.frequency_Hz <= self.fmax):
            self.refused += 1
            self._set(0.0, now)
            raise LimitViolation(
                f"{self.profile.device.name}: refused {a} mA at {command.frequency_Hz} Hz "
                f"(profile allows 0-{self.max_mA} mA, {self.fmin}-{self.fmax} Hz); output driven to 0"
            )
        self._set(a, now)
        self.frequency_Hz = command.frequency_Hz
        self.commands += 1
        self.last_command = command

    def _set(self, amplitude: float, now: float) -> None:
        with self._lock:
            self._from = self._value(now)
            self._to = amplitude
            self._t0 = now

    def _value(self, now: float) -> float:
        span = self._to - self._from
        if span == 0.0:
            return self._to
        frac = min(1.0, max(0.0, (now - self._t0) * self.rate / abs(span)))
        return self._from + span * frac

    def output_mA(self, now: float) -> float:
        """Amplitude the simulated device is delivering at ``now``."""
        with self._lock:
            return self._value(now)

    def stop(self) -> None:
        with self._lock:
            self._from = self._to = 0.0
        self.connected = False

    def status(self) -> dict[str, object]:
        return {"connected": self.connected, "commands": self.commands, "refused": self.refused,
                "target_mA": self._to, "frequency_Hz": self.frequency_Hz}
