"""closedloop installed from its wheel works outside the repository: profiles, pipelines, a session.

The wheel is built from this checkout and installed (without dependencies)
into a throwaway virtual environment that sees the running environment's
packages; the commands then run from an empty folder, with no PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(args: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict, Path, Path]:
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLOSEDLOOP_DEVICES")}
    _run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(base / "dist")], base, env)
    (wheel,) = (base / "dist").glob("closedloop-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], base, env)
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base, env).stdout
    # the throwaway environment sees this one's packages (numpy, numba, mne, ...), after its own
    Path(purelib.strip(), "zz_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], base, env)
    home = base / "home"  # no user profiles
    env = {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    exe = venv / ("Scripts" if os.name == "nt" else "bin") / "closedloop"
    work = base / "work"
    work.mkdir()
    return exe, env, work, py


def test_installed_commands_find_shipped_profiles_and_pipelines(installed):
    exe, env, work, py = installed
    where = _run([str(py), "-c", "import closedloop; print(closedloop.__file__)"], work, env).stdout.strip()
    assert str(REPO) not in where  # the installed copy, not the checkout
    devices = _run([str(exe), "devices"], work, {**env, "COLUMNS": "250"}).stdout
    shipped = Path(where).parent / "devices"
    assert "[shipped with closedloop]" in devices and str(shipped) in devices
    assert "sim_tacs" in devices and "Bikson et al. 2016" in devices
    check = _run([str(exe), "check", "alpha_tacs"], work, env).stdout
    assert f"device profile: {shipped / 'sim_tacs.toml'}" in check


def test_installed_run_of_a_shipped_pipeline(installed):
    exe, env, work, _ = installed
    out = work / "X"
    r = _run([str(exe), "run", "alpha_tacs", "--duration", "3", "--out", str(out), "-q"], work, env)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] > 0 and summary["stop_reason"] == "duration reached"
    assert (out / "session.xdf").stat().st_size > 0
    assert "stop reason" in r.stdout and "summary.json" in r.stdout


def test_init_from_the_installed_package(installed):
    exe, env, work, _ = installed
    _run([str(exe), "init", "study"], work, env)
    check = _run([str(exe), "check", "study/pipelines/alpha_tacs.toml"], work, env).stdout
    assert f"device profile: {work / 'study' / 'devices' / 'sim_tacs.toml'}" in check


def test_an_editable_install_maps_the_shipped_folders_to_the_repository(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLOSEDLOOP_DEVICES")}
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, env).stdout
    Path(purelib.strip(), "zz_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", "-e", str(REPO)], tmp_path, env)
    code = (
        "from closedloop.config.profile import packaged_folder; "
        "print(packaged_folder('devices')); print(packaged_folder('pipelines'))"
    )
    folders = _run([str(py), "-c", code], tmp_path, env).stdout.split()
    assert folders == [str(REPO / "devices"), str(REPO / "pipelines")]  # the one copy, not a second


def test_the_wheel_ships_the_dashboard_page(installed):
    exe, env, work, py = installed
    code = "import closedloop.live.dashboard.server as s; print(s.STATIC); print(s.plotly_js())"
    static, plotly = _run([str(py), "-c", code], work, env).stdout.split()
    assert str(REPO) not in static
    for name in ("index.html", "app.js", "style.css"):
        assert (Path(static) / name).is_file(), name
    assert Path(plotly).is_file()  # served from the installed plotly package, not from the internet
