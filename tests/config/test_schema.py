"""Config is pure schema: it loads no stage code, has no import cycles, and its checks agree with the stages."""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from closedloop.config import TriggerConfig
from closedloop.config.profile import load_profile
from closedloop.config.safety import SafetyOverrides
from closedloop.config.validate import BUILTIN_ADAPTERS, check_trigger
from closedloop.safety.envelope import ENVELOPES, safety_layer_for
from closedloop.types import Command

CONFIG = Path(__file__).resolve().parents[2] / "closedloop" / "config"
STAGE_MODULES = (
    "numba",
    "scipy.signal",
    "closedloop.control",
    "closedloop.features",
    "closedloop.adapters",
    "closedloop.preprocess",
)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(CONFIG.parents[1])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_loading_every_shipped_pipeline_imports_no_stage_code(repo):
    code = """
import sys
from pathlib import Path
import closedloop.config
from closedloop.config import load_pipeline, pipeline_warnings
n = 0
for p in sorted(Path(sys.argv[1]).glob("*.toml")):
    pipeline_warnings(load_pipeline(p).config)
    n += 1
stage = tuple(sys.argv[2:])
print(n)
print(sorted(m for m in sys.modules if m in stage or m.startswith(tuple(s + "." for s in stage))))
"""
    r = _python(code, str(repo / "pipelines"), *STAGE_MODULES)
    assert r.returncode == 0, r.stderr
    count, loaded = r.stdout.splitlines()
    assert int(count) == len(list((repo / "pipelines").glob("*.toml"))) > 10
    assert loaded == "[]"


@pytest.mark.parametrize("module", sorted(p.stem for p in CONFIG.glob("*.py") if p.stem != "__init__"))
def test_each_config_module_imports_first_without_a_cycle(module):
    r = _python(f"import closedloop.config.{module}")
    assert r.returncode == 0, r.stderr


def test_config_has_no_function_local_imports():
    # an optional dependency imported where it is used; the safety layer, which judges a trigger's request
    # itself (plain Python, no numba) and imports the profile schema (a cycle at the top); numpy, which only
    # a baseline's statistic needs (``closedloop check`` loads no numpy)
    optional = {"platformdirs", "closedloop.safety.envelope", "numpy"}
    for path in CONFIG.glob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    assert node.module in optional, f"{path.name}:{node.lineno} imports {node.module} in a function"
                elif isinstance(node, ast.Import):
                    names = {a.name for a in node.names}
                    assert names <= optional, f"{path.name}:{node.lineno} imports {names} in a function"


def test_the_adapter_facts_match_the_adapters():
    from closedloop.adapters import BUILTIN, adapter_factory

    assert set(BUILTIN_ADAPTERS) == set(BUILTIN)
    for name, facts in BUILTIN_ADAPTERS.items():
        factory = adapter_factory(name)
        assert bool(getattr(factory, "uses_motor_threshold", False)) == facts.uses_motor_threshold, name
        if isinstance(factory, type):  # a class states its modalities (the simulated factory picks one per profile)
            assert tuple(factory.modalities) == facts.modalities, name


def _first_fire_allowed(controller, profile, safety: SafetyOverrides) -> bool:
    over = safety.model_dump(exclude_none=True)
    env = {
        n: {"value": over.get(n, lim.value), "unit": lim.unit, "source": lim.source}
        for n, lim in profile.limits.items()
    }
    layer = safety_layer_for(ENVELOPES[profile.device.modality].from_envelope(env), clock=lambda: 0.0)
    return layer.step(Command(0.0, controller.rate_Hz, True, 0.0, controller.fire_extra(), fire=True)).on


TRAINS = [
    dict(zip(("frequency_Hz", "intensity_pct", "pulses", "duration_s"), combo))
    for combo in itertools.product((20.0, 10.0), (90.0, 110.0, 120.0), (32, 40, 400, None), (1.6, 2.0, 0.01, None))
    if combo[2] is not None or combo[3] is not None
]
SONICATIONS = [
    {
        "pnp_MPa": pnp,
        "center_frequency_MHz": f,
        "duty_cycle": duty,
        "burst_s": burst,
        "isppa_W_per_cm2": 50.0 * pnp * pnp / 1.5 * factor,  # the plane-wave I_SPPA (1.5 MRayl), or off by 50 %
    }
    for pnp, f, duty, burst, factor in itertools.product(
        (0.6, 0.9, 1.5), (0.5, 0.1), (0.04, 0.5), (0.004, 0.05), (1.0, 1.5)
    )
]


@pytest.mark.parametrize("safety", [{}, {"max_intensity_pct": 100.0}, {"max_pulses_per_session": 30.0}])
def test_rtms_trigger_check_agrees_with_the_layer(repo, safety):
    profile = load_profile(repo / "devices" / "sim_rtms.toml")
    over = SafetyOverrides(**safety)
    for train in TRAINS:
        cfg = {"kind": "trigger", "modality": "rtms", "feature": "a", "threshold": 0.0, "refractory_s": 100.0}
        ctl = TypeAdapter(TriggerConfig).validate_python({**cfg, "train": train})
        problems = [p for p in check_trigger(ctl, profile, over) if "refractory_s" not in p]
        assert (not problems) == _first_fire_allowed(ctl, profile, over), (train, problems)


@pytest.mark.parametrize(
    "safety, thermal, expected",
    [
        ({}, True, {True, False}),
        ({"max_mechanical_index": 1.0}, True, {True, False}),
        ({"max_sonication_s": 0.2}, True, {False}),  # shorter than the watchdog time: nothing may start
        ({}, False, {False}),
    ],
)
def test_tus_trigger_check_agrees_with_the_layer(repo, safety, thermal, expected):
    profile = load_profile(repo / "devices" / "sim_tus.toml")
    if not thermal:  # a profile without the lab's thermal figure: every sonication is refused
        limits = {n: lim for n, lim in profile.limits.items() if n != "thermal_rise_C_per_J_per_cm2"}
        profile = profile.model_copy(update={"limits": limits})
    over = SafetyOverrides(**safety)
    verdicts = set()
    for son in SONICATIONS:
        sonication = {**son, "prf_Hz": 10.0, "duration_s": 1.0}
        cfg = {"kind": "trigger", "modality": "tus", "feature": "a", "threshold": 0.0, "refractory_s": 100.0}
        ctl = TypeAdapter(TriggerConfig).validate_python({**cfg, "sonication": sonication})
        problems = [p for p in check_trigger(ctl, profile, over) if "would refuse" in p]
        allowed = _first_fire_allowed(ctl, profile, over)
        assert (not problems) == allowed, (sonication, problems)
        verdicts.add(allowed)
    assert verdicts == expected  # the grid holds allowed and refused sonications
