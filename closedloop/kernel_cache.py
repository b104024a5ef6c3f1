"""numba's on-disk cache for closedloop's kernels, invalidated when *any* kernel source changes.

numba keys a cached kernel on the source of the file that defines it, and
nothing else. A kernel that calls or inlines kernels of other modules (the
fused extractor step of :mod:`closedloop.features.packed` runs the band-power,
quality and derived-feature kernels; the quality monitor inlines
:func:`closedloop.preprocess.filters.biquad`) would keep the machine code of
the *old* callee after that callee's module changed: in a working tree, tests
and benchmarks would then silently run code that is no longer in the files.

Importing this module (every module that defines a cached kernel does so
before its first kernel) adds to the source stamp of every closedloop kernel
a digest of all of closedloop's kernel sources (the files defining compiled
functions). Changing any of them recompiles every closedloop kernel once;
changing any other file (the CLI, the config) does not. An installed wheel's
files never change, so its cache behaves as before. Kernels outside the
package are left to numba. If numba's cache machinery ever looks different
from what this expects, nothing is changed and numba's own rule applies.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from numba.core import caching

from closedloop import (
    blas_check,  # noqa: F401  (numba's BLAS check, without importing scipy.linalg)
    vector_width,  # noqa: F401  (numba's target features, set before the first kernel)
)

PACKAGE = Path(__file__).resolve().parent

#: a line that defines compiled code: ``@numba.njit(...)``, ``@numba.jit``, ``@njit``, ``@intrinsic``
_DEFINES_KERNEL = re.compile(rb"^[ \t]*@(?:numba\.)?(?:njit|jit|intrinsic)\b", re.MULTILINE)


def kernel_sources_digest(package: Path = PACKAGE) -> str:
    """Return the SHA-256 of every ``.py`` file under ``package`` that defines compiled code (path and content).

    Parameters
    ----------
    package : Path
        The package directory (default: closedloop's).
    """
    digest = hashlib.sha256()
    for path in sorted(_sources(package)):
        text = path.read_bytes()
        if (b"jit" in text or b"intrinsic" in text) and _DEFINES_KERNEL.search(text):  # the regex only where it may hit
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(text).digest())
    return digest.hexdigest()


def _sources(package: Path) -> list[Path]:
    """Return the ``.py`` files under ``package``, not looking into ``__pycache__`` (numba's cache is there)."""
    found = []
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        found.extend(Path(folder, name) for name in names if name.endswith(".py"))
    return found


@functools.cache
def _package_digest() -> str:
    return kernel_sources_digest(PACKAGE)


def _in_package(py_file: object) -> bool:
    try:
        return Path(str(py_file)).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


def _stamped(locator: type) -> type:
    """Return a subclass of the numba cache ``locator`` whose source stamp also covers closedloop's kernels."""

    class Stamped(locator):  # type: ignore[misc, valid-type]
        _closedloop_stamped = True

        def get_source_stamp(self):
            own = super().get_source_stamp()
            if _in_package(getattr(self, "_py_file", None)):
                return (own, "closedloop kernels", _package_digest())
            return own

    Stamped.__name__ = Stamped.__qualname__ = f"ClosedloopStamped{locator.__name__}"
    return Stamped


def install() -> bool:
    """Wrap numba's cache locators (once); return whether closedloop's kernels are now stamped this way."""
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # older numba: _CacheImpl
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list) or not all(
        isinstance(c, type) and hasattr(c, "get_source_stamp") for c in classes
    ):
        return False
    classes[:] = [c if getattr(c, "_closedloop_stamped", False) else _stamped(c) for c in classes]
    return True


INSTALLED = install()
