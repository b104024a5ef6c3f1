"""One numba call per extractor step: every kernel's state packed into two buffers.

numba charges each call ~40 ns per argument just to unbox it (more through the
dispatcher), and a step of band power + quality + derived features passes
~30 arrays and scalars: ~1.5 µs of a ~15 µs step at 64 channels. Here the
bound arguments of the three kernels are copied into one float64 buffer ``F``
and one int64 buffer ``I`` (scalars too); a layout table ``L`` says where each
one lives, and a fused kernel per band-power method rebuilds the views and
calls the three kernels in turn — with six arguments. The objects that own the
state (method, quality monitor, deriver, extractor) are re-pointed at views of
the same memory, so they keep reading and writing their state as before.
Arithmetic is untouched: frames are bit-identical to the three separate calls.

The fused kernels borrow their arrays (:func:`~closedloop.features.intrinsics.borrow`):
numba would otherwise count a reference for every view a step takes of them
(rows, planes, the rebuilt views here), two atomic instructions each, a few
hundred per step (~1.7 µs of a 256-channel step: a ``perf`` profile put 7.7 %
of its time in numba's ``NRT_incref``/``NRT_decref``). The caller holds the
arrays for the whole call and no view outlives it.

Used for the ``sliding_dft`` and ``iir`` methods without PAF (``welch`` keeps
its aligned buffers, whose addresses may steer BLAS; PAF runs between band
power and derivation).
"""

from __future__ import annotations

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.features.derived import _derive_kernel
from closedloop.features.iir import _iir_kernel
from closedloop.features.intrinsics import borrow, carve
from closedloop.features.quality import _quality_kernel
from closedloop.features.sliding_dft import _sdft_kernel

_W = 5  # layout entries per argument: offset, then up to four dimensions


@numba.njit(cache=True, nogil=True, inline="always")
def _f1(F, L, j):
    o = L[_W * j]
    return F[o : o + L[_W * j + 1]]


@numba.njit(cache=True, nogil=True, inline="always")
def _f2(F, L, j):
    o, a, b = L[_W * j], L[_W * j + 1], L[_W * j + 2]
    return carve(F, o, (a, b))


@numba.njit(cache=True, nogil=True, inline="always")
def _f3(F, L, j):
    o, a, b, c = L[_W * j], L[_W * j + 1], L[_W * j + 2], L[_W * j + 3]
    return carve(F, o, (a, b, c))


@numba.njit(cache=True, nogil=True, inline="always")
def _f4(F, L, j):
    o, a, b, c, d = L[_W * j], L[_W * j + 1], L[_W * j + 2], L[_W * j + 3], L[_W * j + 4]
    return carve(F, o, (a, b, c, d))


@numba.njit(cache=True, nogil=True, inline="always")
def _i1(I, L, j):  # noqa: E741
    o = L[_W * j]
    return I[o : o + L[_W * j + 1]]


@numba.njit(cache=True, nogil=True, inline="always")
def _i2(I, L, j):  # noqa: E741
    o, a, b = L[_W * j], L[_W * j + 1], L[_W * j + 2]
    return carve(I, o, (a, b))


@numba.njit(cache=True, nogil=True, inline="always")
def _post(F, I, L, j, k, x, stamps, first_index, out_row):  # noqa: E741
    """Quality (arguments ``j`` ...) then, if frames were completed, derived features (``j + 3`` ...).

    A single frame's row is also written to ``out_row`` when that is not empty (the frame's own buffer).
    """
    _quality_kernel(_i1(I, L, j), _f1(F, L, j + 1), _i1(I, L, j + 2), x, stamps)
    if k > 0:
        d = j + 3
        _derive_kernel(
            _i1(I, L, d),
            _f1(F, L, d + 1),
            _i2(I, L, d + 2),
            _i2(I, L, d + 3),
            _f2(F, L, d + 4),
            _f3(F, L, d + 5),
            _f3(F, L, d + 6),
            _i1(I, L, d + 7),
            _f2(F, L, d + 8),
            _i1(I, L, d + 9),
            k,
            first_index,
        )
        if k == 1 and out_row.shape[0] > 0:
            rows = _f2(F, L, d + 8)
            for f in range(out_row.shape[0]):
                out_row[f] = rows[0, f]


@numba.njit(cache=True, nogil=True)
def step_sliding_dft(F, I, L, x, stamps, first_index, out_row):  # noqa: E741
    """Return the frames completed: sliding-DFT band power, quality, derived features in one call."""
    F, I, L, x, stamps, out_row = borrow(F), borrow(I), borrow(L), borrow(x), borrow(stamps), borrow(out_row)  # noqa: E741
    k = _sdft_kernel(
        _i1(I, L, 0),
        _i1(I, L, 1),
        _f3(F, L, 2),
        _f2(F, L, 3),
        _f2(F, L, 4),
        _f2(F, L, 5),
        _f3(F, L, 6),
        _f1(F, L, 7),
        x,
        stamps,
    )
    _post(F, I, L, 8, k, x, stamps, first_index, out_row)
    return k


@numba.njit(cache=True, nogil=True)
def step_iir(F, I, L, x, stamps, first_index, out_row):  # noqa: E741
    """Return the frames completed: IIR band power, quality, derived features in one call."""
    F, I, L, x, stamps, out_row = borrow(F), borrow(I), borrow(L), borrow(x), borrow(stamps), borrow(out_row)  # noqa: E741
    k = _iir_kernel(
        I[L[0]],
        _f3(F, L, 1),
        _f4(F, L, 2),
        _i1(I, L, 3),
        I[L[_W * 4]],
        I[L[_W * 5]],
        F[L[_W * 6]],
        I[L[_W * 7]] != 0,
        _f2(F, L, 8),
        _f2(F, L, 9),
        _f3(F, L, 10),
        _f2(F, L, 11),
        _i1(I, L, 12),
        _f1(F, L, 13),
        _f3(F, L, 14),
        _f1(F, L, 15),
        x,
        stamps,
    )
    _post(F, I, L, 16, k, x, stamps, first_index, out_row)
    return k


def pack(args: list, owners: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy ``args`` (arrays and scalars, in kernel order) into ``F``, ``I`` and the layout ``L``.

    Every ndarray attribute of ``owners`` that lies inside one of the packed
    arrays is re-pointed at the same bytes of the new buffers. Returns
    ``(F, I, L)``.
    """
    n_f = n_i = 0
    places = []
    seen: dict[int, tuple] = {}  # an array bound to two kernels (band powers, quality flags) is packed once
    for a in args:
        if isinstance(a, np.ndarray) and id(a) in seen:
            places.append(seen[id(a)])
            continue
        if isinstance(a, np.ndarray):
            if not a.flags.c_contiguous or a.dtype not in (np.float64, np.int64):
                raise TypeError(f"cannot pack a {a.dtype} array that is not C-contiguous float64/int64")
            if a.dtype == np.float64:
                places.append(("F", n_f, a))
                n_f += a.size
            else:
                places.append(("I", n_i, a))
                n_i += a.size
            seen[id(a)] = places[-1]
        elif isinstance(a, bool | int | np.integer):
            places.append(("I", n_i, int(a)))
            n_i += 1
        elif isinstance(a, float | np.floating):
            places.append(("F", n_f, float(a)))
            n_f += 1
        else:
            raise TypeError(f"cannot pack {type(a).__name__}")
    F = np.zeros(max(n_f, 1))
    I = np.zeros(max(n_i, 1), dtype=np.int64)  # noqa: E741
    L = np.zeros(_W * len(places), dtype=np.int64)
    moved = []  # (start address, end address, new buffer, byte offset in it)
    done: set[int] = set()
    for j, (buf, off, a) in enumerate(places):
        dst = F if buf == "F" else I
        L[_W * j] = off
        if isinstance(a, np.ndarray):
            L[_W * j + 1 : _W * j + 1 + a.ndim] = a.shape
            L[_W * j + 1 + a.ndim : _W * (j + 1)] = 1
            if id(a) in done:
                continue
            done.add(id(a))
            dst[off : off + a.size] = a.ravel()
            if a.size:
                start = a.__array_interface__["data"][0]
                moved.append((start, start + a.nbytes, dst, off * 8))
        else:
            dst[off] = a
    for obj in owners:
        for name, value in list(vars(obj).items()):
            if isinstance(value, np.ndarray) and value.size:
                new = _relocate(value, moved)
                if new is not None:
                    setattr(obj, name, new)
    return F, I, L


def _relocate(v: np.ndarray, moved: list) -> np.ndarray | None:
    """Return the view of the new buffers holding ``v``'s bytes, or None if ``v`` was not packed."""
    addr = v.__array_interface__["data"][0]
    for start, end, dst, byte_off in moved:
        if start <= addr < end:
            return np.ndarray(v.shape, v.dtype, buffer=dst, offset=byte_off + addr - start, strides=v.strides)
    return None


FUSED = {"sliding_dft": step_sliding_dft, "iir": step_iir}
