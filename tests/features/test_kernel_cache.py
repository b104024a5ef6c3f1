"""numba's on-disk cache of closedloop's kernels follows every kernel source, not only the defining file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from closedloop import kernel_cache

#: A fresh process: load (or compile) telemetry's cached kernel and report numba's cache hits and misses.
#: ``digest`` stands for the kernel sources: "real" keeps them; anything else is what a changed
#: callee module would give (the process is told its digest before any kernel module is imported).
CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import closedloop.kernel_cache as kc
    if sys.argv[1] != "real":
        kc._package_digest = lambda: sys.argv[1]
    from closedloop.session import telemetry
    n, mean, m2 = np.zeros(3), np.zeros(3), np.zeros(3)
    telemetry._welford_add(n, mean, m2, np.arange(3.0))
    stats = telemetry._welford_add.stats
    print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
                      "locator": type(telemetry._welford_add._cache._impl.locator).__name__}))
    """
)


def _load_kernel(cache_dir: Path, digest: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, digest], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_change_in_any_kernel_source_recompiles_a_cached_kernel_and_nothing_else_does(tmp_path):
    first = _load_kernel(tmp_path, "real")
    assert first["locator"].startswith("ClosedloopStamped")
    assert first["misses"] == 1 and first["hits"] == 0  # an empty cache: compiled, then saved
    again = _load_kernel(tmp_path, "real")
    assert again["hits"] == 1 and again["misses"] == 0  # unchanged sources: loaded from disk
    changed = _load_kernel(tmp_path, "a callee module changed")
    assert changed["misses"] == 1 and changed["hits"] == 0  # the stale machine code is not used


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_digest_covers_files_defining_compiled_code_and_only_those(tmp_path):
    kernel = "import numba\n\n\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n"
    files = {
        "features/a.py": kernel,
        "sub/b.py": "from numba.extending import intrinsic\n\n@intrinsic\ndef g(typingctx):\n    pass\n",
        "sub/j.py": "import numba\n\n\n@numba.jit(nopython=True)\ndef h(x):\n    return x\n",
        "cli.py": "import numba  # mentions numba, defines nothing compiled\n",
    }
    pkg = _package(tmp_path / "pkg", files)
    base = kernel_cache.kernel_sources_digest(pkg)
    assert kernel_cache.kernel_sources_digest(pkg) == base  # stable
    (pkg / "cli.py").write_text("import numba\nprint('changed')\n")
    (pkg / "README.py").write_text("x = 1\n")
    assert kernel_cache.kernel_sources_digest(pkg) == base
    (pkg / "sub/b.py").write_text(files["sub/b.py"] + "# a comment\n")
    assert kernel_cache.kernel_sources_digest(pkg) != base
    (pkg / "sub/b.py").write_text(files["sub/b.py"])
    (pkg / "sub/j.py").write_text(files["sub/j.py"] + "# a comment\n")
    assert kernel_cache.kernel_sources_digest(pkg) != base
    (pkg / "sub/j.py").write_text(files["sub/j.py"])
    assert kernel_cache.kernel_sources_digest(pkg) == base
    (pkg / "features/a.py").rename(pkg / "features/c.py")  # same content, another module
    assert kernel_cache.kernel_sources_digest(pkg) != base


@pytest.mark.parametrize(
    "module",
    ["closedloop.features.packed", "closedloop.features.quality", "closedloop.preprocess", "closedloop.synthetic.eeg"],
)
def test_every_cached_kernel_of_a_module_is_stamped(module):
    import importlib

    from numba.core.registry import CPUDispatcher

    assert kernel_cache.INSTALLED
    mod = importlib.import_module(module)
    kernels = [v for v in vars(mod).values() if isinstance(v, CPUDispatcher) and v.__module__ == module]
    assert kernels
    for k in kernels:
        assert k._cache._impl.locator.get_source_stamp()[1:] == ("closedloop kernels", kernel_cache._package_digest())


def test_every_module_defining_a_cached_kernel_imports_the_stamp_first():
    import re

    pattern = re.compile(r"^@(numba\.)?(njit|jit|intrinsic)\b", re.MULTILINE)
    late = []
    for path in sorted(kernel_cache.PACKAGE.rglob("*.py")):
        text = path.read_text()
        first = pattern.search(text)
        if first is None or path.name == "kernel_cache.py":
            continue
        stamp = text.find("from closedloop import kernel_cache")
        if stamp < 0 or stamp > first.start():
            late.append(str(path.relative_to(kernel_cache.PACKAGE)))
    assert late == []
