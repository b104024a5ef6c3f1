"""Device profiles: what a stimulator is, which adapter drives it, and its hard limits.

A profile is a TOML file ``NAME.toml`` in a devices folder (see
:func:`device_search_path` for the order folders are searched). Every limit
carries the source it comes from, so that a reviewer can check each number
(docs/safety.md)::

    [device]
    name = "sim_tacs"
    modality = "tes"
    adapter = "simulated"

    [limits.max_amplitude_mA]
    value = 2.0
    source = "Bikson et al. 2016, Brain Stimul 9:641 ..."
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from closedloop.config.base import StrictModel

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


class Limit(StrictModel):
    """One hard limit with the reference it comes from."""

    model_config = ConfigDict(frozen=True)

    value: float
    source: str = Field(min_length=10, description="citation or document the number comes from")
    unit: str = ""

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return v


class DeviceInfo(StrictModel):
    """``[device]`` of a profile: its name, modality and adapter."""

    name: str
    modality: Modality
    adapter: str = Field(min_length=1)
    description: str = ""


class DeviceProfile(StrictModel):
    """A validated device profile (see module docstring for the file format)."""

    device: DeviceInfo
    limits: dict[str, Limit]
    adapter_options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    path: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> DeviceProfile:
        required = REQUIRED_LIMITS[self.device.modality]
        missing = sorted(set(required) - set(self.limits))
        problems = []
        if missing:
            problems.append(
                f"limits: device profile {self.device.name!r} ({self.device.modality}) lacks limits "
                f"{missing}; each needs a value and a source"
            )
        for name, unit in required.items():
            lim = self.limits.get(name)
            if lim is not None and not lim.unit:
                self.limits[name] = lim.model_copy(update={"unit": unit})
        for name, lim in self.limits.items():
            if lim.value < 0:
                problems.append(f"limits.{name}.value: must be >= 0, got {lim.value}")
        problems += self._check_ramps()
        if self.device.modality == "rtms":
            problems += self._check_train_table()
        thermal = self.limits.get("thermal_rise_C_per_J_per_cm2")
        if self.device.modality == "tus" and thermal is not None and not thermal.unit:
            self.limits["thermal_rise_C_per_J_per_cm2"] = thermal.model_copy(update={"unit": "°C per J/cm²"})
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _check_ramps(self) -> list[str]:
        normal, emergency = self.limits.get("max_ramp_rate_mA_per_s"), self.limits.get("emergency_ramp_rate_mA_per_s")
        if normal is not None and emergency is not None and emergency.value < normal.value:
            return [
                f"limits.emergency_ramp_rate_mA_per_s.value: {emergency.value:g} mA/s is slower than "
                f"max_ramp_rate_mA_per_s ({normal.value:g} mA/s); an emergency ramp must be at least as fast"
            ]
        return []

    def _check_train_table(self) -> list[str]:
        cells = [n for n in self.limits if n.startswith(TRAIN_LIMIT_PREFIX)]
        bad = [n for n in cells if parse_train_limit(n) is None]
        if bad:
            return [
                f"limits: {bad}: train-table cells are named train_max_s_<rate>Hz_<intensity>pctMT, "
                "e.g. train_max_s_20Hz_110pctMT (p for a decimal point: 0p5Hz)"
            ]
        if not cells:
            return [
                f"limits: device profile {self.device.name!r} (rtms) has no verified train-duration cell "
                "(limits.train_max_s_<rate>Hz_<intensity>pctMT with value and source); "
                "without one every train would be refused"
            ]
        for n in cells:
            if not self.limits[n].unit:
                self.limits[n] = self.limits[n].model_copy(update={"unit": "s"})
        return []

    def limit(self, name: str) -> float:
        """Return the value of limit ``name``."""
        return self.limits[name].value


#: Environment variable: extra profile folders, separated by ``os.pathsep``.
DEVICES_ENV = "CLOSEDLOOP_DEVICES"


def user_devices_folder() -> Path:
    """Return the user's own profile folder (``$XDG_CONFIG_HOME/closedloop/devices``, or the OS equivalent)."""
    try:
        from platformdirs import user_config_path
    except ImportError:  # platformdirs is optional: fall back to the XDG default
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return base / "closedloop" / "devices"
    return user_config_path("closedloop", appauthor=False) / "devices"


def packaged_folder(name: str) -> Path | None:
    """Return the folder of the profiles (``"devices"``) or pipelines (``"pipelines"``) shipped with closedloop.

    An installed wheel holds them as ``closedloop/<name>/``; an editable
    install maps that to the repository's top-level folder, which a source
    checkout run without installing also uses.
    """
    try:
        spec = importlib.util.find_spec(f"closedloop.{name}")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(loc).is_dir():
            return Path(loc)
    src = Path(__file__).resolve().parents[2] / name
    return src if src.is_dir() and (src.parent / "pyproject.toml").is_file() else None


def device_search_path(pipeline_dir: Path | None = None, extra: list[Path] | None = None) -> list[Path]:
    """Return the folders searched for ``NAME.toml`` device profiles, in order, with duplicates removed.

    1. the project's ``devices/``: beside the pipeline file or beside its
       folder (a folder made by ``closedloop init``); with no pipeline, the
       current folder's ``devices/``;
    2. ``extra`` folders (given by a caller);
    3. each folder in ``CLOSEDLOOP_DEVICES`` (``os.pathsep``-separated);
    4. the user folder (:func:`user_devices_folder`);
    5. the profiles shipped with closedloop.
    """
    if pipeline_dir is not None:
        paths = [pipeline_dir / "devices", pipeline_dir.parent / "devices"]
    else:
        paths = [Path.cwd() / "devices"]
    paths += list(extra or [])
    paths += [Path(p) for p in os.environ.get(DEVICES_ENV, "").split(os.pathsep) if p]
    paths.append(user_devices_folder())
    packaged = packaged_folder("devices")
    if packaged is not None:
        paths.append(packaged)
    seen: list[Path] = []
    for p in paths:
        p = p.resolve()
        if p not in seen:
            seen.append(p)
    return seen


def is_pipeline_file(path: Path) -> bool:
    """Return whether a TOML file is a pipeline (it has a ``[pipeline]`` table), not a device profile."""
    try:
        with path.open("rb") as f:
            return "pipeline" in tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _profile_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [f for f in sorted(folder.glob("*.toml")) if not is_pipeline_file(f)]


def find_profile(name_or_path: str, search: list[Path] | None = None, pipeline_dir: Path | None = None) -> Path:
    """Locate a device profile by name (``sim_tacs``) or by path (``my/devices/x.toml``).

    Parameters
    ----------
    name_or_path : str
        A profile name or a path to a ``.toml`` file.
    search : list of Path, optional
        Extra folders (searched after the project's ``devices/``).
    pipeline_dir : Path, optional
        The folder of the pipeline asking (see :func:`device_search_path`).

    Raises
    ------
    FileNotFoundError
        Naming what was asked for, where it was looked for and which profiles exist.
    """
    p = Path(name_or_path)
    if p.suffix == ".toml" and (p.exists() or (pipeline_dir is not None and (pipeline_dir / p).exists())):
        found = p if p.exists() else pipeline_dir / p
        if is_pipeline_file(found):
            raise FileNotFoundError(f"{found} is a pipeline file, not a device profile")
        return found.resolve()
    folders = device_search_path(pipeline_dir, search)
    stem = p.stem if p.suffix == ".toml" else name_or_path
    for folder in folders:
        cand = folder / f"{stem}.toml"
        if cand.is_file() and not is_pipeline_file(cand):
            return cand.resolve()
    available = sorted({f.stem for folder in folders for f in _profile_files(folder)})
    raise FileNotFoundError(
        f"device profile {name_or_path!r} not found in {[str(f) for f in folders]}; available: {available or 'none'}"
    )


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not valid TOML or is a pipeline file.
    pydantic.ValidationError
        If it is not a valid profile.
    """
    path = Path(path)
    with path.open("rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"not valid TOML: {e}") from None
    if "pipeline" in raw:
        raise ValueError(f"{path} is a pipeline file, not a device profile")
    prof = DeviceProfile.model_validate(raw)
    prof.path = str(path)
    return prof


def profile_files(pipeline_dir: Path | None = None, search: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """Return ``(folder, file)`` of every profile on the search path; a name found twice counts once (the first)."""
    out, seen = [], set()
    for folder in device_search_path(pipeline_dir, search):
        for f in _profile_files(folder):
            if f.stem not in seen:
                seen.add(f.stem)
                out.append((folder, f))
    return out


def list_profiles(search: list[Path] | None = None) -> list[DeviceProfile]:
    """Return all valid profiles on the search path (invalid files are skipped)."""
    out = []
    for _, f in profile_files(None, search):
        try:
            out.append(load_profile(f))
        except Exception:  # noqa: BLE001 - listing must not die on one bad file
            continue
    return out
