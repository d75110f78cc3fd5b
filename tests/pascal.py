"""PASCAL-Context's tasks and specs for tests that build a component by hand (there is no
default dataset: a component is given its tasks' specs, as the runner gives them)."""
from mmpoly.datasets.pascal_context_mt import PASCAL_TASK_SPECS, PASCAL_TASKS
from mmpoly.evaluation.metrics.functional import DEFAULT_REFERENCE
from mmpoly.tasks import resolve_task_specs

__all__ = ['ALL_TASKS', 'PASCAL_TASK_SPECS', 'PASCAL_SPECS', 'PASCAL_META', 'PASCAL_METRIC',
           'pascal_metric', 'pascal_delta_m']

#: the paper's four tasks
ALL_TASKS = PASCAL_TASKS
#: task -> TaskSpec of every PASCAL task (the four and 'edge')
PASCAL_SPECS = resolve_task_specs(tuple(PASCAL_TASK_SPECS), PASCAL_TASK_SPECS)
#: what the runner gives a metric of a PASCAL dataset
PASCAL_META = dict(tasks=PASCAL_TASKS,
                   task_specs={t: s.to_dict() for t, s in PASCAL_SPECS.items()})
#: a MultiTaskMetric's arguments for the PASCAL tasks outside a runner
PASCAL_METRIC = dict(tasks=PASCAL_TASKS, task_specs=PASCAL_TASK_SPECS,
                     reference=DEFAULT_REFERENCE)


def pascal_metric(**kwargs):
    """A MultiTaskMetric of the PASCAL tasks, as the runner would configure it."""
    from mmpoly.evaluation import MultiTaskMetric
    return MultiTaskMetric(**{**PASCAL_METRIC, **kwargs})


def pascal_delta_m(*args, **kwargs):
    """``delta_m`` with the PASCAL tasks' specs."""
    from mmpoly.evaluation import delta_m
    return delta_m(*args, task_specs=PASCAL_SPECS, **kwargs)
