"""The quick commands load only what they use: ``--help``, ``--version`` and ``check`` import no numerics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules the quick commands must not load (each costs 0.1 s to 2 s of start-up).
HEAVY = ("numpy", "numba", "scipy", "mne", "matplotlib", "pylsl", "importlib.metadata")

#: Runs the command line in-process, then writes the names of the loaded modules to argv[1].
CHILD = """
import json, sys
out = sys.argv[1]
sys.argv = ["closedloop", *sys.argv[2:]]
from closedloop.cli import main
try:
    code = main()
except SystemExit as e:
    code = e.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def _child_env() -> dict[str, str]:
    """The environment of a child process that imports closedloop from this checkout."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _loaded(tmp_path: Path, *args: str) -> list[str]:
    out = tmp_path / "modules.json"
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), *args], capture_output=True, text=True, env=_child_env(), timeout=120
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["code"] in (0, None), r.stderr
    return result["modules"]


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("check", "pipelines/alpha_tacs.toml"),
        ("check", "pipelines/phase_alpha_rtms_sim.toml"),
        ("check", "pipelines/alpha_tus_sim.toml"),
    ],
    ids=["help", "check", "check-rtms-trigger", "check-tus-trigger"],
)
def test_quick_commands_import_no_numerics(tmp_path, repo, args):
    args = tuple(str(repo / a) if a.endswith(".toml") else a for a in args)
    modules = _loaded(tmp_path, *args)
    heavy = sorted(m for m in modules if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY)))
    # importlib.metadata: pydantic looks for plugins through it when the first model validates (check only)
    if args[0] == "check":
        heavy = [m for m in heavy if not m.startswith("importlib.metadata")]
    assert heavy == []


def test_version_is_looked_up_on_first_use(tmp_path):
    modules = _loaded(tmp_path, "--version")
    assert "importlib.metadata" in modules  # --version is what needs it
    import closedloop

    assert isinstance(closedloop.__version__, str) and closedloop.__version__
    assert "__version__" in dir(closedloop)


#: Counts the metadata scans pydantic's plugin search makes around a ``check``: pydantic 2.14 asks
#: ``entry_points(group="pydantic")``, 2.13 walks ``distributions()``; both read every installed distribution.
PLUGIN_CHILD = """
import importlib.metadata as md, json, sys
calls = []
real_entry_points, real_distributions = md.entry_points, md.distributions
def entry_points(*a, **k):
    calls.append("entry_points:" + str(k.get("group")))
    return real_entry_points(*a, **k)
def distributions(*a, **k):
    calls.append("distributions")
    return real_distributions(*a, **k)
md.entry_points, md.distributions = entry_points, distributions
sys.argv = ["closedloop", "check", sys.argv[2]]
from closedloop.cli import main
code = main()
with open(OUT, "w") as f:
    json.dump({"code": code, "calls": calls}, f)
"""

SEARCHES = {"entry_points:pydantic", "distributions"}


@pytest.mark.parametrize("user_setting", [None, ""], ids=["default", "user-enabled"])
def test_check_skips_pydantic_plugin_search_unless_the_user_asks(tmp_path, repo, user_setting):
    out = tmp_path / "groups.json"
    env = _child_env()
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    if user_setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = user_setting  # "" = no plugin disabled: pydantic searches
    code = f"OUT = {str(out)!r}\n" + PLUGIN_CHILD
    r = subprocess.run(
        [sys.executable, "-c", code, "-", str(repo / "pipelines/alpha_tacs.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["code"] == 0
    searched = SEARCHES & set(result["calls"])
    if user_setting is None:
        assert not searched, result["calls"]  # every installed distribution's metadata read: skipped
    else:
        assert searched, result["calls"]


#: The ``closedloop`` program with an exit handler of the kind an adapter plugin might register.
PROGRAM = """
import atexit, pathlib, sys
atexit.register(pathlib.Path(sys.argv[1]).write_text, "exit handlers ran")
sys.argv = ["closedloop", *sys.argv[2:]]
from closedloop.cli import console
console()
"""


@pytest.mark.parametrize("good", [True, False], ids=["check", "bad-pipeline"])
def test_the_program_ends_with_the_command_code_its_whole_output_and_exit_handlers(tmp_path, repo, good):
    marker = tmp_path / "exit.txt"
    pipeline = repo / "pipelines/alpha_tacs.toml" if good else tmp_path / "missing.toml"
    r = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(marker), "check", str(pipeline)],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=120,
    )
    assert marker.read_text() == "exit handlers ran"  # the teardown still runs what the process registered
    if good:
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        start = lines.index("{")
        shown = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
        assert shown["pipeline"]["name"] == "alpha_tacs"
        table = r.stdout.split("}")[-1]  # the envelope table, printed last, came through the pipe whole
        assert "max_amplitude_mA" in table and "bad_data_timeout_s" in table and lines[-1].startswith("└")
    else:
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith("error: ") and "missing.toml" in r.stderr
