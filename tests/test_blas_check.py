"""numba's BLAS check without scipy.linalg: a session's warm-up skips the import, BLAS kernels still get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The live warm-up of the README's pipeline, then a new kernel that calls BLAS; what was imported when.
CHILD = textwrap.dedent(
    """
    import json, sys
    import numba, numpy as np
    from closedloop.config import load_pipeline
    from closedloop.live.warmup import guess_channels
    from closedloop.pipeline import Pipeline
    from closedloop import blas_check
    import numba.np.arraymath as arraymath, numba.np.linalg as linalg

    resolved = load_pipeline(sys.argv[1])
    Pipeline(resolved, guess_channels(resolved)).warmup()
    after_warmup = "scipy.linalg" in sys.modules

    @numba.njit
    def product(a, b):
        return np.dot(a, b)

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 4))
    got = product(a, b)
    print(json.dumps({
        "deferred": blas_check.DEFERRED,
        "have_blas": arraymath._HAVE_BLAS,
        "restored": linalg.ensure_blas.__name__ == "ensure_blas" and arraymath.ensure_blas is linalg.ensure_blas,
        "scipy_linalg_after_warmup": after_warmup,
        "scipy_linalg_after_blas_kernel": "scipy.linalg" in sys.modules,
        "max_error": float(np.max(np.abs(got - a @ b))),
    }))
    """
)


def _child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_warm_up_does_not_import_scipy_linalg_and_a_blas_kernel_still_computes_with_it():
    pipeline = str(REPO / "pipelines" / "alpha_tacs.toml")
    _child(CHILD, pipeline)  # warm caches, as a session's start has them (a cold one designs filters with scipy)
    got = _child(CHILD, pipeline)
    assert got["deferred"] and got["have_blas"] and got["restored"]  # numba's answer, and its own check back
    assert not got["scipy_linalg_after_warmup"]  # the 0.15-0.25 s import is not on the way to the first frame
    assert got["scipy_linalg_after_blas_kernel"]  # numba's own check imported it where BLAS is used
    assert got["max_error"] < 1e-12


def test_numba_checks_as_always_when_its_numpy_implementations_were_loaded_first():
    code = (
        "import json, sys, numba.np.arraymath\n"
        "from closedloop import blas_check\n"
        "print(json.dumps({'deferred': blas_check.DEFERRED, 'scipy_linalg': 'scipy.linalg' in sys.modules}))\n"
    )
    got = _child(code)
    assert got == {"deferred": False, "scipy_linalg": True}
