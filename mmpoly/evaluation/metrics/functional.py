"""Pure functions behind :class:`MultiTaskMetric`, reusable by tools.

Every metric is split in two steps so that it is exact over a whole split and across
distributed ranks:

* ``*_image_stats(pred, gt)`` turns one image into a few small numpy arrays / numbers
  (counts and float64 sums, never a map);
* ``*_scores(list_of_stats)`` combines the statistics of any number of images (in any
  order: float sums use ``math.fsum``, which is exactly rounded, so the order in which
  ranks are gathered cannot change a digit).

They follow the reference evaluation of Multi-Task-Learning-PyTorch
(``evaluation/eval_{semseg,human_parts,sal,normals,depth,edge}.py``,
``evaluation/jaccard.py``; edges: the SEISM boundary benchmark it calls); deviations are
listed in each function's docstring.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from .edges import EdgeMatcher, edge_disk_offsets, edge_level_counts, match_edge_pixels

# Single-task full fine-tuning, Swin-T ImageNet-1k (paper Table 1).
DEFAULT_REFERENCE = dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97)

DEFAULT_SAL_THRESHOLDS = tuple(float(t) for t in np.linspace(0.2, 0.9, 15))
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)


def to_numpy(x) -> np.ndarray:
    """Tensor (any device) or array-like -> numpy array."""
    if hasattr(x, 'detach'):
        x = x.detach().cpu()
        if str(x.dtype) == 'torch.bfloat16':  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _squeeze_map(x) -> np.ndarray:
    """(1, H, W) or (H, W) -> (H, W)."""
    x = to_numpy(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f'expected a (1, H, W) or (H, W) map, got shape {x.shape}')
    return x


def _check_same_shape(pred: np.ndarray, gt: np.ndarray, task: str) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f'{task}: prediction shape {pred.shape} differs from label shape '
                         f'{gt.shape}; predictions must be at the original image size')


# ---------------------------------------------------------------- class maps (mIoU)
def confusion_image_stats(pred, gt, num_classes: int,
                          ignore_index: int = 255) -> np.ndarray:
    """Per-class true positives, false positives and false negatives of one image.

    Exactly the reference's counts: over pixels with ``gt != ignore_index``,
    ``tp_c = #(gt == c & pred == c)``, ``fp_c = #(gt != c & pred == c)``,
    ``fn_c = #(gt == c & pred != c)``.

    Args:
        pred: class ids, (1, H, W) or (H, W).
        gt: class ids, same shape, ``ignore_index`` = no label.
        num_classes: number of classes C.
        ignore_index: label value to skip.

    Returns:
        int64 array (3, C): rows tp, fp, fn.
    """
    pred, gt = _squeeze_map(pred).astype(np.int64), _squeeze_map(gt).astype(np.int64)
    _check_same_shape(pred, gt, 'class map')
    c = num_classes
    # One joint histogram of (label, prediction): ids out of range count as id C (C + 1
    # for an ignored label), so every count above is a sum of its cells.
    pred_id = np.where((pred >= 0) & (pred < c), pred, c)
    gt_id = np.where((gt >= 0) & (gt < c), gt, c)
    gt_id[gt == ignore_index] = c + 1
    joint = np.bincount((gt_id * (c + 1) + pred_id).reshape(-1), minlength=(c + 2) * (c + 1))
    joint = joint.reshape(c + 2, c + 1)[:c + 1]  # the ignored label's row dropped
    tp = np.diagonal(joint)[:c]
    pred_count, gt_count = joint[:, :c].sum(axis=0), joint[:c].sum(axis=1)
    return np.stack([tp, pred_count - tp, gt_count - tp]).astype(np.int64)


def is_single_value_label_evaluated(gt, ignore_index: int = 255) -> bool:
    """Whether an image whose task has ``skip_single_value_labels`` is evaluated.

    The reference (human parts) skips an image whose label holds a single value that is 0
    or ``ignore_index`` (all background or all ignore: no person with parts).
    """
    gt = to_numpy(gt)
    lo, hi = gt.min(), gt.max()
    return not (lo == hi and lo in (0, ignore_index))


def is_human_parts_evaluated(gt) -> bool:
    """``is_single_value_label_evaluated`` with the PASCAL ignore value 255."""
    return is_single_value_label_evaluated(gt, 255)


def iou_scores(stats: Sequence[np.ndarray]) -> Dict[str, object]:
    """mIoU from per-image confusion stats (summed over the split).

    As the reference, IoU_c = tp / max(tp + fp + fn, 1e-8), so a class that never
    occurs in labels nor predictions gets IoU 0 and still counts in the mean over all
    C classes (mmseg's IoUMetric would skip it; on the real val split every class
    occurs, so the two agree there).

    Returns:
        dict with 'mIoU' (percent, float) and 'IoU' (per-class percent, float64 array);
        'mIoU' is NaN when ``stats`` is empty.
    """
    if len(stats) == 0:
        return dict(mIoU=float('nan'), IoU=np.array([]), num_images=0)
    tp, fp, fn = np.sum(np.stack(stats), axis=0)
    iou = tp / np.maximum((tp + fp + fn).astype(np.float64), 1e-8)
    return dict(mIoU=float(np.mean(iou)) * 100, IoU=iou * 100, num_images=len(stats))


# ---------------------------------------------------------------------- saliency
def quantize_probability(prob) -> np.ndarray:
    """Probability in [0, 1] -> uint8 0..255, as the reference's PNG round trip.

    The reference writes ``255 * sigmoid`` (float32) with ``astype(np.uint8)``, i.e.
    truncation. A uint8 input is taken as already quantised.
    """
    prob = to_numpy(prob)
    if prob.dtype == np.uint8:
        return prob
    q = np.floor(prob.astype(np.float32) * np.float32(255))
    return np.clip(np.nan_to_num(q), 0, 255).astype(np.uint8)


def _above_threshold_table(thresholds: Sequence[float]) -> np.ndarray:
    """(256, T) bool: whether quantised value q counts as salient at threshold t.

    The reference compares ``float32(q) / 255.`` with a numpy float64 threshold under
    numpy 1's value-based casting, i.e. in float32 (a tie such as q = 51, t = 0.2 is
    *not* salient). Doing the comparison in float32 here reproduces it bit for bit.
    """
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    return levels[:, None] > np.asarray(thresholds, dtype=np.float32)[None, :]


def sal_image_stats(pred, gt, thresholds: Sequence[float] = DEFAULT_SAL_THRESHOLDS,
                    ignore_index: int = 255) -> Optional[np.ndarray]:
    """Per-threshold tp, fp, fn of one saliency map.

    Args:
        pred: probability (float) or quantised uint8 map, (1, H, W) or (H, W).
        gt: binary label (non-zero = salient), ``ignore_index`` = no label.
        thresholds: T probability thresholds; a pixel is salient when
            ``quantised / 255 > t``.
        ignore_index: label value excluded (the reference has no ignore: its labels
            are dense; here such pixels play the role of ``jaccard.py``'s void pixels).

    Returns:
        int64 array (3, T): rows tp, fp, fn; None when the image has no valid pixel
        (deviation: the reference never meets such an image; it is skipped here).
    """
    q, gt = _squeeze_map(quantize_probability(pred)), _squeeze_map(gt)
    _check_same_shape(q, gt, 'sal')
    valid = gt != ignore_index
    if not valid.any():
        return None
    # one histogram of (label class, quantised value): 0 background, 1 salient, 2 ignored
    label_class = np.where(valid, (gt != 0).astype(np.intp), 2)
    hist = np.bincount((label_class * 256 + q).reshape(-1), minlength=3 * 256)
    hist_neg, hist_pos = hist[:256].astype(np.int64), hist[256:512].astype(np.int64)
    table = _above_threshold_table(thresholds).astype(np.int64)
    tp = hist_pos @ table
    fp = hist_neg @ table
    fn = hist_pos.sum() - tp
    return np.stack([tp, fp, fn]).astype(np.int64)


def sal_scores(stats: Sequence[np.ndarray]) -> Dict[str, object]:
    """Saliency mIoU and maxF from per-image stats (``sal_image_stats``).

    Per image and threshold (reference ``jaccard.py``): Jaccard = tp / (tp + fp + fn),
    1 when the image has neither a salient label nor a salient prediction;
    precision = tp / (tp + fp + 1e-12), recall = tp / (tp + fn + 1e-12). They are
    averaged over images per threshold; F = 2 P R / (P + R + 1e-12) on the averages.
    mIoU = max over thresholds of the mean Jaccard, maxF = max over thresholds of F.

    Returns:
        dict with 'mIoU', 'maxF' (percent), and per-threshold 'mIoUs', 'F', 'mPrec',
        'mRec' (fractions, float64 arrays); NaN scores when ``stats`` is empty.
    """
    if len(stats) == 0:
        nan = float('nan')
        return dict(mIoU=nan, maxF=nan, num_images=0)
    s = np.stack(stats).astype(np.float64)  # (N, 3, T)
    tp, fp, fn = s[:, 0], s[:, 1], s[:, 2]
    union = tp + fp + fn
    empty = union == 0
    jac = np.where(empty, 1.0, tp / np.where(empty, 1.0, union))
    prec = tp / (tp + fp + 1e-12)
    rec = tp / (tp + fn + 1e-12)

    def mean_over_images(x):
        # fsum: exactly rounded, so the order of the gathered images does not matter
        return np.array([math.fsum(col) for col in x.T]) / x.shape[0]

    m_iou, m_prec, m_rec = map(mean_over_images, (jac, prec, rec))
    f = 2 * m_prec * m_rec / (m_prec + m_rec + 1e-12)
    return dict(mIoU=float(m_iou.max()) * 100, maxF=float(f.max()) * 100,
                mIoUs=m_iou, F=f, mPrec=m_prec, mRec=m_rec, num_images=len(stats))


# ----------------------------------------------------------------------- normals
def labelled_normals(x: np.ndarray) -> np.ndarray:
    """The pixels of a (..., 3) normals map that carry a label (a zero vector: none), i.e.
    ``np.any(x != 0, axis=-1)`` without NumPy's reduction loop over the length-3 axis."""
    return (x[..., 0] != 0) | (x[..., 1] != 0) | (x[..., 2] != 0)


def normalize_normals(x: np.ndarray, axis: int = 0, valid: Optional[np.ndarray] = None,
                      eps: float = 1e-12) -> np.ndarray:
    """Unit vectors along ``axis``: divide by ``max(L2 norm, eps)``.

    The reference's ``normal_ize`` divides by ``norm + 1e-12``; that shifts a perfect
    prediction's angle to ~4e-5 degrees through arccos' steep slope at 1, while the
    clamp keeps it at exactly 0. Otherwise the two agree far below 1e-4 degrees.

    With ``valid`` (a mask over the other axes; labels): float32, the zero vector where not
    ``valid`` or where the norm is at most ``eps`` (the zero vector = no label).
    """
    if valid is not None and _label_layout(x, axis, valid, eps):
        from ._normal_kernels import normalize_labels  # numba, on first use
        return normalize_labels(x, valid, np.float32(eps))
    if valid is None and x.dtype == np.float64 and x.ndim == 2 and x.shape[0] == 3 \
            and axis in (0, -2) and np.result_type(x.dtype, eps) == np.float64:
        from ._normal_kernels import normalize_columns  # the metric's (3, N) pixels
        return normalize_columns(x, eps)
    norm = np.sqrt(sum_of_squares(x, axis))
    unit = x / _spread(np.maximum(norm, eps), axis, x.shape)
    if valid is None:
        return unit
    valid = valid & (norm > eps)
    return np.where(_spread(valid, axis, x.shape), unit, 0).astype(np.float32, copy=False)


def _label_layout(x: np.ndarray, axis: int, valid: np.ndarray, eps: float) -> bool:
    """Whether ``x`` is a data pipeline's label, float32 (..., 3) normalised along its last
    axis with a boolean ``valid`` of the other axes, and ``eps`` compares as float32 (a Python
    float does): the compiled kernel's case, NumPy's floats to the bit."""
    return (x.dtype == np.float32 and x.ndim >= 1 and axis % x.ndim == x.ndim - 1
            and x.shape[-1] == 3 and valid.dtype == np.bool_ and valid.shape == x.shape[:-1]
            and np.result_type(x.dtype, eps) == np.float32)


def _spread(a: np.ndarray, axis: int, shape) -> np.ndarray:
    """``a`` (``shape`` without ``axis``) repeated along ``axis``: copied when that axis is
    the last one, since NumPy's broadcasting loops crawl over a short innermost axis (HxWx3
    labels the compiled kernel does not take); a broadcast view otherwise."""
    a = np.expand_dims(a, axis)
    if axis % len(shape) == len(shape) - 1:
        return np.concatenate([a] * shape[axis], axis=axis)
    return a


def sum_of_squares(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.sum(x * x, axis)``, bit for bit (:func:`sum_of_products`)."""
    return sum_of_products(x, x, axis)


def sum_of_products(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """``np.sum(a * b, axis)``, bit for bit, and several times faster for a length-3 axis.

    NumPy's sum starts from 0.0 and adds the elements of a short axis one after another,
    first to last (pairwise summation starts at 8 elements); adding the three slices in that
    order gives the same floats, without the reduction machinery that dominates on an axis
    this short. (``tests/datasets/test_label_fast_paths.py`` holds it to ``np.sum``.)
    """
    if a.shape[axis] != 3 or a.shape != b.shape or a.dtype != b.dtype or a.dtype.kind != 'f':
        return np.sum(a * b, axis=axis)
    (a0, a1, a2), (b0, b1, b2) = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
    out = a0 * b0
    out += 0.0  # the sum's start: -0.0 becomes 0.0, as in NumPy's
    out += a1 * b1
    out += a2 * b2
    return out


def quantize_normals(x: np.ndarray) -> np.ndarray:
    """The reference's PNG round trip of a predicted normal map (3, H, W).

    Written as ``uint8((n + 1) * 255 / 2)`` (truncation) and read back as
    ``2 * v / 255 - 1``; the caller normalises again.
    """
    v = np.clip(np.floor((normalize_normals(x) + 1.0) * 255.0 / 2.0), 0, 255)
    return 2.0 * v / 255.0 - 1.0


def normal_angles(pred, gt, quantize: bool = False) -> np.ndarray:
    """Angular errors in degrees at the valid pixels of one image.

    Args:
        pred: predicted normals, (3, H, W), any length (normalised here).
        gt: label normals, (3, H, W); the zero vector = invalid.
        quantize: reproduce the reference's 8-bit PNG round trip of the prediction.

    Returns:
        float64 array of the valid pixels' angles, ``degrees(arccos(clip(<p, g>)))``.
    """
    pred, gt = to_numpy(pred), to_numpy(gt)
    if pred.ndim != 3 or pred.shape[0] != 3:
        raise ValueError(f'normals: expected (3, H, W) predictions, got {pred.shape}')
    _check_same_shape(pred, gt, 'normals')
    valid = np.any(gt != 0, axis=0).reshape(-1)  # the zero vector marks "no label"
    # The valid pixels first (np.compress: pred[:, valid] several times faster), then the
    # per-pixel float64 arithmetic on them alone: the same floats as on the whole map.
    pred = np.compress(valid, pred.reshape(3, -1), axis=1).astype(np.float64)
    gt = np.compress(valid, gt.reshape(3, -1), axis=1).astype(np.float64)
    if quantize:
        pred = quantize_normals(pred)
    pred, gt = normalize_normals(pred), normalize_normals(gt)
    cos = np.clip(sum_of_products(pred, gt, 0), -1.0, 1.0)
    return np.rad2deg(np.arccos(cos))


def normals_image_stats(pred, gt, quantize: bool = False,
                        bin_width: float = 0.05) -> Optional[dict]:
    """Sums, counts and a sparse angle histogram of one image.

    Args:
        pred, gt, quantize: see :func:`normal_angles`.
        bin_width: histogram bin width in degrees, used for the median only.

    Returns:
        dict(count, sum, sq_sum, under (int64 counts of angle < 11.25, 22.5, 30),
        hist_idx (uint16/uint32 bin ids), hist_cnt (uint32)); None when the label has
        no valid pixel (the reference skips all-zero labels too).
    """
    ang = normal_angles(pred, gt, quantize=quantize)
    if ang.size == 0:
        return None
    num_bins = int(math.ceil(180.0 / bin_width))
    idx = np.minimum((ang / bin_width).astype(np.int64), num_bins - 1)
    hist = np.bincount(idx, minlength=num_bins)
    hist_idx = np.flatnonzero(hist)  # sparse: only the occupied bins travel
    hist_cnt = hist[hist_idx]
    return dict(
        count=int(ang.size),
        sum=float(np.sum(ang)),
        sq_sum=float(np.sum(ang**2)),
        under=np.array([(ang < t).sum() for t in NORMAL_THRESHOLDS], dtype=np.int64),
        hist_idx=hist_idx.astype(np.uint16 if num_bins <= 65536 else np.uint32),
        hist_cnt=hist_cnt.astype(np.uint32))  # per-image counts fit easily


def _median_from_histogram(hist: np.ndarray, bin_width: float) -> float:
    """Median of the pixels counted in ``hist`` (bin centres, numpy's even-n rule)."""
    n = int(hist.sum())
    cum = np.cumsum(hist)
    # 0-based ranks of the middle element(s), as np.median averages them for even n.
    ranks = (n // 2, ) if n % 2 else (n // 2 - 1, n // 2)
    centres = [(np.searchsorted(cum, r + 1) + 0.5) * bin_width for r in ranks]
    return float(np.mean(centres))


def normals_scores(stats: Sequence[dict], bin_width: float = 0.05) -> Dict[str, float]:
    """Pooled normal-error metrics from per-image stats (``normals_image_stats``).

    All valid pixels of the split are pooled (as the reference's ``eval_normals``):
    mErr = mean angle, rmse = sqrt(mean angle^2), '11.25'/'22.5'/'30' = % of pixels
    with angle strictly below. Sums are exact (fsum of float64, int64 counts). The
    median comes from the summed histogram: it is exact to within half a bin
    (``bin_width / 2`` degrees).

    Returns:
        dict with 'mErr', 'median', 'rmse', '11.25', '22.5', '30' (NaN when empty).
    """
    keys = ('mErr', 'median', 'rmse') + tuple(f'{t:g}' for t in NORMAL_THRESHOLDS)
    if len(stats) == 0:
        return {**{k: float('nan') for k in keys}, 'num_images': 0, 'num_pixels': 0}
    n = sum(s['count'] for s in stats)
    under = np.sum([s['under'] for s in stats], axis=0)
    num_bins = int(math.ceil(180.0 / bin_width))
    hist = np.zeros(num_bins, dtype=np.int64)
    for s in stats:
        np.add.at(hist, s['hist_idx'].astype(np.int64), s['hist_cnt'].astype(np.int64))
    out = dict(
        mErr=math.fsum(s['sum'] for s in stats) / n,
        median=_median_from_histogram(hist, bin_width),
        rmse=math.sqrt(math.fsum(s['sq_sum'] for s in stats) / n))
    for t, u in zip(NORMAL_THRESHOLDS, under):
        out[f'{t:g}'] = float(u) / n * 100
    out.update(num_images=len(stats), num_pixels=n)
    return out


# ------------------------------------------------------------------- regression
def exact_sum(values: np.ndarray) -> float:
    """``math.fsum`` of a float64 array (the correctly rounded sum, so no order of the
    pixels changes a digit), by a compiled kernel (``_sum_kernels``) instead of one Python
    float per pixel; ``math.fsum`` itself for non-finite elements and zero sums."""
    from ._sum_kernels import compiled_fsum  # numba, on first use
    total = compiled_fsum(values)
    return math.fsum(np.asarray(values, np.float64).reshape(-1).tolist()) if total is None \
        else total


def regression_image_stats(pred, gt, ignore_index: float = 0.0,
                           positive: bool = False) -> Optional[dict]:
    """Squared, absolute (and log-squared) errors of one image over its labelled elements.

    With ``positive`` (depth) the errors are the reference's (``evaluation/eval_depth.py``
    of Multi-Task-Learning-PyTorch): a prediction ``<= 0`` is replaced by 1e-9 (for every
    error, not only the log), and ``(log gt - log pred)^2`` is summed too; a labelled value
    ``<= 0`` is then an error.

    Args:
        pred: predicted values, (C, H, W) or (H, W).
        gt: labels, same shape; ``ignore_index`` (depth: 0) or a non-finite value = no
            label.
        positive: the quantity is positive (see above).

    Returns:
        dict with ``count``, ``sq_sum``, ``abs_sum`` and ``log_sq_sum`` (exact float64
        sums; ``log_sq_sum`` None unless ``positive``), or None when the image has no
        labelled element.
    """
    pred = to_numpy(pred).astype(np.float64)
    gt = to_numpy(gt).astype(np.float64)
    if pred.ndim == 2:
        pred = pred[None]
    if gt.ndim == 2:
        gt = gt[None]
    _check_same_shape(pred, gt, 'regression')
    valid = (gt != ignore_index) & np.isfinite(gt)
    if not valid.any():
        return None
    p, g = pred[valid], gt[valid]
    log_sq_sum = None
    if positive:
        if not (g > 0).all():
            raise ValueError(f'a positive regression label (depth) holds {int((g <= 0).sum())} '
                             f'values <= 0 other than ignore_index {ignore_index}')
        p = np.where(p <= 0, 1e-9, p)  # the reference's "avoid overflow/underflow"
        log_err = np.log(g) - np.log(p)
        log_sq_sum = exact_sum(log_err * log_err)
    err = p - g
    return dict(count=int(valid.sum()), sq_sum=exact_sum(err * err),
                abs_sum=exact_sum(np.abs(err)), log_sq_sum=log_sq_sum)


def regression_scores(stats: Sequence[dict]) -> Dict[str, float]:
    """RMSE, log-RMSE and mean absolute error pooled over every labelled pixel of the split.

    As the reference's ``eval_depth`` (and its online ``DepthMeter``): the squared errors of
    all valid pixels of all images are summed and divided by the total number of valid
    pixels, then the square root is taken (per pixel over the split, not a mean of
    per-image RMSEs): ``rmse = sqrt(sum (gt - pred)^2 / n)``, ``log_rmse = sqrt(sum
    (log gt - log max'(pred))^2 / n)``. Sums are float64 ``fsum`` (the reference: float32
    per image), so the order of images and ranks does not change a digit. 'log_rmse' only
    for a positive quantity (``regression_image_stats(positive=True)``).
    """
    n = sum(s['count'] for s in stats)
    if n == 0:
        return dict(rmse=float('nan'), log_rmse=float('nan'), mae=float('nan'),
                    num_images=0, num_pixels=0)
    out = dict(rmse=math.sqrt(math.fsum(s['sq_sum'] for s in stats) / n),
               mae=math.fsum(s['abs_sum'] for s in stats) / n,
               num_images=len(stats), num_pixels=n)
    log_sums = [s.get('log_sq_sum') for s in stats]
    if all(v is not None for v in log_sums):
        out['log_rmse'] = math.sqrt(math.fsum(log_sums) / n)
    return out


# ------------------------------------------------------------------------- edges
#: the reference's thresholds (``eval_edge.py``: ``np.arange(0.01, 1.00, 0.01)`` written
#: as '%.2f' and read back by SEISM): 0.01, 0.02, ..., 0.99
DEFAULT_EDGE_THRESHOLDS = tuple(float(f'{0.01 * i:.2f}') for i in range(1, 100))
#: SEISM's / BSDS' default matching tolerance (fraction of the image diagonal); the
#: multi-task benchmark (ATRC, MTI-Net evaluation) uses 0.0075 on PASCAL-Context and 0.011
#: on NYUD-v2
DEFAULT_EDGE_MAX_DIST = 0.0075


def edge_image_stats(pred, gt, thresholds: Sequence[float] = DEFAULT_EDGE_THRESHOLDS,
                     max_dist: float = DEFAULT_EDGE_MAX_DIST, ignore_index: int = 255,
                     thin: bool = True, impl: str = 'compiled') -> Optional[np.ndarray]:
    """Boundary-matching counts of one edge map at every threshold (the BSDS / SEISM
    ``fb`` measure).

    The probability is quantised as the reference's PNG (``floor(255 p)``, a uint8 input
    is taken as already quantised); at threshold t a pixel is an edge when ``q / 255 >= t``
    (the reference's ``read_one_png.m``), the binary map is thinned to one-pixel width
    (``thin``: scikit-image's ``thin``, MATLAB's ``bwmorph(.., 'thin', inf)`` as SEISM's
    ``read_one_cont_png`` and the BSDS benchmark apply it) and its pixels are matched one to
    one with the label's edge pixels within ``max_dist`` times the image diagonal
    (:func:`match_edge_pixels`). Deviation: label pixels equal to ``ignore_index`` are taken
    out of both maps (the benchmark's labels have none). Both steps are compiled
    (:mod:`mmpoly.evaluation.metrics.edges`); ``impl='reference'`` runs scikit-image's
    ``thin`` and a maximum flow in scipy instead (the same counts, about 30 times slower: the
    tests' oracle).

    Args:
        pred: edge probability (float) or quantised uint8 map, (1, H, W) or (H, W).
        gt: label, 1 (non-zero) = edge, 0 = none, ``ignore_index`` = no label.
        thresholds: T thresholds in (0, 1].
        max_dist: matching tolerance, a fraction of the image diagonal.
        ignore_index: label value without a label.
        thin: thin the thresholded prediction (morphological thinning).
        impl: 'compiled' or 'reference'.

    Returns:
        int64 array (4, T): rows cntR (matched label pixels), sumR (label edge pixels),
        cntP (matched predicted pixels), sumP (predicted edge pixels); None when the image
        has no labelled pixel.
    """
    q, gt = _squeeze_map(quantize_probability(pred)), _squeeze_map(gt)
    _check_same_shape(q, gt, 'edge')
    valid = gt != ignore_index
    if not valid.any():
        return None
    gt_edge = valid & (gt != 0)
    q = np.where(valid, q, 0)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    # the smallest quantised level each threshold keeps (MATLAB: double(png) / 255 >= t);
    # thresholds that keep the same levels give the same map: match it once
    selects = (np.arange(256) / 255.0)[None, :] >= thresholds[:, None]  # (T, 256)
    first_level = np.where(selects.any(axis=1), selects.argmax(axis=1), 256)
    radius = max_dist * math.hypot(*gt.shape)
    stats = np.zeros((4, len(thresholds)), dtype=np.int64)
    stats[1] = int(gt_edge.sum())
    levels, level_index = np.unique(first_level, return_inverse=True)
    counts = edge_level_counts(q, gt_edge, levels, radius, thin=thin, impl=impl)[level_index]
    stats[0] = stats[2] = counts[:, 0]
    stats[3] = counts[:, 1]
    return stats


def _precision_recall(cnt_r, sum_r, cnt_p, sum_p):
    """SEISM's rules (``gather_measure.m`` / ``eval_cont.m``): no label edge -> R = 1, P = 0;
    no predicted edge -> R = 0, P = 1; else R = cntR / sumR, P = cntP / sumP."""
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(x, dtype=np.float64)
                                  for x in (cnt_r, sum_r, cnt_p, sum_p))
    rec = np.where(sum_r == 0, 1.0, np.where(sum_p == 0, 0.0, cnt_r / np.maximum(sum_r, 1)))
    prec = np.where(sum_r == 0, 0.0, np.where(sum_p == 0, 1.0, cnt_p / np.maximum(sum_p, 1)))
    return prec, rec


def _f_measure(prec, rec):
    total = prec + rec
    return np.where(total == 0, 0.0, 2 * prec * rec / np.where(total == 0, 1.0, total))


def edge_scores(stats: Sequence[np.ndarray],
                thresholds: Sequence[float] = DEFAULT_EDGE_THRESHOLDS) -> Dict[str, object]:
    """ODS and OIS F-measures from per-image counts (``edge_image_stats``), as SEISM.

    ODS (optimal dataset scale): the counts of all images are summed per threshold, P and
    R computed from the sums, F = 2PR / (P + R), and ``odsF`` is the largest F over the
    thresholds (SEISM's ``general_ods``: no interpolation between thresholds). OIS (optimal
    image scale): each image takes its own best threshold (its F from its own counts, the
    first on a tie), those counts are summed and F computed once (``general_ois``).
    Integer sums: exact in any order.

    Returns:
        dict with 'odsF', 'oisF' (percent), 'ods_threshold', and per-threshold 'F',
        'precision', 'recall' (fractions); NaN scores when ``stats`` is empty.
    """
    if len(stats) == 0:
        nan = float('nan')
        return dict(odsF=nan, oisF=nan, ods_threshold=nan, num_images=0)
    s = np.stack(stats).astype(np.int64)  # (N, 4, T)
    total = s.sum(axis=0)
    prec, rec = _precision_recall(*total)
    f = _f_measure(prec, rec)
    best = int(np.argmax(f))
    img_prec, img_rec = _precision_recall(s[:, 0], s[:, 1], s[:, 2], s[:, 3])
    img_best = np.argmax(_f_measure(img_prec, img_rec), axis=1)
    ois_counts = s[np.arange(len(s)), :, img_best].sum(axis=0)
    ois_prec, ois_rec = _precision_recall(*ois_counts)
    return dict(odsF=float(f[best]) * 100, oisF=float(_f_measure(ois_prec, ois_rec)) * 100,
                ods_threshold=float(np.asarray(thresholds)[best]), F=f, precision=prec,
                recall=rec, num_images=len(stats))


def edge_loss_image_stats(pred, gt, pos_weight: float = 0.95,
                          ignore_index: int = 255) -> Optional[dict]:
    """The sums behind the reference's own edge validation number (``EdgeMeter`` of
    ``evaluation/eval_edge.py``) for one image.

    The reference evaluates ``BalancedCrossEntropyLoss(pos_weight)`` on the prediction
    ``255 sigmoid(x) / 255`` -- the *probability* p, which the loss takes as its logit --
    and averages it over every pixel of the split. Per pixel that is
    ``w softplus(-p)`` on edge pixels and ``(1 - w) softplus(p)`` elsewhere (w =
    ``pos_weight``). Here p is the quantised ``q / 255`` (so the PNG files give the same
    number) and label pixels equal to ``ignore_index`` are left out (the reference counts a
    label >= 0.5, 255 included, as an edge).

    Returns:
        dict(count, loss_sum) (exact float64 sum), None without a labelled pixel.
    """
    q, gt = _squeeze_map(quantize_probability(pred)), _squeeze_map(gt)
    _check_same_shape(q, gt, 'edge')
    valid = gt != ignore_index
    if not valid.any():
        return None
    p = q[valid].astype(np.float64) / 255.0
    edge = gt[valid] != 0
    # softplus(-p) = -log(sigmoid(p)); p in [0, 1]: no overflow
    loss = np.where(edge, pos_weight * np.log1p(np.exp(-p)),
                    (1.0 - pos_weight) * np.log1p(np.exp(p)))
    return dict(count=int(valid.sum()), loss_sum=exact_sum(loss))


def edge_loss_score(stats: Sequence[dict]) -> float:
    """The reference's edge validation loss: pooled over every labelled pixel."""
    n = sum(s['count'] for s in stats)
    return math.fsum(s['loss_sum'] for s in stats) / n if n else float('nan')


__all__: List[str] = [
    'DEFAULT_REFERENCE', 'DEFAULT_SAL_THRESHOLDS', 'NORMAL_THRESHOLDS', 'to_numpy',
    'confusion_image_stats', 'is_human_parts_evaluated', 'is_single_value_label_evaluated',
    'iou_scores', 'exact_sum', 'regression_image_stats', 'regression_scores',
    'DEFAULT_EDGE_THRESHOLDS', 'DEFAULT_EDGE_MAX_DIST', 'edge_disk_offsets',
    'match_edge_pixels', 'EdgeMatcher', 'edge_image_stats', 'edge_scores',
    'edge_loss_image_stats', 'edge_loss_score', 'quantize_probability', 'sal_image_stats',
    'sal_scores', 'normalize_normals', 'sum_of_squares', 'sum_of_products', 'quantize_normals',
    'normal_angles', 'normals_image_stats', 'normals_scores'
]
