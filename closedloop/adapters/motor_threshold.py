"""rTMS intensity: from % of motor threshold (the safety tables' unit) to the stimulator's % of output."""

from __future__ import annotations

from closedloop.config.profile import DeviceProfile
from closedloop.types import Command


class MotorThresholdMixin:
    """Convert rTMS intensities from % of motor threshold (%MT) to % of maximum stimulator output.

    Profiles give ``max_intensity_pct`` in %MT (the unit of the safety
    tables); a stimulator is set in % of its maximum output (%MSO). The
    participant's resting motor threshold (in %MSO) comes from
    ``motor_threshold_pct_mso`` — a constructor keyword (for a runtime that
    takes it from the session) or ``[adapter_options]``. A profile whose
    ``max_intensity_pct`` has unit ``%MSO`` needs no threshold.
    """

    profile: DeviceProfile
    name: str
    #: Tells :func:`closedloop.adapters.build_adapter` to pass the session's ``motor_threshold_pct_mso``.
    uses_motor_threshold = True

    def _init_intensity(self, motor_threshold_pct_mso: float | None) -> None:
        unit = self.profile.limits["max_intensity_pct"].unit.replace(" ", "").upper()
        self.intensity_in_mso = unit == "%MSO"
        mt = motor_threshold_pct_mso
        if mt is None:
            mt = self.profile.adapter_options.get("motor_threshold_pct_mso")
        if not self.intensity_in_mso:
            if mt is None:
                raise ValueError(
                    f"device profile {self.name!r}: intensities are in %MT, so the participant's resting motor "
                    "threshold is needed: pass motor_threshold_pct_mso= to build_adapter() or set "
                    "adapter_options.motor_threshold_pct_mso"
                )
            if not 0 < float(mt) <= 100:
                raise ValueError(f"motor_threshold_pct_mso must be in (0, 100], got {mt}")
        self.motor_threshold_pct_mso = None if mt is None else float(mt)
        lim = self.profile.limits.get("max_output_pct_mso")
        self.max_output_pct_mso = min(100.0, lim.value) if lim is not None else 100.0

    def output_pct_mso(self, intensity_pct: float) -> int:
        """Stimulator setting (whole % of maximum output) for a command intensity."""
        if self.intensity_in_mso:
            return int(round(intensity_pct))
        return int(round(intensity_pct * self.motor_threshold_pct_mso / 100.0))

    def _intensity_problems(self, command: Command) -> list[str]:
        if not (command.on and command.fire):
            return []
        out = self.output_pct_mso(command.extra.get("intensity_pct", 0.0))
        if out > self.max_output_pct_mso:
            return [f"{out} % of maximum output exceeds {self.max_output_pct_mso:g} %"]
        return []
