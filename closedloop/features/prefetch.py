"""A cache prefetch hint for numba kernels: start loading memory the kernel will read a little later.

State that is touched once per frame and then not for a long time (the sliding
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
from numba.extending import intrinsic

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
