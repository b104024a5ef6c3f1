"""numba intrinsics for the hot kernels: array views without numba's reshape helper, cache prefetch, fused multiply-add.

:func:`carve` returns ``base[offset : offset + size].reshape(shape)`` for a
C-contiguous 1-d ``base`` without the C helper numba's ``reshape`` calls for
every view (the packed state of :mod:`~closedloop.features.packed` and the
quality monitor's is viewed ~15 times per step).

Prefetch: state that is touched once per frame and then not for a long time (the sliding
DFT's snapshot ring: ``window / hop`` slots of ``bins x channels`` values,
~1.3 MB at 64 channels) is out of the core's caches by the time it is read
again. Asking for it at the start of a step lets those loads overlap with the
arithmetic that comes first. A hint only: results are unchanged. At most the
first 12 kB of an array are asked for (:data:`PREFETCH_BYTES`): each prefetch
that misses holds one of the core's few line-fill buffers until its line
arrives, so a longer burst stalls the kernel instead of overlapping with it —
at 256 channels (49-kB slots) prefetching whole slots made the step ~1 µs
slower than prefetching none (Xeon, ``benchmarks/bench_features.py``), while
12 kB keeps the gain measured at 64 channels, whose slots are that size; the
hardware prefetchers follow on from there.

:func:`muladd` is ``a * b + c`` rounded once (IEEE 754 fused multiply-add)
on CPUs with FMA instructions, the ones numba compiles for
(:data:`FUSED`), and rounded twice (``a * b`` then ``+ c``) elsewhere.
numba compiles without fast-math, so LLVM never contracts a multiply and an
add on its own: only an explicit fused operation is one. A fused result is
correctly rounded, so it is the same on every CPU that has the instruction
(x86-64 since 2013, every ARM64 core) and at any vector width; frames from a
CPU without FMA differ from those at rounding level (~1e-16 relative), and
each CPU's frames stay bit-identical for any chunking and between a live
session and its replay.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed, impl_ret_untracked
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)


def _compiles_fma() -> bool:
    """Whether the CPU numba compiles for has FMA: numba's feature setting if given, else the host's.

    On 64-bit ARM, FMA is part of the base instruction set (LLVM names no feature for it).
    """
    import platform

    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return "+fma" in features.split(",")


#: whether :func:`muladd` is one fused (singly rounded) multiply-add in this process
FUSED = _compiles_fma()

_LINE = 8  # float64 / int64 values per 64-byte cache line

#: bytes of an array that :func:`prefetch_read` and :func:`prefetch_write` ask for, at most (192 lines)
PREFETCH_BYTES = 12 * 1024


@intrinsic
def _prefetch_at(typingctx, arr, index, write):
    """Emit ``llvm.prefetch`` for the address of ``arr.ravel()[index]`` (C-contiguous ``arr``)."""
    if not isinstance(arr, types.Array) or not isinstance(write, types.IntegerLiteral | types.BooleanLiteral):
        return None
    rw = int(write.literal_value)
    sig = types.void(arr, index, write)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, 0 read / 1 write, locality 3 = keep in all cache levels, 1 = data cache)
        builder.call(fn, [ptr, ir.Constant(i32, rw), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True, inline="always")
def prefetch_read(a):
    """Hint that C-contiguous ``a`` (its first :data:`PREFETCH_BYTES`) will be read soon."""
    for i in range(0, min(a.size, PREFETCH_BYTES // a.itemsize), _LINE):
        _prefetch_at(a, i, 0)


@numba.njit(cache=True, nogil=True, inline="always")
def prefetch_write(a):
    """Hint that C-contiguous ``a`` (its first :data:`PREFETCH_BYTES`) will be written soon."""
    for i in range(0, min(a.size, PREFETCH_BYTES // a.itemsize), _LINE):
        _prefetch_at(a, i, 1)


@intrinsic
def muladd(typingctx, a, b, c):
    """Return ``a * b + c`` for float64 values: fused (rounded once) if :data:`FUSED`, else rounded twice."""
    if not all(isinstance(t, types.Float) and t.bitwidth == 64 for t in (a, b, c)):
        return None
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        if FUSED:
            return builder.fma(*args)
        return builder.fadd(builder.fmul(args[0], args[1]), args[2])

    return sig, codegen


@intrinsic
def borrow(typingctx, arr):
    """Return ``arr`` without its reference count: no view of the result costs an atomic operation.

    numba counts references to an array's memory, and every view it makes (``a[i]``, a slice) adds one and
    drops it again: two atomic instructions, ~20 cycles each; a step of the fused kernels makes a few hundred
    (~1.7 µs of a ~22 µs step at 256 channels). The result points at the same memory with no owner
    (a null ``meminfo``), so its views are counted by no one. Only for arrays that outlive the call
    (arguments) and for views that stay inside it: never return or store one.
    """
    if not isinstance(arr, types.Array):
        return None
    sig = arr(arr)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        return impl_ret_untracked(context, builder, signature.return_type, ary._getvalue())

    return sig, codegen


@intrinsic
def _view(typingctx, base, offset, shape):
    """Return the C-contiguous view with ``shape`` of ``base`` from ``offset`` on (no bounds check: see carve)."""
    if not (isinstance(base, types.Array) and base.ndim == 1 and base.layout == "C"):
        return None
    if not (isinstance(shape, types.UniTuple) and isinstance(shape.dtype, types.Integer)):
        return None
    ndim = shape.count
    sig = base.copy(ndim=ndim, layout="C")(base, offset, shape)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dims = cgutils.unpack_tuple(builder, args[2], ndim)
        strides = [src.itemsize]
        for d in dims[:0:-1]:  # the last dimension's stride is the item size; each one before, times the next
            strides.insert(0, builder.mul(strides[0], d))
        view = context.make_array(signature.return_type)(context, builder)
        populate_array(
            view,
            data=builder.gep(src.data, [args[1]]),
            shape=dims,
            strides=strides,
            itemsize=src.itemsize,
            meminfo=src.meminfo,
            parent=src.parent,
        )
        return impl_ret_borrowed(context, builder, signature.return_type, view._getvalue())

    return sig, codegen


@numba.njit(cache=True, nogil=True, inline="always")
def carve(base, offset, shape):
    """Return ``base[offset : offset + prod(shape)].reshape(shape)`` (C-contiguous 1-d ``base``), a view."""
    size = 1
    for d in shape:
        if d < 0:
            raise IndexError("negative dimension")
        size *= d
    if offset < 0 or offset + size > base.shape[0]:
        raise IndexError("view out of its buffer")
    return _view(base, offset, shape)
