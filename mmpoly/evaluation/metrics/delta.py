"""The multi-task performance Δm: each task's main metric (by its kind) against a
single-task reference."""
import math
from typing import Dict, List, Mapping, Optional, Sequence

from mmpoly.tasks import TaskSpec


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
            and a reference value. When given, every one of them must have both: a
            task without a reference or with a non-finite result makes Δm None (a mean
            over fewer tasks is another number, never reported under the same name).
        task_specs: task -> ``TaskSpec`` (or its fields): main metric and direction by
            kind (e.g. the dataset's ``metainfo['task_specs']``).

    Returns:
        Δm in percent (e.g. 2.23 for +2.23 %), or None when no task can be compared.
    """
    specs = _specs(task_specs)
    values = _main_values(results, specs)
    if tasks is None:
        tasks = [t for t in specs if t in values and t in reference]
    if not tasks or incomparable_tasks(results, reference, tasks, task_specs):
        return None
    total = 0.0
    for t in tasks:
        ref = float(reference[t])
        sign = -1.0 if specs[t].lower_is_better else 1.0
        total += sign * (values[t] - ref) / ref
    return total / len(tasks) * 100


def incomparable_tasks(results: Mapping[str, float], reference: Mapping[str, float],
                       tasks: Sequence[str],
                       task_specs: Optional[Mapping[str, object]] = None) -> List[str]:
    """The ``tasks`` that Δm cannot compare: no reference value, or no finite main metric."""
    values = _main_values(results, _specs(task_specs))
    return [t for t in tasks
            if t not in reference or not math.isfinite(values.get(t, float('nan')))]


def _main_values(results, specs) -> Dict[str, float]:
    """Task -> main metric from ``results`` keyed by task or by metric key."""
    values = {}
    for task, spec in specs.items():
        for key in (task, f'{task}/{spec.main_metric}'):
            if key in results and results[key] is not None:
                values[task] = float(results[key])
    return values


def _specs(task_specs) -> Dict[str, TaskSpec]:
    if task_specs is None:
        raise ValueError('task_specs are required (e.g. the dataset\'s metainfo[\'task_specs\'])')
    return {t: TaskSpec.from_any(s, t) for t, s in task_specs.items()}


def main_metric_key(task: str, spec: TaskSpec) -> str:
    """'semseg' -> 'semseg/mIoU', 'normals' -> 'normals/mErr' (the main metric of the
    task's kind)."""
    return f'{task}/{spec.main_metric}'


__all__ = ['delta_m', 'incomparable_tasks', 'main_metric_key']
