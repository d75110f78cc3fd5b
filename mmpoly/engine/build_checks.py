"""Checks of a whole config before anything is built: the tasks of the model, the datasets,
the metrics and the losses agree (else the run fails only at its first validation, or trains
a decoder without labels)."""
import inspect
from typing import List, Optional, Tuple

from mmengine.config import Config

from .config import dataset_configs, metric_configs


class ConfigMismatchError(ValueError):
    """Parts of a config that must agree do not."""


def _default_tasks(type_name) -> Optional[Tuple[str, ...]]:
    """The default of ``tasks`` of the registered class ``type_name`` (None: unknown)."""
    import mmseg.registry as registries
    cls = type_name if inspect.isclass(type_name) else None
    if cls is None:
        for registry in (registries.MODELS, registries.DATASETS, registries.METRICS):
            cls = registry.get(type_name)
            if cls is not None:
                break
    if cls is None:
        return None
    param = inspect.signature(cls.__init__).parameters.get('tasks')
    if param is None or param.default in (inspect.Parameter.empty, None):
        return None  # no default, or the dataset's tasks (a metric)
    return tuple(param.default)


def _tasks_of(cfg: dict) -> Optional[Tuple[str, ...]]:
    if not isinstance(cfg, dict):
        return None
    if cfg.get('tasks') is not None:
        tasks = cfg['tasks']
        return (tasks, ) if isinstance(tasks, str) else tuple(tasks)
    return _default_tasks(cfg.get('type'))


def task_mismatches(cfg: Config, phase: str = 'train') -> List[str]:
    """What does not agree, one line each (empty: all agree). ``phase``: 'train' checks the
    train and val parts, 'test' the test parts."""
    model = cfg.get('model') or {}
    model_tasks = _tasks_of(model)
    if model_tasks is None:
        return []
    problems = []
    model_set = set(model_tasks)
    losses = (model.get('decode_head') or {}).get('losses') or {}
    extra = sorted(set(losses) - model_set)
    if extra:
        problems.append(f'model.decode_head.losses has losses for {extra}, which are not '
                        f'model tasks {list(model_tasks)}')
    parts = ['train', 'val'] if phase == 'train' else ['test']
    for part in parts:
        loader = cfg.get(f'{part}_dataloader')
        if not loader or (part == 'val' and not cfg.get('val_cfg')):
            continue
        for i, dataset in enumerate(dataset_configs(loader.get('dataset'))):
            tasks = _tasks_of(dataset)
            if tasks is not None and set(tasks) != model_set:
                problems.append(
                    f'{part}_dataloader.dataset{"" if i == 0 else f" #{i}"} has tasks '
                    f'{list(tasks)}, the model {list(model_tasks)}')
            source = model.get('task_source')
            if part == 'train' and isinstance(source, str) and dataset.get('type') != source:
                problems.append(f'model.task_source is {source!r} (the dataset class whose '
                                f'task specs the model uses), the train dataset '
                                f"{dataset.get('type')!r}")
        if part == 'train':
            continue
        for metric in metric_configs(cfg.get(f'{part}_evaluator')):
            tasks = _tasks_of(metric)
            if tasks is not None and set(tasks) != model_set:
                problems.append(f"{part}_evaluator ({metric.get('type')}) evaluates tasks "
                                f'{list(tasks)}, the model predicts {list(model_tasks)}')
    return problems


def check_task_agreement(cfg: Config, phase: str = 'train') -> None:
    """Raise ConfigMismatchError listing every disagreement of tasks (see the module doc)."""
    problems = task_mismatches(cfg, phase)
    if problems:
        raise ConfigMismatchError(
            'the tasks of the config do not agree: ' + '; '.join(problems)
            + '. Set the same tasks for model.tasks, the datasets (*_dataloader.dataset.tasks),'
            ' the metrics (*_evaluator.tasks) and model.decode_head.losses')


__all__ = ['ConfigMismatchError', 'check_task_agreement', 'task_mismatches']
