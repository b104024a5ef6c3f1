"""Two numba intrinsics for the hot kernels: array views without numba's reshape helper, and cache prefetch.

:func:`carve` returns ``base[offset : offset + size].reshape(shape)`` for a
C-contiguous 1-d ``base`` without the C helper numba's ``reshape`` calls for
every view (the packed state of :mod:`~closedloop.features.packed` and the
quality monitor's is viewed ~15 times per step).

Prefetch: state that is touched once per frame and then not for a long time (the sliding
DFT's snapshot ring: ``window / hop`` slots of ``bins x channels`` values,
~1.3 MB at 64 channels) is out of the core's caches by the time it is read
again. Asking for it at the start of a step lets those loads overlap with the
arithmetic that comes first. A hint only: results are unchanged.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)

_LINE = 8  # float64 / int64 values per 64-byte cache line


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
    """Hint that C-contiguous ``a`` will be read soon."""
    for i in range(0, a.size, _LINE):
        _prefetch_at(a, i, 0)


@numba.njit(cache=True, nogil=True, inline="always")
def prefetch_write(a):
    """Hint that C-contiguous ``a`` will be written soon."""
    for i in range(0, a.size, _LINE):
        _prefetch_at(a, i, 1)


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
