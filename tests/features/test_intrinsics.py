"""The kernels' numba intrinsics: carve gives the views reshape would, prefetch changes nothing."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from closedloop.features.intrinsics import carve, prefetch_read, prefetch_write


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


def test_prefetch_is_only_a_hint():
    a = np.random.default_rng(0).standard_normal(1001)
    before = a.copy()
    assert _prefetched_sum(a) == _plain_sum(before)
    assert a.tobytes() == before.tobytes()
