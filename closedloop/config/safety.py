"""``[safety]``: per-pipeline tightening of the device profile's limits."""

from __future__ import annotations

from pydantic import Field

from closedloop.config.base import StrictModel


class SafetyOverrides(StrictModel):
    """Per-pipeline tightening of the device limits; loosening is an error."""

    max_amplitude_mA: float | None = Field(None, ge=0)
    max_ramp_rate_mA_per_s: float | None = Field(None, gt=0)
    max_session_duration_s: float | None = Field(None, gt=0)
    max_charge_C: float | None = Field(None, ge=0)
    watchdog_timeout_s: float | None = Field(None, gt=0)
    bad_data_timeout_s: float | None = Field(None, gt=0)
    # rTMS (a min_* limit tightens upward)
    max_intensity_pct: float | None = Field(None, ge=0)
    max_pulses_per_session: float | None = Field(None, ge=0)
    min_inter_train_interval_s: float | None = Field(None, ge=0)
    # TUS
    max_mechanical_index: float | None = Field(None, ge=0)
    max_ispta_mW_per_cm2: float | None = Field(None, ge=0)
    max_duty_cycle: float | None = Field(None, gt=0, le=1)
    max_sonication_s: float | None = Field(None, gt=0)
    max_total_sonication_s: float | None = Field(None, ge=0)
