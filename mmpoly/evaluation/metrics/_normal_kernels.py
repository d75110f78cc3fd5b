"""Compiled (numba) kernel behind the normals labels' normalisation
(:func:`mmpoly.evaluation.metrics.functional.normalize_normals` with ``valid``).

The data pipeline normalises an H x W x 3 float32 label once when loading it and again after
every warp (scale, rotate, resize): with NumPy that was a third of a 375 x 500 training
sample's CPU time, its loops crawling over the length-3 axis. One pass per pixel here, with
the same float32 operations in the same order: ``(x*x + y*y) + z*z`` (NumPy's sum over a
length-3 axis), ``sqrt``, three divisions, all IEEE-rounded as NumPy's; numba contracts
nothing into FMAs without ``fastmath``, so the floats are NumPy's to the bit.

Imported on first use only; ``cache=True`` keeps the machine code in ``__pycache__``.
"""
import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _normalize_rows(x, valid, eps, out):
    zero = np.float32(0.0)
    for i in range(x.shape[0]):
        a, b, c = x[i, 0], x[i, 1], x[i, 2]
        norm = np.sqrt((a * a + b * b) + c * c)
        if valid[i] and norm > eps:
            out[i, 0], out[i, 1], out[i, 2] = a / norm, b / norm, c / norm
        else:
            out[i, 0], out[i, 1], out[i, 2] = zero, zero, zero


def normalize_labels(x: np.ndarray, valid: np.ndarray, eps: np.float32) -> np.ndarray:
    """Unit vectors of the float32 ``(..., 3)`` array ``x`` where the boolean ``valid``
    (``x.shape[:-1]``) holds and the norm exceeds ``eps``, the zero vector elsewhere."""
    out = np.empty(x.shape, np.float32)
    _normalize_rows(np.ascontiguousarray(x).reshape(-1, 3),
                    np.ascontiguousarray(valid).reshape(-1), eps, out.reshape(-1, 3))
    return out
