"""512-bit vectors for closedloop's kernels on CPUs with AVX-512, where LLVM's default is 256.

numba compiles for the host CPU, but for the server CPUs with AVX-512 LLVM's
tuning includes ``prefer-256-bit``: loops are vectorised four float64 at a
time, not eight. That default dates from the Skylake-SP generation, whose
cores lowered their clock while running 512-bit arithmetic. The extractor's
hot loops (the sliding DFT's sums, the EMG filter cascade, the window
statistics, the vectorised log) are arithmetic over channels; with 512-bit
vectors the whole step with every quality check takes ~31 instead of ~39 µs
at 256 channels, and ~8.9 instead of ~9.8 µs at 64 (Xeon, Emerald Rapids;
``benchmarks/bench_features.py`` measures it).

Results do not change. The vectors run across channels: each channel's
arithmetic, and its order, is the same at any width (numba compiles without
fast-math, so nothing is reassociated, and a multiply and an add are fused only
where a kernel asks for it with :func:`~closedloop.features.intrinsics.muladd`,
whose fused result is the same at any width), and frames are bit-identical at
either width (``tests/features/test_vector_width.py``).

numba has one setting for this, for the whole process:
``numba.config.CPU_FEATURES``, read once, when numba's CPU target is created
(at the process's first ``@numba.njit``). Importing this module — every
closedloop kernel module does, through :mod:`closedloop.kernel_cache`, before
its first kernel — sets it to the host's features plus ``-prefer-256-bit``,
except when

- the CPU has no AVX-512 (nothing to gain), or is of the Skylake-SP generation
  (LLVM's ``skylake-avx512``, ``cascadelake``, ``cooperlake``: the clock drop);
- ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` is set: your choice wins;
- ``CLOSEDLOOP_VECTOR_BITS=256`` is set;
- numba's CPU target already exists (numba code was compiled in this process
  before closedloop's kernels were imported): nothing is changed, and
  closedloop's kernels run at LLVM's default width.

The setting then applies to every numba function the process compiles, yours
included. They compute the same results, except ``fastmath`` reductions,
whose summation order follows the vector width. :data:`STATE` says what was
decided and why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: CPUs (LLVM's names) with AVX-512 whose cores slow their clock for 512-bit arithmetic
SLOWED_BY_512 = frozenset({"skylake-avx512", "cascadelake", "cooperlake"})


def wide_features(cpu_name: str, features: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """Return ``(numba CPU features or None to leave numba's default, why)``.

    Parameters
    ----------
    cpu_name : str
        LLVM's name of the host CPU (``llvmlite.binding.get_host_cpu_name()``).
    features : str
        numba's feature string for the host (``+avx512f,+fma,...``).
    environ : Mapping
        The environment (``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``, ``CLOSEDLOOP_VECTOR_BITS``).
    """
    bits = environ.get("CLOSEDLOOP_VECTOR_BITS", "").strip()
    if bits not in ("", "256", "512"):
        return None, f"CLOSEDLOOP_VECTOR_BITS={bits!r} is not 256 or 512: LLVM's default"
    if bits == "256":
        return None, "256 bits: CLOSEDLOOP_VECTOR_BITS=256"
    for name in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):
        if environ.get(name):
            return None, f"numba's settings: {name} is set"
    if "+avx512f" not in features.split(","):
        return None, f"LLVM's default: {cpu_name} has no AVX-512"
    if cpu_name in SLOWED_BY_512:
        return None, f"256 bits: {cpu_name} lowers its clock for 512-bit arithmetic"
    return f"{features},-prefer-256-bit", f"512 bits on {cpu_name}"


def _configure() -> str:
    """Set numba's CPU features for 512-bit vectors if :func:`wide_features` says so; return what was done."""
    import llvmlite.binding as llvm
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    from numba.core.registry import cpu_target

    if "_toplevel_target_context" in vars(cpu_target):  # numba's CPU target (and its features) already exist
        return "LLVM's default: numba compiled code in this process before closedloop's kernels were imported"
    features, why = wide_features(llvm.get_host_cpu_name(), get_host_cpu_features(), os.environ)
    if features is not None:
        config.CPU_FEATURES = features
    return why


#: what was decided for this process, and why (recorded by the benchmarks)
STATE = _configure()
