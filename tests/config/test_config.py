"""Pipeline validation: every invalid case fails before anything starts, naming its key."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w

from closedloop.config import PipelineError, feature_names, load_pipeline


def write_variant(tmp_path: Path, repo: Path, edit) -> Path:
    """Copy alpha_tacs.toml with ``edit(dict)`` applied, next to a copy of devices/."""
    raw = tomllib.loads((repo / "pipelines" / "alpha_tacs.toml").read_text())
    edit(raw)
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    if not (tmp_path / "devices").exists():
        shutil.copytree(repo / "devices", tmp_path / "devices")
    p = tmp_path / "pipelines" / "variant.toml"
    p.write_bytes(tomli_w.dumps(raw).encode())
    return p


def problems_of(path: Path) -> str:
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    return str(info.value)


@pytest.mark.parametrize("pipeline", sorted((Path(__file__).parents[2] / "pipelines").glob("*.toml")))
def test_shipped_pipelines_validate(pipeline):
    resolved = load_pipeline(pipeline)
    if resolved.profile is None:  # a features-only pipeline: nothing to stimulate, no envelope
        assert resolved.config.controller is None and resolved.config.device is None
        return
    env = resolved.envelope()
    for name, lim in env.items():  # every modality: overrides only tighten the device limits
        device = resolved.profile.limit(name)
        assert lim["value"] >= device if name.startswith("min_") else lim["value"] <= device, name
    if resolved.profile.device.modality == "tes":
        assert env["max_amplitude_mA"]["value"] <= resolved.profile.limit("max_amplitude_mA")
    assert all(v["source"] for v in env.values())


def test_unknown_key_is_named(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["features"].update(windw_samples=3)))
    assert "features.windw_samples" in msg and "unknown key" in msg


def test_unknown_section_is_named(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r.update(stimulator={"x": 1})))
    assert "stimulator" in msg and "unknown key" in msg


def test_wrong_type_is_named(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["features"].update(hop_samples="often")))
    assert "features.hop_samples" in msg and "'often'" in msg


def test_band_above_nyquist(tmp_path, repo):
    def edit(r):
        r["features"]["bands"]["gamma"] = [60.0, 300.0]

    msg = problems_of(write_variant(tmp_path, repo, edit))
    assert "features.bands.gamma" in msg and "Nyquist (250.0 Hz" in msg


def test_window_shorter_than_band_period(tmp_path, repo):
    def edit(r):
        r["features"]["window_samples"] = 100  # 0.2 s cannot hold a 4 Hz period (125 samples)
        r["features"]["hop_samples"] = 25

    msg = problems_of(write_variant(tmp_path, repo, edit))
    assert "features.window_samples" in msg and "theta" in msg and ">= 125" in msg


def test_missing_device_profile(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["device"].update(profile="no_such_device")))
    assert "device.profile" in msg and "no_such_device" in msg and "sim_tacs" in msg  # lists what exists


def test_safety_override_may_only_tighten(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["safety"].update(max_amplitude_mA=3.0)))
    assert "safety.max_amplitude_mA" in msg and "only tighten" in msg


def test_controller_feature_must_exist(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["controller"].update(feature="gamma")))
    assert "controller.feature" in msg and "'alpha'" in msg


def test_controller_amplitude_above_device_limit(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["controller"].update(amplitude_mA=5.0)))
    assert "controller.amplitude_mA" in msg and "2.0 mA" in msg


def test_ratio_of_unknown_band(tmp_path, repo):
    def edit(r):
        r["features"]["ratios"] = {"beta_alpha": ["beta", "alpha"]}

    msg = problems_of(write_variant(tmp_path, repo, edit))
    assert "ratios.beta_alpha" in msg and "'beta'" in msg


def test_unknown_channel(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["features"].update(channels=["O1", "Xx9"])))
    assert "features.channels" in msg and "Xx9" in msg


def test_unknown_source_kind(tmp_path, repo):
    msg = problems_of(write_variant(tmp_path, repo, lambda r: r["source"].update(kind="serial")))
    assert "source" in msg and "'synthetic'" in msg and "'lsl'" in msg


def test_hop_slower_than_watchdog(tmp_path, repo):
    def edit(r):
        r["features"]["window_samples"] = 1000
        r["features"]["hop_samples"] = 500  # 1 s between frames, the watchdog trips after 0.3 s

    msg = problems_of(write_variant(tmp_path, repo, edit))
    assert "features.hop_samples" in msg and "watchdog" in msg


def test_all_problems_reported_at_once(tmp_path, repo):
    def edit(r):
        r["features"]["bands"]["gamma"] = [60.0, 300.0]
        r["safety"]["max_amplitude_mA"] = 3.0

    msg = problems_of(write_variant(tmp_path, repo, edit))
    assert "features.bands.gamma" in msg and "safety.max_amplitude_mA" in msg


def test_overrides_are_validated(repo):
    resolved = load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"controller.lower": 1.0})
    assert resolved.config.controller.lower == 1.0
    with pytest.raises(PipelineError, match="controller.lower"):
        load_pipeline(repo / "pipelines" / "alpha_tacs.toml", {"controller.lower": 9.0})


def test_feature_names_per_channel(tmp_path, repo):
    def edit(r):
        r["features"].update(combine="each", channels=["O1", "O2"])
        r["controller"]["feature"] = "alpha_O2"

    p = write_variant(tmp_path, repo, edit)
    names = feature_names(load_pipeline(p).config)
    assert names == ["theta_O1", "alpha_O1", "theta_alpha_O1", "theta_O2", "alpha_O2", "theta_alpha_O2"]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda r: r["features"].update(hop_sampels=25),
            "features.hop_sampels: unknown key; did you mean 'hop_samples'?",
        ),
        (lambda r: r.update(sorce={}), "sorce: unknown key; did you mean 'source'?"),
        (
            lambda r: r["controller"].update(kind="trigger", modality="rtms"),
            "controller.train: required key is missing",
        ),
        (
            lambda r: r["features"].update(bands={"alpha": [8.0, "x"]}),
            "features.bands.alpha[1]: must be a valid number",
        ),
    ],
)
def test_messages_name_the_dotted_key_and_what_is_allowed(tmp_path, repo, edit, expected):
    msg = problems_of(write_variant(tmp_path, repo, edit))
    assert expected in msg and "Value error" not in msg and "Input should" not in msg


def test_every_section_is_checked_in_one_pass(tmp_path, repo):
    def edit(r):
        r["source"]["n_channels"] = 0  # the source fails ...
        r["controller"]["amplitude_mA"] = 5.0  # ... the controller is still checked against the device
        r["features"]["bands"]["gamma"] = [60.0, 80.0]
        r["safety"]["max_amplitude_mA"] = 3.0

    msg = problems_of(write_variant(tmp_path, repo, edit))
    for key in ("source.n_channels", "controller.amplitude_mA: 5.0 mA exceeds", "safety.max_amplitude_mA"):
        assert key in msg


def test_a_file_source_path_is_relative_to_the_pipeline(tmp_path, repo):
    def edit(r):
        r["source"] = {"kind": "file", "sfreq": 500.0, "path": "../data/rec.edf", "encoding": "latin1"}

    resolved = load_pipeline(write_variant(tmp_path, repo, edit))
    assert resolved.config.source.path == str((tmp_path / "data" / "rec.edf").resolve())
    assert resolved.config.source.ch_names is None  # channels are checked when the file is opened


@pytest.mark.parametrize(
    "text, value",
    [("1.5", 1.5), ("true", True), ('["O1", "O2"]', ["O1", "O2"]), ("'x'", "x"), ("lsl", "lsl"), ("[1", "[1")],
)
def test_set_values_are_toml(text, value):
    from closedloop.config import parse_overrides

    assert parse_overrides([f"a.b={text}"]) == {"a.b": value}
