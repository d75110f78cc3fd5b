"""``exact_sum`` (the regression and edge-loss metrics' per-image sums) is ``math.fsum``: the
same float, bit for bit, through every path of its compiled superaccumulator (carries
between bins, cancellation, subnormals, ties in the final rounding) and its fallbacks
(non-finite elements, zero sums)."""
import math

import numpy as np
import pytest

from mmpoly.evaluation.metrics.functional import exact_sum


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(
        1, b))


def wide_random(rng, n):
    return rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)


CASES = {
    'squares': lambda rng: rng.standard_normal(10000) ** 2,
    'wide exponents': lambda rng: wide_random(rng, 5000),
    'cancelling': lambda rng: np.concatenate([v := wide_random(rng, 3000), -v[::-1],
                                              [1e-310, 3.0]]),
    'carries (one bin, 2**17 adds of 2**52)': lambda rng: np.ones(1 << 17),
    'carries, negative': lambda rng: -np.full(1 << 17, 1.5),
    'carries, mixed signs': lambda rng: np.concatenate(
        [np.full(1 << 16, 1.75), np.full(1 << 16, -1.5), np.full(5, 2.0 ** -60)]),
    'subnormals': lambda rng: np.array([5e-324, 5e-324, 2.2e-308, -1e-320]),
    'subnormal result': lambda rng: np.array([2.2250738585072014e-308, -2.225073858507201e-308]),
    'tie to even': lambda rng: np.array([1.0, 2.0 ** -53]),
    'tie broken below': lambda rng: np.array([1.0, 2.0 ** -53, 2.0 ** -160]),
    'tie broken above, odd': lambda rng: np.array([1.0 + 2.0 ** -52, 2.0 ** -53]),
    'huge': lambda rng: np.array([1.7e308, -1.6e308, 1e308, -1e308]),
    'one element': lambda rng: np.array([-3.25]),
    'zero sum': lambda rng: np.array([1.5, -1.5]),
    'negative zeros': lambda rng: np.array([-0.0, -0.0]),
    'empty': lambda rng: np.zeros(0),
    'nan': lambda rng: np.array([1.0, np.nan, 2.0]),
    'inf': lambda rng: np.array([1.0, np.inf]),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_exact_sum_is_fsum(case):
    values = CASES[case](np.random.default_rng(0))
    assert same_float(exact_sum(values), math.fsum(values.tolist())), case


def test_exact_sum_overflow_and_opposite_infinities_as_fsum():
    for values in (np.array([1.7e308, 1.7e308]), np.array([np.inf, -np.inf])):
        with pytest.raises((OverflowError, ValueError)) as expected:
            math.fsum(values.tolist())
        with pytest.raises(expected.type):
            exact_sum(values)


def test_exact_sum_reads_any_layout():
    x = np.random.default_rng(1).standard_normal((40, 60)) ** 2
    assert exact_sum(x[:, ::3]) == math.fsum(x[:, ::3].ravel().tolist())
