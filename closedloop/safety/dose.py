"""Dose accounting, kept by the safety layer (never by a controller)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Dose:
    """What has been applied so far in a session.

    Attributes
    ----------
    charge_C : float
        tES: trapezoid integral of ``|I| dt`` over the applied commands (C).
    stim_time_s : float
        Time with something applied (tES: nonzero current; rTMS: train time;
        TUS: sonication time), s.
    pulses, trains : int
        rTMS: pulses and trains fired (an aborted train counts in full).
    sonications : int
        TUS: sonications started.
    """

    charge_C: float = 0.0
    stim_time_s: float = 0.0
    pulses: int = 0
    trains: int = 0
    sonications: int = 0

    def add_current(self, a0_mA: float, a1_mA: float, dt: float) -> None:
        """Account a linear segment from ``a0_mA`` to ``a1_mA`` over ``dt`` seconds."""
        self.charge_C += 0.5 * (abs(a0_mA) + abs(a1_mA)) * dt / 1000.0
        if a0_mA != 0.0 or a1_mA != 0.0:
            self.stim_time_s += dt

    def as_dict(self, modality: str) -> dict[str, float]:
        """Return the numbers that matter for ``modality`` (for ``summary.json``)."""
        if modality == "tes":
            return {"charge_C": self.charge_C, "stim_time_s": self.stim_time_s}
        if modality == "rtms":
            return {"pulses": float(self.pulses), "trains": float(self.trains), "stim_time_s": self.stim_time_s}
        return {"sonications": float(self.sonications), "sonication_s": self.stim_time_s}
