"""One metric for the multi-task tasks of any dataset (PASCAL-Context, NYUD-v2), by task kind,
plus the multi-task Δm."""
import logging
import math
from typing import Any, Dict, Mapping, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from prettytable import PrettyTable

from mmseg.registry import METRICS
from mmpoly.tasks import TaskSpec, check_tasks, resolve_task_specs
from .delta import delta_m, incomparable_tasks, main_metric_key
from .functional import DEFAULT_EDGE_MAX_DIST, DEFAULT_EDGE_THRESHOLDS, DEFAULT_SAL_THRESHOLDS


def _get_data(sample, name: str):
    """``sample[name]['data']`` of a data-sample dict or ``sample.name.data``; None if
    the field is absent."""
    if isinstance(sample, dict):
        field = sample.get(name)
    else:
        field = getattr(sample, name, None)
    if field is None:
        return None
    if isinstance(field, dict):
        return field.get('data')
    return getattr(field, 'data', field)


def check_prediction(task: str, pred, data_sample=None, who: str = 'MultiTaskMetric',
                     spec: Optional[TaskSpec] = None) -> None:
    """Refuse a non-finite prediction (or a class id out of range) with a clear error, instead
    of a crash elsewhere (``np.bincount`` of negative ids) or a silent score."""
    import numpy as np
    import torch
    if spec is None:
        raise ValueError(f'{who}: no task spec for {task!r}')
    values = pred if isinstance(pred, torch.Tensor) else torch.as_tensor(np.asarray(pred))
    where = ''
    if data_sample is not None:
        meta = data_sample if isinstance(data_sample, dict) else getattr(
            data_sample, 'metainfo', {})
        path = meta.get('img_path') if isinstance(meta, dict) else None
        where = f' of image {path}' if path else ''
    if values.is_floating_point():
        if not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).sum())
            raise FloatingPointError(
                f'{who}: the {task} prediction{where} has {bad} non-finite values (NaN/Inf): '
                'the model diverged (non-finite weights); evaluate a checkpoint written '
                'before the divergence')
    spec.task_kind.check_prediction(task, values, spec, who, where)


def _as_dict(spec) -> dict:
    if spec is None:
        return {}
    return spec.to_dict() if isinstance(spec, TaskSpec) else dict(spec)


@METRICS.register_module()
class MultiTaskMetric(BaseMetric):
    """Reference evaluation of PASCAL-Context multi-task (and any dataset's tasks), and Δm.

    Each task is evaluated by its kind (``TaskSpec``, from the ``task_specs`` argument,
    else the ``dataset_meta['task_specs']`` the runner gives, else the default dataset's):
    'class' as semseg / human_parts, 'binary' as sal, 'normal' as normals, 'regression'
    (depth) by RMSE (main, lower is better) and mean absolute error over labelled pixels.

    Follows Multi-Task-Learning-PyTorch's offline evaluation
    (``evaluation/eval_*.py``) on predictions at the original image size:

    - semseg / human_parts: per-class tp, fp, fn summed over the split (label 255
      skipped), IoU = tp / max(tp + fp + fn, 1e-8), mIoU = mean over all 21 / 7
      classes (a class absent from labels and predictions counts as 0, as in the
      reference). human_parts skips an image whose label is a single value 0 or 255
      (no person), exactly the reference's test.
    - sal: probability quantised to uint8 by truncation (the reference's PNG), salient
      where ``q / 255 > t`` (compared in float32, as the reference); per image and
      threshold Jaccard, precision, recall (``jaccard.py``), averaged over images;
      F = 2PR / (P + R) on the averages. ``sal/mIoU`` and ``sal/maxF`` are the maxima
      over thresholds. Deviation: label pixels equal to 255 are excluded (as void
      pixels) and an image without any valid pixel is skipped; the reference's labels
      have no ignore value.
    - normals: prediction and label normalised, angle = degrees(arccos(clip(<p, g>,
      -1, 1))) per valid (non-zero label) pixel, pooled over the split: mean (mErr),
      median, rmse, % under 11.25 / 22.5 / 30 degrees (strict). Sums are exact
      (float64 fsum, int64 counts); the median comes from a histogram summed over
      images, exact to ``normals_bin_width / 2`` degrees. Deviation: by default the
      prediction is not put through the reference's 8-bit PNG round trip (which adds
      about 0.1-0.4 degrees of quantisation error per pixel); set
      ``quantize_normals=True`` to reproduce it. Angles are computed in float64
      (reference: float32).
    - depth (regression kind, ``positive`` spec): as the reference's ``eval_depth``: over
      the valid pixels (label != ``ignore_index``, 0 for depth) of the whole split, with a
      prediction <= 0 taken as 1e-9, rmse = sqrt(sum (gt - pred)^2 / n) and log_rmse =
      sqrt(sum (log gt - log pred)^2 / n), pooled per pixel (not a mean of per-image
      values); also the mean absolute error 'mae'. float64 sums (reference: float32). A
      regression task without ``positive`` gets rmse and mae of the raw prediction.
    - edge: the boundary benchmark's F-measure (SEISM / BSDS ``fb``, as the reference and
      ATRC evaluate): probability quantised as the reference's PNG, thresholded at each of
      ``edge_thresholds`` (``q / 255 >= t``), thinned (``edge_thin``), matched one to one
      with the label's edge pixels within ``max_dist`` x the image diagonal (the task
      spec's ``max_dist``: 0.0075 PASCAL-Context, 0.011 NYUD-v2; ``edge_max_dist``
      overrides; a maximum bipartite matching, ``match_edge_pixels``). Counts summed over
      the split per threshold: odsF = max over thresholds of F (percent); oisF with each
      image's best threshold. 'loss' is
      the reference's own validation number (its ``EdgeMeter``: the weighted BCE with
      ``edge_pos_weight`` over every pixel, with the probability as the loss's input).
    - delta_m: (1/T) sum_t (-1)^{l_t} (M_t - M_t^ref) / M_t^ref x 100 over the
      evaluated tasks that have a reference value and a result, with M = semseg
      mIoU, human_parts mIoU, sal mIoU, normals mErr (lower is better). Omitted when
      no task can be compared (e.g. ``reference={}``).

    ``process`` keeps one small record of per-image statistics per sample (never a
    map), so mmengine's ``collect_results`` (which keeps one entry per dataset sample
    and drops the padding of distributed samplers) gives the same numbers on any
    number of ranks. A sample without ``gt_<task>`` is skipped for that task.

    Returned keys (percent / degrees): 'semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU',
    'sal/maxF', 'normals/mErr', 'normals/median', 'normals/rmse', 'normals/11.25',
    'normals/22.5', 'normals/30'; for NYUD-v2 also 'depth/rmse', 'depth/log_rmse',
    'depth/mae' (metres), 'edge/odsF', 'edge/oisF' (percent), 'edge/loss' (only those of
    ``tasks``) and 'delta_m'. Per-class
    IoU and per-task image counts are printed in the log tables.

    Args:
        tasks (Sequence[str], optional): tasks to evaluate. Default (None): the tasks of
            the dataset (``dataset_meta['tasks']``, which the runner sets).
        reference (dict, optional): task -> single-task value of its main metric for
            Δm (a dataset base config gives it; PASCAL's: the paper's Swin-T numbers).
            Default (None): none, Δm is not reported.
        sal_thresholds (Sequence[float]): saliency thresholds. Default:
            ``np.linspace(0.2, 0.9, 15)``.
        quantize_normals (bool): reproduce the reference's 8-bit PNG round trip of
            predicted normals. Default: False.
        normals_bin_width (float): histogram bin (degrees) for the median. Default:
            0.05 (about 10 KB per image; 0.01 would need about 40 KB).
        edge_thresholds (Sequence[float]): edge thresholds in (0, 1]. Default: the
            reference's 0.01, 0.02, ..., 0.99.
        edge_max_dist (float, optional): edge matching tolerance (fraction of the image
            diagonal) for every edge task. Default (None): each task's ``max_dist``, else
            0.0075.
        edge_thin (bool): thin the thresholded edge maps before matching. Default: True.
        edge_ods (bool): compute odsF / oisF. Thinning and matching at every threshold
            cost about 0.35 s of CPU per 480 x 640 image (compiled, numba)
            (``tools/benchmark_edges.py``; the reference runs it once, offline, through
            SEISM, and validates on the loss during training); False
            reports only 'edge/loss' (and Δm leaves the edge task out), e.g. for a
            ``val_evaluator``. Default: True.
        edge_pos_weight (float): positive weight of the reference's edge validation loss.
            Default: 0.95.
        ignore_index (int, optional): ignore label of class maps and saliency. Default
            (None): each task's ``ignore_index``.
        task_specs (dict, optional): task -> ``TaskSpec`` fields overriding the dataset's
            (``dataset_meta['task_specs']``, which the runner sets). A metric used outside
            a runner needs ``dataset_meta`` set or complete specs here.
        collect_device (str): 'cpu' or 'gpu', see ``BaseMetric``. Default: 'cpu'.
        prefix (str, optional): prefix of the metric names. Default: None.
        collect_dir (str, optional): temporary directory for ``collect_device='cpu'``.
    """
    default_prefix: Optional[str] = None

    def __init__(self,
                 tasks: Optional[Sequence[str]] = None,
                 reference: Optional[Dict[str, float]] = None,
                 sal_thresholds: Sequence[float] = DEFAULT_SAL_THRESHOLDS,
                 quantize_normals: bool = False,
                 normals_bin_width: float = 0.05,
                 edge_thresholds: Sequence[float] = DEFAULT_EDGE_THRESHOLDS,
                 edge_max_dist: Optional[float] = None,
                 edge_thin: bool = True,
                 edge_ods: bool = True,
                 edge_pos_weight: float = 0.95,
                 ignore_index: Optional[int] = None,
                 task_specs: Optional[Mapping[str, Any]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if kwargs:
            raise TypeError(f'{self.__class__.__name__}.__init__() got an unexpected keyword '
                            f'argument {next(iter(kwargs))!r}')
        self._tasks_arg = None if tasks is None else check_tasks(
            tasks, where=f'{self.__class__.__name__}.tasks')
        reference = dict(reference or {})
        for task, value in reference.items():
            if not value > 0:
                raise ValueError(f'reference[{task!r}] must be positive, got {value}')
        self.reference = reference
        self.sal_thresholds = tuple(float(t) for t in sal_thresholds)
        if not self.sal_thresholds:
            raise ValueError('sal_thresholds must not be empty')
        self.quantize_normals = quantize_normals
        if not 0 < normals_bin_width <= 180:
            raise ValueError(f'normals_bin_width must be in (0, 180], got '
                             f'{normals_bin_width}')
        self.normals_bin_width = float(normals_bin_width)
        self.edge_thresholds = tuple(float(t) for t in edge_thresholds)
        if not self.edge_thresholds or not all(0 < t <= 1 for t in self.edge_thresholds):
            raise ValueError(f'edge_thresholds must be a non-empty list of values in (0, 1], '
                             f'got {edge_thresholds}')
        if edge_max_dist is not None and not 0 < edge_max_dist < 1:
            raise ValueError(f'edge_max_dist must be in (0, 1), got {edge_max_dist}')
        self.edge_max_dist = edge_max_dist
        self.edge_thin = bool(edge_thin)
        self.edge_ods = bool(edge_ods)
        self.edge_pos_weight = float(edge_pos_weight)
        self.ignore_index = ignore_index
        self._task_specs_arg = dict(task_specs) if task_specs else None
        self._specs: Optional[Dict[str, TaskSpec]] = None
        if self._task_specs_arg is not None and self._tasks_arg is not None:
            self.task_specs  # noqa: B018  (an unknown task is an error now, not at evaluation)

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        BaseMetric.dataset_meta.fset(self, dataset_meta)
        self._specs = None  # resolved again with the dataset's task specs

    @property
    def tasks(self) -> tuple:
        """The evaluated tasks: ``tasks`` as given, else the dataset's."""
        if self._tasks_arg is not None:
            return self._tasks_arg
        meta = self.dataset_meta or {}
        tasks = meta.get('tasks') or tuple(meta.get('task_specs') or ()) or tuple(
            self._task_specs_arg or ())
        if not tasks:
            raise ValueError(f'{self.__class__.__name__}: no tasks: give tasks=[...] or run it '
                             'in a runner, which sets dataset_meta from the dataset')
        return check_tasks(tasks, where=f'{self.__class__.__name__}.tasks')

    @property
    def task_specs(self) -> Dict[str, TaskSpec]:
        """The ``TaskSpec`` of every evaluated task (resolved on first use, once the runner
        has set ``dataset_meta``)."""
        if self._specs is None:
            meta = self.dataset_meta or {}
            base = meta.get('task_specs') or {}
            given = self._task_specs_arg or {}
            merged = {t: dict(_as_dict(base.get(t)), **_as_dict(given.get(t)))
                      for t in {**base, **given}}
            where = f'{self.__class__.__name__}.tasks'
            if not merged:
                raise ValueError(f'{where}: no task specs: the runner sets them from the '
                                 "dataset's metainfo (dataset_meta); outside a runner set "
                                 'dataset_meta or give task_specs')
            self._specs = resolve_task_specs(self.tasks, merged, where=where)
            unknown = sorted(set(self.reference) - set(merged) - set(self._specs))
            if unknown:
                raise ValueError(f'reference: unknown task(s) {unknown}')
        return self._specs

    def ignore_of(self, spec: TaskSpec):
        """The ignore label of a class / binary / edge task: the metric's, else the spec's."""
        return spec.ignore_index if self.ignore_index is None else self.ignore_index

    # ---------------------------------------------------------------- per image
    def image_stats(self, data_sample) -> dict:
        """Statistics of one data sample (dict or data-sample object), per task (by its
        kind: ``TaskKind.image_stats``)."""
        record = {}
        for task in self.tasks:
            gt = _get_data(data_sample, f'gt_{task}')
            if gt is None:
                continue  # this sample has no label for the task
            pred = _get_data(data_sample, f'pred_{task}')
            if pred is None:
                raise KeyError(f'{self.__class__.__name__}: sample has gt_{task} but no '
                               f'pred_{task}; restrict the metric with tasks=[...]')
            spec = self.task_specs[task]
            check_prediction(task, pred, data_sample, self.__class__.__name__, spec)
            stats = spec.task_kind.image_stats(self, pred, gt, spec)
            if stats is not None:
                record[task] = stats
        return record

    def edge_max_dist_of(self, spec: TaskSpec) -> float:
        """The matching tolerance of an edge task: the metric's, else the task's."""
        for value in (self.edge_max_dist, spec.max_dist):
            if value is not None:
                return value
        return DEFAULT_EDGE_MAX_DIST

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Store the per-image statistics of a batch (one record per sample)."""
        for data_sample in data_samples:
            self.results.append(self.image_stats(data_sample))

    # ---------------------------------------------------------------- whole split
    def compute_task_scores(self, results: list) -> Dict[str, dict]:
        """Full scores per task (with per-class / per-threshold details)."""
        scores = {}
        for task in self.tasks:
            stats = [r[task] for r in results if task in r]
            scores[task] = self.task_specs[task].task_kind.scores(self, stats)
        return scores

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Combine the collected per-image statistics into the split's metrics."""
        logger: MMLogger = MMLogger.get_current_instance()
        scores = self.compute_task_scores(results)
        metrics = {}
        for task in self.tasks:
            s = scores[task]
            if s['num_images'] == 0:
                print_log(f'{self.__class__.__name__}: no image evaluated for {task}; '
                          'its metrics are NaN', logger=logger, level=logging.WARNING)
            for k in self.task_specs[task].task_kind.metric_keys:
                if k in s:  # (odsF / oisF are absent with edge_ods=False)
                    metrics[f'{task}/{k}'] = s[k]
        dm = delta_m(metrics, self.reference, tasks=self.tasks, task_specs=self.task_specs)
        if dm is not None:
            metrics['delta_m'] = dm
        elif self.reference:
            lacking = incomparable_tasks(metrics, self.reference, self.tasks, self.task_specs)
            print_log(f'{self.__class__.__name__}: no delta_m: task(s) {lacking} have no '
                      'reference value or a non-finite main metric (a mean over the other '
                      'tasks would not be the Δm of this run)', logger=logger,
                      level=logging.WARNING)
        self._log_tables(scores, metrics, logger)
        return metrics

    def _log_tables(self, scores: dict, metrics: dict, logger) -> None:
        """Print each kind's details (per-class IoU tables) and one summary table with Δm."""
        for task in self.tasks:
            spec = self.task_specs[task]
            details = spec.task_kind.score_details(task, spec, scores[task])
            if details is not None:
                print_log(details, logger=logger)

        table = PrettyTable(field_names=['Task', 'Metric', 'Value', 'Reference',
                                         'Rel. diff %', 'Images'])
        for task in self.tasks:
            main = main_metric_key(task, self.task_specs[task])
            for key, value in metrics.items():
                if not key.startswith(task + '/'):
                    continue
                ref = rel = ''
                if key == main and task in self.reference:
                    ref_v = self.reference[task]
                    ref = f'{ref_v:.2f}'
                    if math.isfinite(value):
                        sign = -1 if self.task_specs[task].lower_is_better else 1
                        rel = f'{sign * (value - ref_v) / ref_v * 100:+.2f}'
                table.add_row([task, key.split('/', 1)[1], f'{value:.2f}', ref, rel,
                               scores[task]['num_images']])
        dm = metrics.get('delta_m')
        table.add_row(['all', 'delta_m', 'n/a' if dm is None else f'{dm:+.2f}', '', '',
                       ''])
        print_log('Multi-task results:\n' + table.get_string(), logger=logger)


__all__ = ['MultiTaskMetric']
