"""Task kinds: everything that depends on what a task predicts, one class per kind.

A ``TaskSpec`` names its kind ('class', 'binary', 'normal', 'regression', 'edge'); every
component asks the kind's object (``spec.task_kind``) instead of branching on the name:

- head: the default loss (``default_loss``);
- segmentor: logits -> prediction (``predict``);
- transforms: how a label is moved, flipped, turned and packed (``warp_label``,
  ``flip_label``, ``rotate_label``, ``pack_label``, ``label_dtype``);
- metric: main metric and direction, reported keys, per-image statistics and split scores
  (``image_stats``, ``scores``: the pure functions of
  ``mmpoly.evaluation.metrics.functional``), prediction checks;
- prediction writer: file formats, encode / decode (``encode_prediction``,
  ``decode_prediction``);
- visualiser: the picture (``to_rgb``);
- benchmark: a random label (``random_label``).

A new kind is one subclass registered with :func:`register_task_kind` (a dataset module may
register its own). This module imports no other mmpoly module at import time (``tasks.py``,
which everything imports, imports it); the evaluation helpers are imported where used.
"""
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# colour of label pixels without a label (ignore / no person) in pictures
IGNORE_COLOUR = (255, 255, 255)
# the PASCAL VOC colour map: the colours of class maps whose dataset gives no palette
VOC_PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
               [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0],
               [192, 128, 0], [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128],
               [0, 64, 0], [128, 64, 0], [0, 192, 0], [128, 192, 0], [0, 64, 128]]

# warp(array, cv2 interpolation flag, fill value) -> moved array
Warp = Callable[[np.ndarray, int, float], np.ndarray]


def _functional():
    # imported where used: the metric package imports tasks.py, which imports this module
    from mmpoly.evaluation.metrics import functional
    return functional


def _map(x: np.ndarray) -> np.ndarray:
    """(1, H, W) -> (H, W); anything else as it is."""
    return x[0] if x.ndim == 3 and x.shape[0] == 1 else x


def _first(x: np.ndarray) -> np.ndarray:
    """The first channel of a (C, H, W) array; an (H, W) one as it is."""
    return x[0] if x.ndim == 3 else x


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _check_grey(task: str, array: np.ndarray, path: str) -> None:
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f'prediction file {path}: {task} must be 8-bit gray, got '
                         f'{array.dtype} of shape {array.shape}')


class TaskKind:
    """What a kind of dense task means to every component (the defaults: a map of integer
    labels, moved by nearest interpolation).

    Class attributes:
        name: the ``TaskSpec.kind`` that selects it.
        main_metric: the metric Δm compares (the first of ``metric_keys``).
        lower_is_better: direction of the main metric.
        loss: the default loss config (weight 1).
        metric_keys: the metrics reported per task (``<task>/<key>``).
        prediction_formats: file formats of written predictions (the first: the default).
        label_dtype: the dtype of labels read from a generic ``.npy``.
    """
    name: str = ''
    main_metric: str = ''
    lower_is_better: bool = False
    loss: Dict[str, Any] = {}
    metric_keys: Tuple[str, ...] = ()
    prediction_formats: Tuple[str, ...] = ('png', )
    label_dtype = np.uint8

    # ----------------------------------------------------------------- spec and model
    def check_spec(self, spec) -> None:
        """Raise ``ValueError`` for a spec this kind cannot serve."""

    def default_loss(self, spec) -> dict:
        """The loss config of a spec that gives none."""
        return dict(self.loss)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """(C, H, W) logits -> the ``pred_<task>`` tensor."""
        return logits

    # ----------------------------------------------------------------- labels
    def warp_label(self, label: np.ndarray, warp: Warp, spec) -> np.ndarray:
        """Move a label (HxW or HxWxC) with ``warp``; ``pad_value`` outside the image."""
        return warp(label, cv2.INTER_NEAREST, spec.pad_value)

    def flip_label(self, label: np.ndarray) -> np.ndarray:
        """A horizontally flipped label's values (the pixels are already flipped)."""
        return label

    def rotate_label(self, label: np.ndarray, cos: float, sin: float) -> None:
        """Turn a rotated label's values in place (the pixels are already rotated)."""

    def pack_label(self, label: np.ndarray) -> np.ndarray:
        """A label as loaded (HxW or HxWxC) -> the (C, H, W) array of ``gt_<task>``."""
        return label[None].astype(np.int64)

    def random_label(self, spec, size: int, generator: torch.Generator) -> torch.Tensor:
        """A random ``gt_<task>`` of ``size`` x ``size`` pixels (benchmark inputs)."""
        raise NotImplementedError(f'{type(self).__name__}.random_label')

    # ----------------------------------------------------------------- metric
    def check_prediction(self, task: str, values: torch.Tensor, spec, who: str,
                         where: str) -> None:
        """Raise for a prediction the metric cannot score (finiteness is checked before)."""

    def image_stats(self, metric, pred, gt, spec) -> Optional[Any]:
        """One image's statistics for ``metric`` (a ``MultiTaskMetric``); None skips it."""
        raise NotImplementedError(f'{type(self).__name__}.image_stats')

    def scores(self, metric, stats: Sequence[Any]) -> dict:
        """The split's scores from the images' statistics (``num_images`` included)."""
        raise NotImplementedError(f'{type(self).__name__}.scores')

    def score_details(self, task: str, spec, scores: dict) -> Optional[str]:
        """A table logged besides the summary (None: none)."""
        return None

    # ----------------------------------------------------------------- files and pictures
    def encode_prediction(self, task: str, data, spec) -> np.ndarray:
        """A ``pred_<task>`` tensor -> the array written in ``spec.prediction_format``."""
        raise NotImplementedError(f'{type(self).__name__}.encode_prediction')

    def decode_prediction(self, task: str, array: np.ndarray, spec,
                          path: str) -> torch.Tensor:
        """The array read from a prediction file -> the ``pred_<task>`` tensor."""
        raise NotImplementedError(f'{type(self).__name__}.decode_prediction')

    def to_rgb(self, x: np.ndarray, is_label: bool, spec, palette=None) -> np.ndarray:
        """A label or prediction (numpy) -> HxWx3 uint8 RGB."""
        raise NotImplementedError(f'{type(self).__name__}.to_rgb')


#: kind name -> its object
TASK_KINDS: Dict[str, TaskKind] = {}


def register_task_kind(cls):
    """Class decorator: register one instance of a ``TaskKind`` subclass under its ``name``
    (a kind registered again replaces the earlier one)."""
    if not (isinstance(cls, type) and issubclass(cls, TaskKind)) or not cls.name:
        raise TypeError(f'register_task_kind: expected a named TaskKind subclass, got {cls!r}')
    if cls.main_metric not in cls.metric_keys:
        raise ValueError(f'{cls.__name__}: main_metric {cls.main_metric!r} is not one of its '
                         f'metric_keys {cls.metric_keys}')
    TASK_KINDS[cls.name] = cls()
    return cls


def task_kind(name: str) -> TaskKind:
    """The registered kind ``name``; an unknown name is a ``ValueError`` listing the known."""
    if name not in TASK_KINDS:
        raise ValueError(f'unknown task kind {name!r}; known kinds: {list(TASK_KINDS)}')
    return TASK_KINDS[name]


class _ProbabilityKind(TaskKind):
    """One logit -> probability; 0/1 labels, 255 = ignore; 8-bit PNG of floor(255 p)."""

    def predict(self, logits):
        return logits.sigmoid()

    def random_label(self, spec, size, generator):
        return torch.randint(0, 2, (1, size, size), generator=generator, dtype=torch.int64)

    def encode_prediction(self, task, data, spec):
        fn = _functional()
        prob = _map(fn.to_numpy(data))
        if prob.ndim != 2:
            raise ValueError(f'{task}: expected a (1, H, W) probability map, got {prob.shape}')
        return fn.quantize_probability(prob)

    def decode_prediction(self, task, array, spec, path):
        _check_grey(task, array, path)
        return torch.from_numpy(array[None])

    def to_rgb(self, x, is_label, spec, palette=None):
        # white = salient / edge; the probability as grey
        m = _first(x)
        if is_label:
            grey = np.where(m == 1, 255, 0).astype(np.uint8)
        else:
            grey = np.clip(np.floor(m.astype(np.float32) * 255), 0, 255).astype(np.uint8)
        rgb = _grey_rgb(grey)
        if is_label:
            rgb[m == 255] = IGNORE_COLOUR
        return rgb


@register_task_kind
class ClassKind(TaskKind):
    """``num_outputs`` class logits -> class ids; mIoU; pixel cross-entropy."""
    name = 'class'
    main_metric = 'mIoU'
    loss = dict(type='PixelCrossEntropyLoss')
    metric_keys = ('mIoU', )

    def check_spec(self, spec):
        if spec.classes and len(spec.classes) != spec.num_outputs:
            raise ValueError(f'{len(spec.classes)} class names for {spec.num_outputs} classes')

    def predict(self, logits):
        return logits.argmax(dim=0, keepdim=True)

    def random_label(self, spec, size, generator):
        # class ids within range, with a few ignored pixels
        data = torch.randint(0, spec.num_outputs, (1, size, size), generator=generator,
                             dtype=torch.int64)
        data[torch.rand(1, size, size, generator=generator) < 0.05] = int(spec.pad_value)
        return data

    def check_prediction(self, task, values, spec, who, where):
        num = spec.num_outputs
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num):
            raise ValueError(f'{who}: the {task} prediction{where} has class ids outside '
                             f'[0, {num}): min {int(values.min())}, max {int(values.max())}')

    def image_stats(self, metric, pred, gt, spec):
        fn = _functional()
        ignore = metric.ignore_of(spec)
        if spec.skip_single_value_labels and not fn.is_single_value_label_evaluated(
                gt, ignore):
            return None
        return fn.confusion_image_stats(pred, gt, spec.num_outputs, ignore)

    def scores(self, metric, stats):
        return _functional().iou_scores(stats)

    def score_details(self, task, spec, scores):
        if scores['num_images'] == 0:
            return None
        from prettytable import PrettyTable
        table = PrettyTable(field_names=['Class', 'IoU'])
        names = spec.classes or [str(i) for i in range(spec.num_outputs)]
        for name, iou in zip(names, scores['IoU']):
            table.add_row([name, f'{iou:.2f}'])
        return f'{task} per-class IoU:\n' + table.get_string()

    def encode_prediction(self, task, data, spec):
        ids = _map(_functional().to_numpy(data))
        if ids.ndim != 2:
            raise ValueError(f'{task}: expected (1, H, W) class ids, got {ids.shape}')
        if ids.min() < 0 or ids.max() >= spec.num_outputs:
            raise ValueError(f'{task}: class ids outside 0..{spec.num_outputs - 1}')
        return ids.astype(np.uint8)

    def decode_prediction(self, task, array, spec, path):
        _check_grey(task, array, path)
        bad = array >= spec.num_outputs
        if bad.any():
            raise ValueError(f'prediction file {path}: class ids {np.unique(array[bad])} '
                             f'outside 0..{spec.num_outputs - 1}')
        return torch.from_numpy(array[None].astype(np.int64))

    def to_rgb(self, x, is_label, spec, palette=None):
        # the palette's colours, VOC's without one; 255 (ignore / no person) white
        m = _first(x)
        table = np.zeros((256, 3), dtype=np.uint8)
        colours = np.asarray(palette if palette is not None else VOC_PALETTE, dtype=np.uint8)
        table[:len(colours)] = colours[:256]
        table[255] = IGNORE_COLOUR
        return table[np.clip(m.astype(np.int64), 0, 255)]


@register_task_kind
class BinaryKind(_ProbabilityKind):
    """One logit -> probability; mIoU / maxF over thresholds; balanced BCE."""
    name = 'binary'
    main_metric = 'mIoU'
    loss = dict(type='BalancedBCELoss')
    metric_keys = ('mIoU', 'maxF')

    def image_stats(self, metric, pred, gt, spec):
        return _functional().sal_image_stats(pred, gt, metric.sal_thresholds,
                                             metric.ignore_of(spec))

    def scores(self, metric, stats):
        return _functional().sal_scores(stats)


@register_task_kind
class NormalKind(TaskKind):
    """3 outputs -> unit vector; mean angular error; L1 on normalised vectors. Labels are
    HxWx3 float32 (x right, y down, z to the camera), the zero vector = no label."""
    name = 'normal'
    main_metric = 'mErr'
    lower_is_better = True
    loss = dict(type='NormalL1Loss')
    metric_keys = ('mErr', 'median', 'rmse', '11.25', '22.5', '30')
    label_dtype = np.float32

    def predict(self, logits):
        return F.normalize(logits, dim=0)

    def warp_label(self, label, warp, spec):
        # bilinear, then unit length again; a validity mask moved with nearest keeps the
        # invalid (zero) pixels invalid
        fn = _functional()
        valid = fn.labelled_normals(label).view(np.uint8)
        moved = warp(label.astype(np.float32), cv2.INTER_LINEAR, 0)
        moved_valid = warp(valid, cv2.INTER_NEAREST, 0).astype(bool)
        return fn.normalize_normals(moved, axis=2, valid=moved_valid, eps=1e-6)

    def flip_label(self, label):
        label[..., 0] *= -1  # the surface now faces the other way
        return label

    def rotate_label(self, label, cos, sin):
        x, y = label[..., 0].copy(), label[..., 1].copy()
        label[..., 0] = x * cos + y * sin
        label[..., 1] = -x * sin + y * cos

    def pack_label(self, label):
        return label.transpose(2, 0, 1).astype(np.float32)

    def random_label(self, spec, size, generator):
        n = torch.randn(3, size, size, generator=generator)
        return n / n.norm(dim=0, keepdim=True).clamp_min(1e-6)

    def image_stats(self, metric, pred, gt, spec):
        return _functional().normals_image_stats(pred, gt, quantize=metric.quantize_normals,
                                                 bin_width=metric.normals_bin_width)

    def scores(self, metric, stats):
        return _functional().normals_scores(stats, metric.normals_bin_width)

    def encode_prediction(self, task, data, spec):
        fn = _functional()
        normals = fn.to_numpy(data).astype(np.float64)
        if normals.ndim != 3 or normals.shape[0] != 3:
            raise ValueError(f'{task}: expected (3, H, W) normals, got {normals.shape}')
        # quantize_normals gives 2 v / 255 - 1 for the integer v = floor(255 (n + 1) / 2)
        v = np.rint((fn.quantize_normals(normals) + 1.0) * 255.0 / 2.0)
        return v.astype(np.uint8).transpose(1, 2, 0)

    def decode_prediction(self, task, array, spec, path):
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f'prediction file {path}: normals must be 8-bit RGB, got '
                             f'{array.dtype} of shape {array.shape}')
        normals = 2.0 * array.astype(np.float64) / 255.0 - 1.0
        return torch.from_numpy(np.ascontiguousarray(normals.transpose(2, 0, 1)))

    def to_rgb(self, x, is_label, spec, palette=None):
        # the dataset's PNG encoding 255 (n + 1) / 2; no label black
        n = x.astype(np.float32)
        rgb = np.clip(np.floor((n + 1.0) * 255.0 / 2.0), 0, 255).astype(np.uint8)
        rgb = rgb.transpose(1, 2, 0)
        if is_label:
            rgb[~np.any(n != 0, axis=0)] = 0
        return np.ascontiguousarray(rgb)


@register_task_kind
class RegressionKind(TaskKind):
    """``num_outputs`` values (depth: 1) as predicted; RMSE; L1 on valid pixels (the spec's
    ``ignore_index`` is no label)."""
    name = 'regression'
    main_metric = 'rmse'
    lower_is_better = True
    loss = dict(type='RegressionL1Loss')
    metric_keys = ('rmse', 'log_rmse', 'mae')
    prediction_formats = ('npy', 'mat')
    label_dtype = np.float32

    def default_loss(self, spec):
        return dict(self.loss, ignore_index=spec.ignore_index)

    def pack_label(self, label):
        if label.ndim == 3:
            return label.transpose(2, 0, 1).astype(np.float32)
        return label[None].astype(np.float32)

    def random_label(self, spec, size, generator):
        return torch.rand(spec.num_outputs, size, size, generator=generator) + 0.5

    def image_stats(self, metric, pred, gt, spec):
        return _functional().regression_image_stats(pred, gt, spec.ignore_index,
                                                    spec.positive)

    def scores(self, metric, stats):
        return _functional().regression_scores(stats)

    def encode_prediction(self, task, data, spec):
        values = _functional().to_numpy(data).astype(np.float32)
        if spec.prediction_format == 'mat':
            values = _map(values)
            if values.ndim != 2:
                raise ValueError(f'{task}: a .mat prediction holds one (H, W) map, got '
                                 f'shape {values.shape}')
        return values

    def decode_prediction(self, task, array, spec, path):
        return torch.from_numpy(array)

    def to_rgb(self, x, is_label, spec, palette=None):
        # the first channel, grey from its min (black) to its max
        m = _first(x).astype(np.float64)
        valid = np.isfinite(m) & (m != spec.ignore_index) if is_label else np.isfinite(m)
        lo, hi = (m[valid].min(), m[valid].max()) if valid.any() else (0.0, 1.0)
        grey = np.clip((m - lo) / max(hi - lo, 1e-12) * 255, 0, 255)
        rgb = _grey_rgb(np.where(valid, grey, 0).astype(np.uint8))
        if is_label:
            rgb[~valid] = IGNORE_COLOUR
        return rgb


@register_task_kind
class EdgeKind(_ProbabilityKind):
    """One logit -> edge probability; ODS F-measure (boundary matching within a tolerance);
    BCE with the reference's fixed positive weight 0.95 (Multi-Task-Learning-PyTorch's
    ``edge_w``)."""
    name = 'edge'
    main_metric = 'odsF'
    loss = dict(type='BalancedBCELoss', pos_weight=0.95)
    metric_keys = ('odsF', 'oisF', 'loss')

    def image_stats(self, metric, pred, gt, spec):
        fn = _functional()
        ignore = metric.ignore_of(spec)
        loss = fn.edge_loss_image_stats(pred, gt, metric.edge_pos_weight, ignore)
        if loss is None:
            return None
        match = None
        if metric.edge_ods:  # matching is the slow part (seconds per image)
            match = fn.edge_image_stats(pred, gt, metric.edge_thresholds,
                                        metric.edge_max_dist_of(spec), ignore,
                                        thin=metric.edge_thin)
        return dict(match=match, loss=loss)

    def scores(self, metric, stats):
        fn = _functional()
        scores = (fn.edge_scores([s['match'] for s in stats], metric.edge_thresholds)
                  if metric.edge_ods else dict(num_images=len(stats)))
        scores['loss'] = fn.edge_loss_score([s['loss'] for s in stats])
        return scores


__all__ = ['TaskKind', 'TASK_KINDS', 'register_task_kind', 'task_kind', 'VOC_PALETTE',
           'IGNORE_COLOUR']
