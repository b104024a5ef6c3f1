"""Device profiles: every limit has a source; incomplete profiles are refused."""

from __future__ import annotations

from pathlib import Path

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


def _pipeline_text(repo) -> str:
    return (repo / "pipelines" / "alpha_tacs.toml").read_text()


def test_a_pipeline_named_like_a_profile_is_never_taken_for_it(tmp_path, repo, monkeypatch):
    from closedloop.config import load_pipeline

    monkeypatch.delenv("CLOSEDLOOP_DEVICES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "mine").mkdir()
    p = tmp_path / "mine" / "sim_tacs.toml"  # a pipeline file called like the profile it uses
    p.write_text(_pipeline_text(repo))
    resolved = load_pipeline(p)
    assert Path(resolved.profile.path).resolve() != p.resolve() and resolved.profile.device.name == "sim_tacs"
    with pytest.raises(FileNotFoundError, match="is a pipeline file, not a device profile"):
        find_profile(str(p))
    with pytest.raises(FileNotFoundError) as info:
        find_profile("nope", pipeline_dir=p.parent)
    assert "'sim_tacs'" in str(info.value) and str(p) not in str(info.value)


def test_lookup_order_project_then_env_then_user_then_package(tmp_path, repo, monkeypatch):
    from closedloop.config import load_pipeline

    def profile(folder: Path, amplitude: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        text = (repo / "devices" / "sim_tacs.toml").read_text().replace("value = 2.0", f"value = {amplitude}", 1)
        (folder / "sim_tacs.toml").write_text(text)

    project, env, user = tmp_path / "proj", tmp_path / "env", tmp_path / "config" / "closedloop" / "devices"
    (project / "pipelines").mkdir(parents=True)
    pipeline = project / "pipelines" / "p.toml"
    pipeline.write_text(_pipeline_text(repo))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("CLOSEDLOOP_DEVICES", str(env))
    assert load_pipeline(pipeline).profile.limit("max_amplitude_mA") == 2.0  # the package's
    profile(user, 1.9)
    assert load_pipeline(pipeline).profile.limit("max_amplitude_mA") == 1.9
    profile(env, 1.8)
    assert load_pipeline(pipeline).profile.limit("max_amplitude_mA") == 1.8
    profile(project / "devices", 1.7)
    assert load_pipeline(pipeline).profile.limit("max_amplitude_mA") == 1.7
    profile(project / "pipelines" / "devices", 1.6)  # devices/ right beside the pipeline file comes first
    assert load_pipeline(pipeline).profile.limit("max_amplitude_mA") == 1.6


def test_emergency_ramp_slower_than_the_normal_ramp_is_refused(repo):
    raw = load_profile(repo / "devices" / "sim_tacs.toml").model_dump(exclude={"path"})
    raw["limits"]["emergency_ramp_rate_mA_per_s"]["value"] = 0.1
    with pytest.raises(ValidationError, match="emergency_ramp_rate_mA_per_s.value: 0.1 mA/s is slower than"):
        DeviceProfile.model_validate(raw)
