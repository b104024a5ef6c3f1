"""The kernels' numba intrinsics: carve gives the views reshape would, prefetch changes nothing, muladd rounds once
where the CPU has FMA, borrow gives the same memory."""

from __future__ import annotations

import platform
from fractions import Fraction

import numba
import numpy as np
import pytest

from closedloop.features import intrinsics
from closedloop.features.intrinsics import borrow, carve, muladd, prefetch_read, prefetch_write


@numba.njit(cache=False)
def _carve_and_write(base, offset, a, b, c):
    v2 = carve(base, offset, (a, b * c))
    v3 = carve(base, offset, (a, b, c))
    v3[a - 1, b - 1, c - 1] = -1  # a view: writes reach the base
    return v2.copy(), v3.copy(), v3.strides, v2.strides


@numba.njit(cache=False)
def _carve_int(base, offset, a, b):
    return carve(base, offset, (a, b)).copy()


@numba.njit(cache=False)
def _prefetched_sum(a):
    prefetch_read(a)
    prefetch_write(a[1:])
    return a.sum()


@numba.njit(cache=False)
def _plain_sum(a):
    return a.sum()


@pytest.mark.parametrize("offset,a,b,c", [(0, 2, 3, 4), (5, 3, 1, 7), (11, 1, 1, 1), (7, 0, 3, 2)])
def test_carve_equals_slice_and_reshape(offset, a, b, c):
    base = np.arange(40, dtype=np.float64)
    ref = base.copy()
    v2, v3, s3, s2 = _carve_and_write(base, offset, a, b, c)
    size = a * b * c
    if size:  # the write through the 3-d view is the only change to the base, at its last element
        assert base[offset + size - 1] == -1 and np.count_nonzero(base != ref) == 1
    np.testing.assert_array_equal(v2, base[offset : offset + size].reshape(a, b * c))
    np.testing.assert_array_equal(v3, base[offset : offset + size].reshape(a, b, c))
    assert s3 == ref[:size].reshape(a, b, c).strides and s2 == ref[:size].reshape(a, b * c).strides
    ints = np.arange(30, dtype=np.int64)
    np.testing.assert_array_equal(_carve_int(ints, offset, a, b * c), ints[offset : offset + size].reshape(a, b * c))


@pytest.mark.parametrize("offset,a,b", [(35, 2, 3), (-1, 1, 1), (0, -2, -3)])
def test_carve_refuses_views_out_of_the_buffer(offset, a, b):
    with pytest.raises(IndexError):
        _carve_int(np.zeros(40, dtype=np.int64), offset, a, b)


@pytest.mark.parametrize("size", [1001, 5000])  # 5000 values: 40 kB, past the 12 kB asked for
def test_prefetch_is_only_a_hint(size):
    a = np.random.default_rng(0).standard_normal(size)
    before = a.copy()
    assert _prefetched_sum(a) == _plain_sum(before)
    assert a.tobytes() == before.tobytes()


@numba.njit(cache=False)
def _muladd_all(a, b, c, out):
    for i in range(a.shape[0]):
        out[i] = muladd(a[i], b[i], c[i])


def test_muladd_rounds_once_where_the_cpu_has_fma_and_twice_elsewhere():
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    arm64 = platform.machine().lower() in ("aarch64", "arm64")  # FMA in the base instruction set
    assert intrinsics.FUSED == (arm64 or "+fma" in features.split(","))
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(2000), rng.standard_normal(2000)
    c = -(a * b) * (1.0 + rng.standard_normal(2000) * 1e-9)  # near cancellation: the product's rounding shows
    a[0], b[0], c[0] = 1.0 + 2.0**-30, 1.0 - 2.0**-30, -1.0  # a * b = 1 - 2^-60 exactly, 1.0 once rounded
    got = np.empty(2000)
    _muladd_all(a, b, c, got)
    exact = np.array([float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)])  # rounded once
    if intrinsics.FUSED:
        assert got[0] == -(2.0**-60)
        np.testing.assert_array_equal(got, exact)
    else:
        assert got[0] == 0.0
        np.testing.assert_array_equal(got, a * b + c)
    assert np.count_nonzero(exact != a * b + c) > 1000  # the two differ: the check above tells them apart


@numba.njit(cache=False)
def _negate_firsts_and_sum(a):
    b = borrow(a)
    total = 0.0
    for i in range(b.shape[0]):
        row = b[i]
        row[0] = -row[0]
        total += row.sum()
    return total


def test_borrow_gives_the_same_memory():
    a = np.arange(12.0).reshape(4, 3)
    ref = a.copy()
    ref[:, 0] = -ref[:, 0]
    assert _negate_firsts_and_sum(a) == ref.sum()
    np.testing.assert_array_equal(a, ref)  # the writes through the borrowed views reached the array
