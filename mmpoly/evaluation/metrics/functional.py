"""Pure functions behind :class:`MultiTaskMetric`, reusable by tools.

Every metric is split in two steps so that it is exact over a whole split and across
distributed ranks:

* ``*_image_stats(pred, gt)`` turns one image into a few small numpy arrays / numbers
  (counts and float64 sums, never a map);
* ``*_scores(list_of_stats)`` combines the statistics of any number of images (in any
  order: float sums use ``math.fsum``, which is exactly rounded, so the order in which
  ranks are gathered cannot change a digit).

They follow the reference evaluation of Multi-Task-Learning-PyTorch
(``evaluation/eval_{semseg,human_parts,sal,normals}.py``, ``evaluation/jaccard.py``);
deviations are listed in each function's docstring.
"""
import math
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from mmpoly.tasks import TaskSpec, default_task_specs, resolve_task_specs

# Class names of the class-map tasks (the order of the label ids).
SEMSEG_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
                  'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
                  'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
                  'tvmonitor')
HUMAN_PARTS_CLASSES = ('background', 'head', 'torso', 'uarm', 'larm', 'uleg', 'lleg')
CLASS_NAMES = dict(semseg=SEMSEG_CLASSES, human_parts=HUMAN_PARTS_CLASSES)

# The main metric of each task of the default dataset (PASCAL-Context), for tools; components
# take it from the task's kind (``TaskSpec.main_metric``).
MAIN_METRICS = dict(semseg='mIoU', human_parts='mIoU', sal='mIoU', normals='mErr')

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
    valid = gt != ignore_index
    pred, gt = pred[valid], gt[valid]
    in_range = (pred >= 0) & (pred < num_classes)
    pred_count = np.bincount(pred[in_range], minlength=num_classes)[:num_classes]
    in_range_gt = (gt >= 0) & (gt < num_classes)
    gt_count = np.bincount(gt[in_range_gt], minlength=num_classes)[:num_classes]
    hit = (pred == gt) & in_range
    tp = np.bincount(pred[hit], minlength=num_classes)[:num_classes]
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
    pos = valid & (gt != 0)
    neg = valid & (gt == 0)
    hist_pos = np.bincount(q[pos], minlength=256).astype(np.int64)
    hist_neg = np.bincount(q[neg], minlength=256).astype(np.int64)
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
def normalize_normals(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Divide by ``max(L2 norm, 1e-12)``.

    The reference's ``normal_ize`` divides by ``norm + 1e-12``; that shifts a perfect
    prediction's angle to ~4e-5 degrees through arccos' steep slope at 1, while the
    clamp keeps it at exactly 0. Otherwise the two agree far below 1e-4 degrees.
    """
    norm = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    return x / np.maximum(norm, 1e-12)


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
    pred = to_numpy(pred).astype(np.float64)
    gt = to_numpy(gt).astype(np.float64)
    if pred.ndim != 3 or pred.shape[0] != 3:
        raise ValueError(f'normals: expected (3, H, W) predictions, got {pred.shape}')
    _check_same_shape(pred, gt, 'normals')
    valid = np.any(gt != 0, axis=0)  # the zero vector marks "no label"
    if quantize:
        pred = quantize_normals(pred)
    pred = normalize_normals(pred[:, valid])
    gt = normalize_normals(gt[:, valid])
    cos = np.clip(np.sum(pred * gt, axis=0), -1.0, 1.0)
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
def regression_image_stats(pred, gt, ignore_index: float = 0.0) -> Optional[dict]:
    """Squared and absolute errors of one image over its labelled elements.

    Args:
        pred: predicted values, (C, H, W) or (H, W).
        gt: labels, same shape; ``ignore_index`` (depth: 0) or a non-finite value = no
            label.

    Returns:
        dict with ``count``, ``sq_sum`` and ``abs_sum`` (exact float64 sums), or None when
        the image has no labelled element.
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
    err = pred[valid] - gt[valid]
    return dict(count=int(valid.sum()), sq_sum=math.fsum((err * err).tolist()),
                abs_sum=math.fsum(np.abs(err).tolist()))


def regression_scores(stats: Sequence[dict]) -> Dict[str, float]:
    """RMSE and mean absolute error pooled over every labelled element of the split."""
    n = sum(s['count'] for s in stats)
    if n == 0:
        return dict(rmse=float('nan'), mae=float('nan'), num_images=0, num_pixels=0)
    return dict(rmse=math.sqrt(math.fsum(s['sq_sum'] for s in stats) / n),
                mae=math.fsum(s['abs_sum'] for s in stats) / n,
                num_images=len(stats), num_pixels=n)


# ------------------------------------------------------------------------ delta_m
def delta_m(results: Mapping[str, float],
            reference: Mapping[str, float],
            tasks: Optional[Sequence[str]] = None,
            task_specs: Optional[Mapping[str, object]] = None) -> Optional[float]:
    r"""Multi-task performance :math:`\Delta_m` in percent.

    :math:`\Delta_m = \frac{1}{T} \sum_t (-1)^{l_t} (M_t - M^{ref}_t) / M^{ref}_t \times 100`
    with :math:`l_t = 1` for a lower-is-better main metric (normals mErr).

    Args:
        results: main metric per task, keyed by task name (``{'semseg': 68.7}``) or
            by metric key (``{'semseg/mIoU': 68.7, 'normals/mErr': 17.4, ...}``).
        reference: single-task value of the main metric per task, same units.
        tasks: tasks to average over; default: every task with both a finite result
            and a reference value.
        task_specs: task -> ``TaskSpec`` (main metric and direction by kind); default:
            the default dataset's tasks.

    Returns:
        Δm in percent (e.g. 2.23 for +2.23 %), or None when no task can be compared.
    """
    specs = _specs(task_specs)
    values = {}
    for task, spec in specs.items():
        for key in (task, f'{task}/{spec.main_metric}'):
            if key in results and results[key] is not None:
                values[task] = float(results[key])
    if tasks is None:
        tasks = [t for t in specs if t in values and t in reference]
    tasks = [t for t in tasks if t in values and t in reference
             and math.isfinite(values[t])]
    if not tasks:
        return None
    total = 0.0
    for t in tasks:
        ref = float(reference[t])
        sign = -1.0 if specs[t].lower_is_better else 1.0
        total += sign * (values[t] - ref) / ref
    return total / len(tasks) * 100


def _specs(task_specs) -> Dict[str, TaskSpec]:
    if task_specs is None:
        task_specs = default_task_specs()
        return resolve_task_specs(tuple(task_specs), task_specs)
    return {t: TaskSpec.from_any(s, t) for t, s in task_specs.items()}


def main_metric_key(task: str, spec: Optional[TaskSpec] = None) -> str:
    """'semseg' -> 'semseg/mIoU', 'normals' -> 'normals/mErr' (the main metric of the
    task's kind; ``spec`` default: the default dataset's spec of ``task``)."""
    if spec is None:
        spec = _specs(None)[task]
    return f'{task}/{spec.main_metric}'


__all__: List[str] = [
    'SEMSEG_CLASSES', 'HUMAN_PARTS_CLASSES', 'CLASS_NAMES', 'MAIN_METRICS',
    'DEFAULT_REFERENCE', 'DEFAULT_SAL_THRESHOLDS', 'NORMAL_THRESHOLDS', 'to_numpy',
    'confusion_image_stats', 'is_human_parts_evaluated', 'is_single_value_label_evaluated',
    'iou_scores', 'regression_image_stats', 'regression_scores',
    'quantize_probability', 'sal_image_stats', 'sal_scores', 'normalize_normals',
    'quantize_normals', 'normal_angles', 'normals_image_stats', 'normals_scores',
    'delta_m', 'main_metric_key'
]
