"""Device profiles: every limit has a source; incomplete profiles are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from closedloop.config.profile import DeviceProfile, find_profile, list_profiles, load_profile


def test_shipped_profiles_have_sources(repo):
    profiles = list_profiles([repo / "devices"])
    assert any(p.device.name == "sim_tacs" for p in profiles)
    for prof in profiles:
        for name, lim in prof.limits.items():
            assert len(lim.source) >= 10, f"{prof.device.name}.{name} lacks a source"


def test_limit_without_source_is_refused():
    raw = {
        "device": {"name": "x", "modality": "tes", "adapter": "simulated"},
        "limits": {"max_amplitude_mA": {"value": 2.0}},
    }
    with pytest.raises(ValidationError, match="source"):
        DeviceProfile.model_validate(raw)


def test_missing_required_limit_is_refused(repo):
    raw = load_profile(repo / "devices" / "sim_tacs.toml").model_dump(exclude={"path"})
    del raw["limits"]["max_charge_C"]
    with pytest.raises(ValueError, match="max_charge_C"):
        DeviceProfile.model_validate(raw)


def test_find_profile_lists_available(repo):
    assert find_profile("sim_tacs", [repo / "devices"]).name == "sim_tacs.toml"
    with pytest.raises(FileNotFoundError, match="sim_tacs"):
        find_profile("nope", [repo / "devices"])
