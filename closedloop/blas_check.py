"""numba's BLAS check, made without importing scipy.linalg: ~0.15-0.25 s off every session's start.

When numba loads or compiles its first kernel in a process it imports its
NumPy implementations, and one of them (``numba.np.arraymath``) asks at import
whether a BLAS is there by importing ``scipy.linalg.cython_blas``. That
imports all of ``scipy.linalg`` and, through scipy's array-API layer, NumPy's
lazily loaded submodules (``numpy.f2py`` among them): 0.15-0.25 s here, spent
in the warm-up that ends before the first frame, by every pipeline, although
only ``welch`` with several segments calls BLAS (``np.dot`` in its kernel).

Importing this module (:mod:`closedloop.kernel_cache` does, before any
closedloop kernel) imports ``numba.np.arraymath`` with that check answered by
whether ``scipy.linalg`` is installed, found without importing it. numba's
answer is the same (scipy is a dependency of closedloop), and nothing else
changes: numba's own ``ensure_blas`` is put back at once, and it still imports
``scipy.linalg`` (and checks its LAPACK integer width) when a kernel that calls
BLAS is compiled; a cached one imports it at its first call, in the warm-up.

If numba's module looks different from what this expects, or ``numba.np.arraymath``
is already imported, nothing is changed and numba checks as it always does.
"""

from __future__ import annotations

import importlib.util
import sys

from closedloop import vector_width  # noqa: F401  (numba's target features, set before numba's CPU target exists)


def defer_blas_import() -> bool:
    """Import ``numba.np.arraymath`` with its BLAS check made by finding scipy.linalg; return whether it was."""
    if "numba.np.arraymath" in sys.modules:
        return False
    try:
        from numba.np import linalg
    except ImportError:  # a numba laid out differently: its own check runs
        return False
    ensure_blas = getattr(linalg, "ensure_blas", None)
    if not callable(ensure_blas) or importlib.util.find_spec("scipy.linalg") is None:
        return False

    def installed() -> None:
        """scipy.linalg is installed: numba's own check imports it where BLAS is used."""

    linalg.ensure_blas = installed
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = ensure_blas
    if getattr(arraymath, "ensure_blas", None) is installed:  # its own name for it, bound at import
        arraymath.ensure_blas = ensure_blas
    return getattr(arraymath, "_HAVE_BLAS", None) is True


DEFERRED = defer_blas_import()
