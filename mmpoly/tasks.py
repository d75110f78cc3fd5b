"""Tasks are data: what every module needs to know about a dense task, by its *kind*.

A dataset class declares its tasks in ``METAINFO['task_specs']`` (task name -> a dict of
``TaskSpec`` fields); a config picks the tasks it trains (``model.tasks``, the dataset's
``tasks``) and may override any field (``model.task_specs``). Every component reads the
resolved ``TaskSpec`` of a task and asks its kind (``spec.task_kind``, one class per kind in
``mmpoly.task_kinds``), never its name:

- dataset / transforms: ``results['task_specs']`` (label format, padding, interpolation);
- data preprocessor: ``pad_value`` per ``gt_<task>`` field;
- head: ``num_outputs`` channels and the loss (``loss``, else the kind's default);
- segmentor: logits -> prediction by kind;
- metric / visualiser / prediction writer: statistics, colours and files by kind, from the
  ``dataset_meta`` the runner gives them.

Data samples carry one ``PixelData`` field per task: ``gt_<task>`` for the label and
``pred_<task>`` for the prediction.

There is no default dataset: a component given task names must also be given their specs,
or the dataset class that declares them (``source``: the segmentor's ``task_source``, e.g.
``'PascalContextMTDataset'``); otherwise it is an error naming the component.
"""
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .task_kinds import TaskKind, task_kind


@dataclass(frozen=True)
class TaskSpec:
    """How one task is encoded.

    Args:
        kind: 'class', 'binary', 'normal', 'regression', 'edge' or one registered with
            ``mmpoly.task_kinds.register_task_kind``.
        num_outputs: channels the decoder predicts (classes; 1 for binary, edge and depth;
            3 for normals).
        label_format: name of the label reader (``LABEL_READERS`` in
            ``mmpoly.datasets.transforms.loading``: the generic 'class_png', 'binary_png',
            'npy', or one a dataset module registers, e.g. PASCAL's 'human_parts_mat').
        ignore_index: label value without a label (class / binary maps: 255; normals: the
            zero vector, given as 0; regression: e.g. 0 for depth, passed to its loss).
        pad_value: label value of padded pixels; defaults to ``ignore_index``.
        lower_is_better: direction of the main metric (for delta_m); defaults to the
            kind's.
        classes: class names (class kind), for tables and pictures.
        palette: class colours (class kind).
        skip_single_value_labels: the metric skips an image whose label holds one value
            that is 0 or ``ignore_index`` (PASCAL human parts: no person).
        loss: loss config (with ``loss_weight``); defaults to the kind's loss, weight 1.
        max_dist: edge kind: the matching tolerance of the boundary benchmark, a fraction
            of the image diagonal (SEISM's ``maxDist``: 0.0075 on PASCAL-Context, 0.011 on
            NYUD-v2); default (None): 0.0075.
        prediction_format: file format of ``tools/test.py --out`` predictions: 'png'
            (class ids, 8-bit probability, 8-bit normals), 'npy' (float32 (C, H, W)) or
            'mat' (MATLAB file with the (H, W) map under the task's name, the reference's
            depth format), one of the kind's ``prediction_formats``; default (''): the
            kind's first ('npy' for regression, else 'png').
        positive: regression kind: the quantity is positive (depth). Scored as the
            reference's ``eval_depth``: a prediction ``<= 0`` counts as 1e-9, and the
            log-RMSE is reported besides the RMSE.
    """
    kind: str
    num_outputs: int
    label_format: str = ''
    ignore_index: float = 255
    pad_value: Optional[float] = None
    lower_is_better: Optional[bool] = None
    classes: Tuple[str, ...] = ()
    palette: Tuple[Tuple[int, int, int], ...] = ()
    skip_single_value_labels: bool = False
    loss: Optional[Mapping[str, Any]] = field(default=None, compare=False, hash=False)
    max_dist: Optional[float] = None
    prediction_format: str = ''
    positive: bool = False

    def __post_init__(self):
        kind = task_kind(self.kind)
        if self.max_dist is not None and not 0 < self.max_dist < 1:
            raise ValueError(f'max_dist must be in (0, 1) (a fraction of the image '
                             f'diagonal), got {self.max_dist}')
        if not self.prediction_format:
            object.__setattr__(self, 'prediction_format', kind.prediction_formats[0])
        if self.prediction_format not in kind.prediction_formats:
            raise ValueError(f'prediction_format {self.prediction_format!r} is not one of '
                             f'{kind.prediction_formats} for the {self.kind} kind')
        if self.pad_value is None:
            object.__setattr__(self, 'pad_value', self.ignore_index)
        if self.lower_is_better is None:
            object.__setattr__(self, 'lower_is_better', kind.lower_is_better)
        object.__setattr__(self, 'classes', tuple(self.classes))
        object.__setattr__(self, 'palette', tuple(tuple(c) for c in self.palette))
        kind.check_spec(self)

    @property
    def task_kind(self) -> TaskKind:
        """The kind's object: everything that depends on what the task predicts."""
        return task_kind(self.kind)

    @property
    def main_metric(self) -> str:
        return self.task_kind.main_metric

    @property
    def default_loss(self) -> dict:
        if self.loss is not None:
            return dict(self.loss)
        return self.task_kind.default_loss(self)

    @classmethod
    def from_any(cls, spec, where: str = 'task spec') -> 'TaskSpec':
        if isinstance(spec, TaskSpec):
            return spec
        if not isinstance(spec, Mapping):
            raise TypeError(f'{where}: expected a dict of TaskSpec fields, got {spec!r}')
        known = {f.name for f in fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f'{where}: unknown field(s) {sorted(unknown)}; '
                             f'known: {sorted(known)}')
        try:
            return cls(**dict(spec))
        except (TypeError, ValueError) as e:
            raise ValueError(f'{where}: {e}') from e

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out['loss'] is not None:
            out['loss'] = dict(out['loss'])
        return out


def declared_task_specs(source) -> Dict[str, dict]:
    """The ``METAINFO['task_specs']`` of a dataset class, or of the class a dataset type name
    names in the registry (importing mmpoly fills it: model code never imports datasets)."""
    if isinstance(source, str):
        from mmseg.registry import DATASETS
        cls = DATASETS.get(source)
        if cls is None:
            raise KeyError(f'task_source: {source!r} is not a registered dataset type '
                           '(custom_imports of its module missing?)')
    else:
        cls = source
    specs = (getattr(cls, 'METAINFO', None) or {}).get('task_specs')
    if not specs:
        raise ValueError(f"task_source: {getattr(cls, '__name__', cls)} declares no "
                         "METAINFO['task_specs']")
    return specs


def task_names(tasks) -> Tuple[str, ...]:
    """A config's task list (names, or a dict name -> spec) -> names."""
    if isinstance(tasks, str):
        return (tasks, )
    if isinstance(tasks, Mapping):
        return tuple(tasks)
    return tuple(tasks)


def resolve_task_specs(tasks,
                       task_specs: Optional[Mapping[str, Any]] = None,
                       where: str = 'tasks',
                       source=None) -> Dict[str, TaskSpec]:
    """Task names (in order) -> their ``TaskSpec``.

    Args:
        tasks: task names, or a dict name -> spec (dict of ``TaskSpec`` fields).
        task_specs: name -> spec fields; each overrides, field by field, the spec that
            ``source`` declares for the task (a complete spec needs no source).
        where: the config key or class named by errors.
        source: a dataset class, or its registered type name, whose
            ``METAINFO['task_specs']`` are the base (see :func:`declared_task_specs`).
    """
    names = check_tasks(task_names(tasks), where)
    given = dict(tasks) if isinstance(tasks, Mapping) else {}
    specs = {t: dict(s) for t, s in declared_task_specs(source).items()} \
        if source is not None else {}
    for overrides in (task_specs or {}), given:
        for name, spec in overrides.items():
            spec = spec.to_dict() if isinstance(spec, TaskSpec) else dict(spec or {})
            specs[name] = dict(specs.get(name, {}), **spec)
    missing = [t for t in names if 'kind' not in specs.get(t, {})]
    if missing:
        known = [t for t, s in specs.items() if 'kind' in s]
        raise ValueError(
            f'{where}: unknown task(s) {missing}, no spec (known: {known}); name the dataset class '
            "that declares them in METAINFO['task_specs'] (the segmentor's task_source) or "
            'give complete task_specs')
    return {t: TaskSpec.from_any(specs[t], f'{where}[{t!r}]') for t in names}


def task_spec_of(results: Mapping[str, Any], task: str) -> TaskSpec:
    """The ``TaskSpec`` of ``task`` for a sample: ``results['task_specs']``, which a
    ``MultiTaskDataset`` sets."""
    specs = results.get('task_specs') if results else None
    if specs is None or task not in specs:
        raise KeyError(f"sample has no task spec for {task!r} (results['task_specs'] is set "
                       'by a MultiTaskDataset: run the transform in its pipeline)')
    return TaskSpec.from_any(specs[task], task)


def check_tasks(tasks: Sequence[str], where: str = 'tasks') -> Tuple[str, ...]:
    """Validate a task list from a config and return it as a tuple of names."""
    tasks = task_names(tasks)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f'{where}: duplicate task in {list(tasks)}')
    if not tasks:
        raise ValueError(f'{where}: at least one task is needed')
    return tasks
