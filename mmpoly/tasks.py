"""The dense tasks of PASCAL-Context multi-task and what every module needs to know about them.

One table, read by the dataset (label encodings), the data preprocessor (padding values), the
heads (output channels, loss), the segmentor (turning outputs into predictions) and the metric.
Data samples carry one ``PixelData`` field per task: ``gt_<task>`` for the label and
``pred_<task>`` for the prediction.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple


@dataclass(frozen=True)
class TaskSpec:
    """How one task is encoded.

    Args:
        num_outputs: channels the decoder predicts.
        kind: 'class' (argmax over logits), 'binary' (sigmoid probability) or
            'normal' (3-vector normalised to unit length).
        pad_value: label value for pixels without a label (padding, ignored pixels).
        lower_is_better: direction of the task's main metric (for delta_m).
    """
    num_outputs: int
    kind: str
    pad_value: float
    lower_is_better: bool = False


TASK_SPECS = {
    'semseg': TaskSpec(num_outputs=21, kind='class', pad_value=255),
    'human_parts': TaskSpec(num_outputs=7, kind='class', pad_value=255),
    'sal': TaskSpec(num_outputs=1, kind='binary', pad_value=255),
    # Normals use the zero vector for "no label": it is never a valid unit normal.
    'normals': TaskSpec(num_outputs=3, kind='normal', pad_value=0, lower_is_better=True),
}

ALL_TASKS: Tuple[str, ...] = tuple(TASK_SPECS)


def check_tasks(tasks: Sequence[str], where: str = 'tasks') -> Tuple[str, ...]:
    """Validate a task list from a config and return it as a tuple."""
    if isinstance(tasks, str):
        tasks = (tasks, )
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASK_SPECS]
    if unknown:
        raise ValueError(f'{where}: unknown task(s) {unknown}; '
                         f'known tasks are {list(TASK_SPECS)}')
    if len(set(tasks)) != len(tasks):
        raise ValueError(f'{where}: duplicate task in {list(tasks)}')
    if not tasks:
        raise ValueError(f'{where}: at least one task is needed')
    return tasks
