"""Compiled (numba) kernels behind :func:`mmpoly.evaluation.metrics.functional.normalize_normals`:
the labels' normalisation (``valid`` given) and the metric's (the (3, N) columns of an image's
labelled pixels, float64).

The data pipeline normalises an H x W x 3 float32 label once when loading it and again after
every warp (scale, rotate, resize): with NumPy that was a third of a 375 x 500 training
sample's CPU time, its loops crawling over the length-3 axis. One pass per pixel here, with
the same float32 operations in the same order: ``(x*x + y*y) + z*z`` (NumPy's sum over a
length-3 axis), ``sqrt``, three divisions, all IEEE-rounded as NumPy's; numba contracts
nothing into FMAs without ``fastmath``, so the floats are NumPy's to the bit. The metric
normalises a prediction and a label per image the same way, there dividing by
``np.maximum(norm, eps)`` (NaN included) and keeping every pixel.

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


@njit(cache=True, nogil=True)
def _normalize_columns(x, eps, out):
    for i in range(x.shape[1]):
        a, b, c = x[0, i], x[1, i], x[2, i]
        norm = np.sqrt((a * a + b * b) + c * c)
        scale = eps if norm < eps else norm  # np.maximum: a NaN norm stays NaN
        out[0, i], out[1, i], out[2, i] = a / scale, b / scale, c / scale


def normalize_columns(x: np.ndarray, eps: float) -> np.ndarray:
    """``x / np.maximum(norm, eps)`` of the float64 (3, N) array ``x``, per column."""
    out = np.empty(x.shape, np.float64)
    _normalize_columns(np.ascontiguousarray(x), np.float64(eps), out)
    return out
