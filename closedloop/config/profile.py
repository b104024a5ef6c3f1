"""Device profiles: what a stimulator is, which adapter drives it, and its hard limits.

A profile is a TOML file in ``devices/``. Every limit carries the source it
comes from, so that a reviewer can check each number (docs/safety.md)::

    [device]
    name = "sim_tacs"
    modality = "tes"
    adapter = "simulated"

    [limits.max_amplitude_mA]
    value = 2.0
    source = "Bikson et al. 2016, Brain Stimul 9:641 ..."
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Modality = Literal["tes", "rtms", "tus"]

#: Limits each modality's profile must define (name -> unit, for display).
REQUIRED_LIMITS: dict[str, dict[str, str]] = {
    "tes": {
        "max_amplitude_mA": "mA",
        "max_ramp_rate_mA_per_s": "mA/s",
        "emergency_ramp_rate_mA_per_s": "mA/s",
        "max_session_duration_s": "s",
        "max_charge_C": "C",
        "min_frequency_Hz": "Hz",
        "max_frequency_Hz": "Hz",
        "watchdog_timeout_s": "s",
        "bad_data_timeout_s": "s",
    },
    "rtms": {
        "max_intensity_pct": "%MT",  # percent of the resting motor threshold (the train table's unit)
        "min_inter_train_interval_s": "s",
        "max_pulses_per_session": "pulses",
        "max_session_duration_s": "s",
        "watchdog_timeout_s": "s",
        "bad_data_timeout_s": "s",
    },
    "tus": {
        "max_mechanical_index": "",
        "max_isppa_W_per_cm2": "W/cm²",
        "max_ispta_mW_per_cm2": "mW/cm²",
        "plane_wave_impedance_MRayl": "MRayl",  # ρc of the plane-wave check I_SPPA = PNP² / (2 ρc)
        "max_isppa_pnp_mismatch": "",  # allowed |I_SPPA / (PNP² / 2ρc) - 1|
        "max_temperature_rise_C": "°C",
        "max_duty_cycle": "",
        "max_burst_s": "s",
        "min_center_frequency_MHz": "MHz",
        "max_center_frequency_MHz": "MHz",
        "max_sonication_s": "s",
        "min_pause_s": "s",
        "max_total_sonication_s": "s",
        "max_session_duration_s": "s",
        "watchdog_timeout_s": "s",
        "bad_data_timeout_s": "s",
    },
}

#: TUS profiles may also give ``thermal_rise_C_per_J_per_cm2`` (°C per J/cm²), the lab's own
#: thermal figure for its setup; without it the safety layer refuses every sonication.
#: rTMS profiles also give the verified cells of the train-duration table as limits named
#: ``train_max_s_<rate>Hz_<intensity>pctMT`` (``p`` for a decimal point), e.g.
#: ``train_max_s_20Hz_110pctMT``: trains at 20 Hz up to 110 %MT may last at most ``value`` s.
#: At least one cell is required; combinations no cell covers are refused.
TRAIN_LIMIT_PREFIX = "train_max_s_"
_TRAIN_LIMIT_RE = re.compile(r"^train_max_s_(?P<f>\d+(?:p\d+)?)Hz_(?P<i>\d+(?:p\d+)?)pctMT$")


def parse_train_limit(name: str) -> tuple[float, float] | None:
    """``train_max_s_20Hz_110pctMT`` → ``(20.0, 110.0)`` (rate in Hz, intensity in %MT); else ``None``."""
    m = _TRAIN_LIMIT_RE.match(name)
    if m is None:
        return None
    return float(m["f"].replace("p", ".")), float(m["i"].replace("p", "."))


class Limit(BaseModel):
    """One hard limit with the reference it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    source: str = Field(min_length=10, description="citation or document the number comes from")
    unit: str = ""

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return v


class DeviceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    modality: Modality
    adapter: str
    description: str = ""


class DeviceProfile(BaseModel):
    """A validated device profile (see module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid")

    device: DeviceInfo
    limits: dict[str, Limit]
    adapter_options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    path: str | None = None

    def model_post_init(self, __context: object) -> None:
        required = REQUIRED_LIMITS[self.device.modality]
        missing = sorted(set(required) - set(self.limits))
        if missing:
            raise ValueError(
                f"device profile {self.device.name!r} ({self.device.modality}) lacks limits "
                f"{missing}; each needs a value and a source"
            )
        for name, unit in required.items():
            lim = self.limits[name]
            if not lim.unit:
                self.limits[name] = lim.model_copy(update={"unit": unit})
        for name, lim in self.limits.items():
            if lim.value < 0:
                raise ValueError(f"limits.{name}.value must be >= 0, got {lim.value}")
        if self.device.modality == "rtms":
            self._check_train_table()
        thermal = self.limits.get("thermal_rise_C_per_J_per_cm2")
        if self.device.modality == "tus" and thermal is not None and not thermal.unit:
            self.limits["thermal_rise_C_per_J_per_cm2"] = thermal.model_copy(update={"unit": "°C per J/cm²"})

    def _check_train_table(self) -> None:
        cells = [n for n in self.limits if n.startswith(TRAIN_LIMIT_PREFIX)]
        bad = [n for n in cells if parse_train_limit(n) is None]
        if bad:
            raise ValueError(
                f"limits {bad}: train-table cells are named train_max_s_<rate>Hz_<intensity>pctMT, "
                "e.g. train_max_s_20Hz_110pctMT (p for a decimal point: 0p5Hz)"
            )
        if not cells:
            raise ValueError(
                f"device profile {self.device.name!r} (rtms) has no verified train-duration cell "
                "(limits.train_max_s_<rate>Hz_<intensity>pctMT with value and source); "
                "without one every train would be refused"
            )
        for n in cells:
            if not self.limits[n].unit:
                self.limits[n] = self.limits[n].model_copy(update={"unit": "s"})

    def limit(self, name: str) -> float:
        """Return the value of limit ``name``."""
        return self.limits[name].value


def device_search_path(extra: list[Path] | None = None) -> list[Path]:
    """Folders searched for ``NAME.toml`` device profiles, in order.

    ``extra`` (e.g. ``devices/`` beside a pipeline file), then each folder in
    ``CLOSEDLOOP_DEVICES`` (``os.pathsep``-separated), then ``./devices``.
    """
    paths = list(extra or [])
    env = os.environ.get("CLOSEDLOOP_DEVICES", "")
    paths += [Path(p) for p in env.split(os.pathsep) if p]
    paths.append(Path.cwd() / "devices")
    seen: list[Path] = []
    for p in paths:
        p = p.resolve()
        if p not in seen:
            seen.append(p)
    return seen


def find_profile(name_or_path: str, search: list[Path] | None = None) -> Path:
    """Locate a device profile by name (``sim_tacs``) or by path.

    Raises
    ------
    FileNotFoundError
        Naming what was asked for, where it was looked for and which profiles exist.
    """
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.exists():
        return p.resolve()
    folders = device_search_path(search)
    for folder in folders:
        cand = folder / f"{p.stem if p.suffix == '.toml' else name_or_path}.toml"
        if cand.exists():
            return cand.resolve()
    available = sorted({f.stem for folder in folders if folder.is_dir() for f in folder.glob("*.toml")})
    raise FileNotFoundError(
        f"device profile {name_or_path!r} not found in {[str(f) for f in folders]}; available: {available or 'none'}"
    )


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile file."""
    path = Path(path)
    with path.open("rb") as f:
        raw = tomllib.load(f)
    prof = DeviceProfile.model_validate(raw)
    prof.path = str(path)
    return prof


def list_profiles(search: list[Path] | None = None) -> list[DeviceProfile]:
    """All valid profiles on the search path (invalid files are skipped)."""
    out = []
    for folder in device_search_path(search):
        for f in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                out.append(load_profile(f))
            except Exception:  # noqa: BLE001 - listing must not die on one bad file
                continue
    return out
