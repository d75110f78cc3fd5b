"""Compiled (numba) kernel behind :func:`mmpoly.evaluation.metrics.functional.exact_sum`:
``math.fsum`` of a float64 array without a Python float per element.

Every finite double is ``m * 2**(e - 53)`` with an integer ``|m| < 2**53`` (``frexp``); the
kernel adds each ``m`` into the int64 bin of its exponent, exactly, so the bins hold the
exact sum (a "superaccumulator"). A bin nearing int64's range hands its high part to the bin
31 exponents up, exactly as well. Python's integers then add the bins and divide by the
scale: CPython rounds an integer quotient correctly, as ``math.fsum`` rounds its exact sum,
so the two floats are equal.

Imported on first use only; ``cache=True`` keeps the machine code in ``__pycache__``.
"""
import math
from typing import Optional

import numpy as np
from numba import njit

#: the bin of exponent ``e - 53`` (the smallest subnormal, 2**-1074 = 2**52 * 2**-1126, is
#: in bin 0; the largest double's is 971 + 1126), plus room for the carries
_OFFSET = 1126
_BINS = 971 + _OFFSET + 1 + 64
_CARRY_BITS = 31
_LIMIT = np.int64(1) << np.int64(62)


@njit(cache=True, nogil=True)
def _accumulate(values, bins):
    """Add every element of ``values`` into ``bins``; False (bins unfinished) at the first
    non-finite element."""
    for i in range(values.shape[0]):
        v = values[i]
        if not math.isfinite(v):
            return False
        if v == 0.0:
            continue
        m, e = math.frexp(v)
        k = e - 53 + _OFFSET
        b = bins[k] + np.int64(m * 9007199254740992.0)  # m * 2**53: an exact integer
        while b >= _LIMIT or b <= -_LIMIT:
            carry = b >> _CARRY_BITS  # floor: b == carry * 2**31 + (b - (carry << 31))
            bins[k] = b - (carry << _CARRY_BITS)
            k += _CARRY_BITS
            b = bins[k] + carry
        bins[k] = b
    return True


def compiled_fsum(values: np.ndarray) -> Optional[float]:
    """``math.fsum(values)`` of a 1-D float64 array; None when an element is not finite or the
    sum is zero (the caller's ``math.fsum`` then decides NaN, infinities and zero's sign)."""
    bins = np.zeros(_BINS, np.int64)
    if not _accumulate(np.ascontiguousarray(values, np.float64).reshape(-1), bins):
        return None
    nonzero = np.flatnonzero(bins)
    total = sum(int(bins[k]) << int(k) for k in nonzero)
    if total == 0:
        return None
    return total / (1 << _OFFSET)
