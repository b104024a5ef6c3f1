"""The vectorised log10 of the derived stage: accuracy against a 50-digit reference and numpy, special values."""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest

from closedloop.features.vectorlog import _log_positive, log10_where


def _wide_values(n: int, seed: int) -> np.ndarray:
    """Positive float64 across the whole range: log-uniform, near 1, around sqrt(2)/2 and sqrt(2), subnormal."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            np.exp(rng.uniform(-708.0, 709.0, n)),
            1.0 + rng.uniform(-1e-3, 1e-3, n // 4),
            np.sqrt(0.5) * (1.0 + rng.uniform(-1e-9, 1e-9, n // 8)),
            np.sqrt(2.0) * (1.0 + rng.uniform(-1e-9, 1e-9, n // 8)),
            rng.uniform(1e-320, 2.2e-308, n // 8),  # subnormal and the smallest normals
            rng.uniform(0.5, 2.0, n // 4),
        ]
    )


def test_log_is_within_three_quarters_of_an_ulp_of_the_exact_logarithm() -> None:
    values = _wide_values(2000, seed=1)
    ulps = []
    with localcontext() as ctx:
        ctx.prec = 50
        for v in values:
            exact = Decimal(float(v)).ln()
            got = _log_positive(float(v))
            if exact == 0:
                assert got == 0.0
                continue
            ulps.append(float(abs(Decimal(got) - exact)) / np.spacing(abs(float(exact))))
    assert len(ulps) > 2500
    assert max(ulps) <= 0.75


def test_log10_is_as_close_to_numpy_as_libm_log_times_log10e_and_log_within_one_ulp_of_numpy_log() -> None:
    values = _wide_values(2_000_000, seed=2)
    out = np.empty_like(values)
    log10_where(values, np.ones(values.size, dtype=np.int64), out)
    want = np.log10(values)
    libm_way = np.log(values) * (1.0 / np.log(10.0))  # what the derived stage computed before
    worst = np.max(np.abs(out - want) / np.spacing(np.abs(want)))
    assert worst <= max(3.0, np.max(np.abs(libm_way - want) / np.spacing(np.abs(want))))
    natural = np.array([_log_positive(float(v)) for v in values[::97]])
    want_ln = np.log(values[::97])
    assert np.all(np.abs(natural - want_ln) <= np.spacing(np.abs(want_ln)))


def test_special_values_give_what_numpy_gives() -> None:
    values = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 5e-324, 1.0, 10.0, 1e-300, np.finfo(float).max])
    out = np.empty_like(values)
    log10_where(values, np.ones(values.size, dtype=np.int64), out)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log10(values)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=3e-16)
    assert out[0] == -np.inf and out[1] == -np.inf and out[4] == np.inf
    assert out[7] == 0.0 and out[8] == pytest.approx(1.0, rel=3e-16)


@pytest.mark.parametrize("in_place", [False, True])
def test_only_masked_entries_are_logged_and_the_output_may_be_the_input(in_place: bool) -> None:
    values = np.array([100.0, 100.0, -5.0, 0.0, np.nan, 1e-3])
    mask = np.array([1, 0, 0, 1, 0, 1], dtype=np.int64)
    out = values.copy() if in_place else np.full(values.size, 7.0)
    log10_where(out if in_place else values, mask, out)
    np.testing.assert_array_equal(out[[1, 2, 4]], values[[1, 2, 4]])
    assert out[0] == pytest.approx(2.0, rel=3e-16) and out[3] == -np.inf and out[5] == pytest.approx(-3.0, rel=1e-15)
