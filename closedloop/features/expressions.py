"""Feature expressions at run time: compiled postfix code run by a numba stack machine, once per frame.

:func:`~closedloop.config.expressions.compile_expressions` checks and compiles
the ``[features.expressions]`` of a pipeline (pure Python, at ``check`` time
too); :func:`pack_programs` lays the programs out as one int64 array (each:
output column, number of operations, then ``(op, arg)`` pairs) and one float64
array of constants, and :func:`run_programs` evaluates them over a frame's
values in place, allocating nothing. Expressions see the features' values in
their physical units (band powers in µV², not log10; see docs/pain-markers.md).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.expressions import (
    ABS,
    ADD,
    DIV,
    EXP,
    LOG,
    LOG10,
    MUL,
    NEG,
    POW,
    PUSH_CONST,
    PUSH_FEATURE,
    SQRT,
    SUB,
    Program,
)


def pack_programs(programs: list[Program]) -> tuple[np.ndarray, np.ndarray, int]:
    """Return ``(code, constants, stack size)`` of compiled programs, in their (evaluation) order.

    ``code`` holds, per program: its output column, its operation count, then the
    ``(op, arg)`` pairs (a PUSH_CONST's arg indexes ``constants``).
    """
    code: list[int] = []
    consts: list[float] = []
    depth = 1
    for prog in programs:
        code += [prog.column, len(prog.code)]
        for op, arg in prog.code:
            code += [op, arg + len(consts) if op == PUSH_CONST else arg]
        consts += list(prog.constants)
        depth = max(depth, prog.depth)
    return np.array(code, dtype=np.int64), np.array(consts, dtype=np.float64), depth


@numba.njit(cache=True, nogil=True, inline="always")
def _apply(op, a, b):
    if op == ADD:
        return a + b
    if op == SUB:
        return a - b
    if op == MUL:
        return a * b
    if op == DIV:
        return a / b if b != 0.0 else np.nan
    if op == POW:
        if a < 0.0 and b != math.floor(b):
            return np.nan
        if a == 0.0 and b < 0.0:
            return np.inf
        return a**b
    return np.nan


@numba.njit(cache=True, nogil=True, inline="always")
def _unary(op, a):
    if op == NEG:
        return -a
    if op == LOG:
        return math.log(a) if a > 0.0 else (-np.inf if a == 0.0 else np.nan)
    if op == LOG10:
        return math.log10(a) if a > 0.0 else (-np.inf if a == 0.0 else np.nan)
    if op == ABS:
        return abs(a)
    if op == SQRT:
        return math.sqrt(a) if a >= 0.0 else np.nan
    if op == EXP:
        return math.exp(a) if a < 709.0 else np.inf
    return np.nan


@numba.njit(cache=True, nogil=True)
def run_programs(code, start, n_programs, consts, stack, values):
    """Run ``n_programs`` programs of ``code`` (from ``start``) over ``values``; each writes its column.

    ``values`` holds every feature's value (expressions' columns included, written in order);
    ``stack`` is scratch of at least the programs' stack size.
    """
    pos = start
    for _ in range(n_programs):
        col = code[pos]
        n_ops = code[pos + 1]
        pos += 2
        top = 0
        for _op in range(n_ops):
            op = code[pos]
            arg = code[pos + 1]
            pos += 2
            if op == PUSH_FEATURE:
                stack[top] = values[arg]
                top += 1
            elif op == PUSH_CONST:
                stack[top] = consts[arg]
                top += 1
            elif op >= NEG:
                stack[top - 1] = _unary(op, stack[top - 1])
            else:
                stack[top - 2] = _apply(op, stack[top - 2], stack[top - 1])
                top -= 1
        values[col] = stack[0]
