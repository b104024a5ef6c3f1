"""Calling a numba kernel with bound state through its compiled entry point, past the dispatcher.

numba's dispatcher types every argument on every call (~65 ns each here). A
kernel bound to its state (``functools.partial(kernel, *state)``) and always
called with arguments of the same types can call the machine code compiled
for those types directly. The caller guarantees the types: the entry point
converts its arguments to the compiled signature without checking them
(layout included), so a C-contiguous float64 array must stay exactly that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba


def entry_point(kernel: Callable, *args) -> Callable:
    """Return ``kernel`` (a numba dispatcher with bound state) calling its compiled entry point for these types.

    Falls back to ``kernel`` itself when it is not a bound dispatcher or that exact signature was not compiled.
    """
    overloads = getattr(kernel.func, "overloads", None) if isinstance(kernel, functools.partial) else None
    if overloads is None or kernel.keywords:
        return kernel
    compiled = overloads.get(tuple(numba.typeof(a) for a in (*kernel.args, *args)))
    if compiled is None:
        return kernel
    return functools.partial(compiled.entry_point, *kernel.args)
