"""The data pipeline's fast paths for normals give the plain NumPy formulas' floats bit for
bit (issue 25: the demo's per-sample cost fell from 2.7 to 1.7 ms, every label unchanged;
the compiled label normalisation, ``_normal_kernels``, likewise)."""
import cv2
import numpy as np
import pytest

from mmpoly.evaluation.metrics import _normal_kernels
from mmpoly.evaluation.metrics.functional import (labelled_normals, normal_angles,
                                                  normalize_normals, quantize_normals,
                                                  sum_of_products, sum_of_squares)
from mmpoly.tasks import TaskSpec


def plain_normalize(x, axis=0, valid=None, eps=1e-12):
    """The formula before the fast path (the oracle)."""
    norm = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    unit = x / np.maximum(norm, eps)
    if valid is None:
        return unit
    valid = valid & (np.squeeze(norm, axis) > eps)
    return np.where(np.expand_dims(valid, axis), unit, 0).astype(np.float32)


def decoded_png_normals(rng, shape):
    """Normals as the loaders decode them: ``2 v / 255 - 1`` of 8-bit values."""
    return 2.0 * rng.integers(0, 256, shape).astype(np.float32) / 255.0 - 1.0


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        a.view(f'u{a.itemsize}'), b.view(f'u{b.itemsize}'))


def wide_values(rng, size, axis, dtype):
    """Values over eight orders of magnitude, the length-3 axis at ``axis``."""
    shape = [size, size + 16, size]
    shape[axis] = 3
    return (rng.standard_normal(shape) * rng.choice([1e-4, 1.0, 1e4], shape)).astype(dtype)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('axis', [0, 2, -1])
def test_sum_of_squares_is_numpys_sum(dtype, axis):
    x = wide_values(np.random.default_rng(0), 64, axis, dtype)
    assert same_bits(sum_of_squares(x, axis), np.sum(x * x, axis=axis))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('axis', [0, 2, -1])
def test_sum_of_products_is_numpys_sum(dtype, axis):
    rng = np.random.default_rng(8)
    a, b = wide_values(rng, 32, axis, dtype), wide_values(rng, 32, axis, dtype)
    signs = np.moveaxis(a, axis, 0)
    signs[:, :4] = -0.0  # all three products -0.0 in some rows: NumPy's sum gives +0.0
    signs[1:, 4:8] = 0.0
    assert same_bits(sum_of_products(a, b, axis), np.sum(a * b, axis=axis))


def test_labelled_normals_is_numpys_any():
    """The loaders' and the warp's labelled pixels: any component non-zero, a signed zero
    vector unlabelled, a NaN component labelled, for any layout of the length-3 axis."""
    rng = np.random.default_rng(0)
    x = rng.choice(np.array([0.0, -0.0, 1e-45, np.nan, -2.0], np.float32), (5, 64, 3))
    x[0, :3] = [[0.0, -0.0, 0.0], [-0.0, -0.0, -0.0], [0.0, 0.0, np.nan]]
    for a in (x, x.transpose(1, 0, 2), np.asfortranarray(x)):
        got = labelled_normals(a)
        assert got.dtype == bool and np.array_equal(got, np.any(a != 0, axis=-1))
    assert labelled_normals(x)[0, :3].tolist() == [False, False, True]


def test_sum_of_squares_other_lengths_fall_back():
    x = np.random.default_rng(1).standard_normal((5, 9, 4)).astype(np.float32)
    assert same_bits(sum_of_squares(x, 2), np.sum(x * x, axis=2))


@pytest.mark.parametrize('eps', [1e-6, 1e-12])
def test_label_normalisation_matches_plain_formula(eps):
    rng = np.random.default_rng(2)
    x = decoded_png_normals(rng, (96, 128, 3))
    x[:7] = 0.0  # no label
    x[7:9] = 1e-7  # norms at and below eps
    valid = rng.random((96, 128)) > 0.2
    out = normalize_normals(x, axis=2, valid=valid, eps=eps)
    assert same_bits(out, plain_normalize(x, axis=2, valid=valid, eps=eps))
    assert out.dtype == np.float32 and not np.shares_memory(out, x)


def special_vectors(eps):
    """Rows (x, y, z) around every edge of the formula: the norm at float32(eps) and one ulp
    either side, zeros of either sign, subnormals, NaN and infinities, huge components."""
    e = np.float32(eps)
    lengths = [np.nextafter(e, np.float32(0)), e, np.nextafter(e, np.float32(1))]
    rows = [(r, 0, 0) for r in lengths] + [(0, -r, 0) for r in lengths]
    rows += [(0, 0, 0), (-0.0, 0, -0.0), (-0.0, 1, 0), (1e-45, 0, 0), (3e-39, 2e-39, 1e-39),
             (np.nan, 0, 0), (1, np.nan, 1), (np.inf, 0, 0), (-np.inf, 1, 1),
             (1e30, 1e30, 0), (3e38, 3e38, 3e38), (0.6, -0.8, 0.0), (1, 1, 1)]
    return np.array(rows, np.float32)


@pytest.mark.parametrize('eps', [1e-6, 1e-12])
def test_compiled_label_normalisation_edge_cases(eps):
    rng = np.random.default_rng(5)
    rows = special_vectors(eps)
    pad = decoded_png_normals(rng, (400 - len(rows), 3))
    x = np.concatenate([rows, pad]).reshape(50, 8, 3)
    valid = rng.random(x.shape[:2]) > 0.1
    valid[:3] = True  # every special row counts (19 of them)
    with np.errstate(invalid='ignore', over='ignore'):
        expected = plain_normalize(x, axis=2, valid=valid, eps=eps)
    out = _normal_kernels.normalize_labels(x, valid, np.float32(eps))
    assert same_bits(out, expected)


def test_compiled_label_normalisation_reads_any_layout():
    """Strided views (a flipped label, a transposed mask) give the contiguous result."""
    rng = np.random.default_rng(6)
    x = decoded_png_normals(rng, (40, 60, 3))
    valid = np.asfortranarray(rng.random((40, 60)) > 0.3)
    flipped = x[:, ::-1]
    expected = plain_normalize(np.ascontiguousarray(flipped), axis=2, valid=valid, eps=1e-6)
    assert same_bits(normalize_normals(flipped, axis=2, valid=valid, eps=1e-6), expected)


def test_pipeline_labels_take_the_compiled_path(monkeypatch):
    """A loader's call (float32 H x W x 3, boolean mask, a Python eps) reaches the kernel;
    float64, a float64 eps, a mask of another dtype or a normal axis 0 keep NumPy's path,
    whose floats are the plain formula's."""
    calls = []
    kernel = _normal_kernels.normalize_labels
    monkeypatch.setattr(_normal_kernels, 'normalize_labels',
                        lambda *args: calls.append(args) or kernel(*args))
    rng = np.random.default_rng(7)
    x = decoded_png_normals(rng, (16, 24, 3))
    valid = rng.random((16, 24)) > 0.3
    normalize_normals(x, axis=2, valid=valid, eps=1e-6)
    normalize_normals(x, axis=-1, valid=valid, eps=1e-6)
    assert len(calls) == 2
    others = [(x.astype(np.float64), 2, valid, 1e-6), (x, 2, valid, np.float64(1e-6)),
              (x, 2, valid.astype(np.uint8), 1e-6),
              (np.ascontiguousarray(x.transpose(2, 0, 1)), 0, valid, 1e-6)]
    for arr, axis, mask, eps in others:
        out = normalize_normals(arr, axis=axis, valid=mask, eps=eps)
        assert same_bits(out, plain_normalize(arr, axis=axis, valid=mask, eps=eps))
    assert len(calls) == 2


def plain_normal_angles(pred, gt, quantize=False):
    """``normal_angles`` before the valid pixels were taken first (the oracle)."""
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    valid = np.any(gt != 0, axis=0)
    if quantize:
        pred = quantize_normals(pred)
    pred, gt = plain_normalize(pred[:, valid]), plain_normalize(gt[:, valid])
    return np.rad2deg(np.arccos(np.clip(np.sum(pred * gt, axis=0), -1.0, 1.0)))


@pytest.mark.parametrize('quantize', [False, True])
def test_normal_angles_match_plain_formula(quantize):
    """Unlabelled pixels (zero vectors) skipped, orthogonal and opposite vectors, signed
    zeros, a strided prediction (a flipped map)."""
    rng = np.random.default_rng(9)
    pred = rng.standard_normal((3, 40, 60)).astype(np.float32)
    gt = np.moveaxis(normalize_normals(decoded_png_normals(rng, (40, 60, 3)), axis=2,
                                       valid=rng.random((40, 60)) > 0.3, eps=1e-6), 2, 0)
    pred[:, 0, :3] = gt[:, 0, :3]  # angle 0
    pred[:, 0, 3:6] = -gt[:, 0, 3:6]  # angle 180
    gt[:, 1, :4] = np.array([1.0, -0.0, 0.0], np.float32)[:, None]
    pred[:, 1, :4] = np.array([-0.0, 1.0, -0.0], np.float32)[:, None]  # angle 90, -0.0 products
    flipped = pred[:, :, ::-1]
    for p in (pred, flipped):
        assert same_bits(normal_angles(p, gt, quantize=quantize),
                         plain_normal_angles(np.ascontiguousarray(p), gt, quantize=quantize))


def test_metric_normalisation_matches_plain_formula():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((3, 5000)).astype(dtype)
        x[:, :10] = 0.0
        assert same_bits(normalize_normals(x), plain_normalize(x))


def test_metric_normalisation_edge_cases():
    """The compiled (3, N) float64 path (the metric's) at the norm's edges: eps itself and one
    ulp either side, signed zeros, subnormals, NaN, infinities, huge components; a strided
    view; and the shapes and types that keep NumPy's path."""
    e = 1e-12
    lengths = [np.nextafter(e, 0), e, np.nextafter(e, 1)]
    cols = [(r, 0, 0) for r in lengths] + [(0, 0, -r) for r in lengths]
    cols += [(0, 0, 0), (-0.0, 0, -0.0), (5e-324, 0, 0), (1e-310, -1e-310, 0), (np.nan, 0, 0),
             (np.inf, 1, 0), (-np.inf, np.inf, 0), (1e200, 1e200, 1e200), (1e300, 0, 0),
             (0.6, -0.8, 0.0)]
    rng = np.random.default_rng(10)
    x = np.concatenate([np.array(cols, np.float64).T, rng.standard_normal((3, 100))], axis=1)
    with np.errstate(invalid='ignore', over='ignore'):
        for arr in (x, x[:, ::2], np.asfortranarray(x)):
            assert same_bits(normalize_normals(arr, eps=e), plain_normalize(arr, eps=e))
            assert same_bits(normalize_normals(arr, axis=-2, eps=e), plain_normalize(arr, eps=e))
        for arr, eps in ((x.astype(np.float32), e), (x, np.float32(1e-6)), (x[:, None], e)):
            assert same_bits(normalize_normals(arr, eps=eps), plain_normalize(arr, eps=eps))


def test_normal_warp_keeps_unlabelled_pixels_unlabelled():
    """NormalKind.warp_label's validity mask (three comparisons) is ``np.any(label != 0)``:
    the warped label equals the one computed with it."""
    spec = TaskSpec(kind='normal', num_outputs=3)
    rng = np.random.default_rng(4)
    label = normalize_normals(decoded_png_normals(rng, (48, 64, 3)), axis=2,
                              valid=rng.random((48, 64)) > 0.3, eps=1e-6)
    label[:, :5, 1:] = 0.0  # x alone non-zero: still labelled
    matrix = cv2.getRotationMatrix2D((32, 24), 17.0, 1.1)

    def warp(arr, interp, fill):
        return cv2.warpAffine(arr, matrix, (64, 48), flags=interp,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

    valid = np.any(label != 0, axis=2).astype(np.uint8)
    expected = plain_normalize(warp(label, cv2.INTER_LINEAR, 0), axis=2,
                               valid=warp(valid, cv2.INTER_NEAREST, 0).astype(bool), eps=1e-6)
    assert same_bits(spec.task_kind.warp_label(label.copy(), warp, spec), expected)
