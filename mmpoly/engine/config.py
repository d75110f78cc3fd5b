"""Loading a config, the one way every tool does it.

``load_config(path, cfg_options)`` reads the file (``FileNotFoundError`` naming it when it is
missing), merges ``--cfg-options`` (importing ``custom_imports`` again when an option
changes them) and fills in the task specs: the flow of tasks is

    config (``model.tasks``, the dataset's ``tasks``)
      -> the dataset class's ``METAINFO['task_specs']`` (+ ``dataset.metainfo.task_specs``,
         + ``model.task_specs`` given in the config, field by field)
      -> ``model.task_specs`` (head, data preprocessor, segmentor) and the
         ``task_specs`` of every ``MultiTaskMetric`` of the evaluators.

A dataset class (inside or outside the package) that declares its tasks is all a new dataset
needs; the model and the metric learn each task's kind, classes and padding from it.
"""
import inspect
import os.path as osp
from typing import Any, Dict, List, Optional

from mmengine.config import Config
from mmengine.utils import import_modules_from_strings


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` with ``cfg_options`` merged and its task specs filled in."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} not found')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        if any(key.split('.')[0] == 'custom_imports' for key in cfg_options):
            # Config.fromfile imported the file's custom_imports; an option changing them
            # (a hook or a tuner of one's own) would otherwise be ignored
            import_modules_from_strings(**cfg.custom_imports)
    fill_task_specs(cfg)
    return cfg


def dataset_configs(cfg) -> List[dict]:
    """The innermost dataset configs of a (possibly wrapped) dataset config."""
    if not isinstance(cfg, dict):
        return []
    if isinstance(cfg.get('datasets'), (list, tuple)):
        return [d for sub in cfg['datasets'] for d in dataset_configs(sub)]
    if isinstance(cfg.get('dataset'), dict):
        return dataset_configs(cfg['dataset'])
    return [cfg]


def metric_configs(cfg) -> List[dict]:
    """Every metric config of an evaluator config (a list, or a dict with ``metrics``)."""
    if isinstance(cfg, (list, tuple)):
        return [m for sub in cfg for m in metric_configs(sub)]
    if isinstance(cfg, dict):
        if 'metrics' in cfg and 'type' not in cfg:
            return metric_configs(cfg['metrics'])
        return [cfg]
    return []


def _registered(registry, type_name):
    if inspect.isclass(type_name):
        return type_name
    if not isinstance(type_name, str):
        return None
    try:
        return registry.get(type_name)
    except Exception:  # an unknown scope prefix and the like: leave it to the build
        return None


def dataset_task_specs(cfg: Config) -> Optional[Dict[str, dict]]:
    """task -> spec fields declared by the config's dataset (class ``METAINFO`` then the
    dataset config's ``metainfo``); None when no dataset declares task specs."""
    import mmpoly  # noqa: F401  (registers the datasets)
    from mmseg.registry import DATASETS
    specs: Optional[Dict[str, dict]] = None
    for part in ('train', 'val', 'test'):
        loader = cfg.get(f'{part}_dataloader') or {}
        for dataset in dataset_configs(loader.get('dataset')):
            cls = _registered(DATASETS, dataset.get('type'))
            own = getattr(cls, 'METAINFO', None) or {}
            given = (dataset.get('metainfo') or {}).get('task_specs') or {}
            if not own.get('task_specs') and not given:
                continue
            specs = dict(specs or {})
            for source in (own.get('task_specs') or {}), given:
                for task, spec in source.items():
                    specs[task] = dict(specs.get(task) or {}, **dict(spec or {}))
        if specs is not None:
            return specs
    return None


def _plain(spec: Dict[str, Any]) -> dict:
    # tuples of tuples (palettes) and nested dicts (losses) as plain Python values
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}


def fill_task_specs(cfg: Config) -> Config:
    """Write the task specs of ``model.tasks`` into ``model.task_specs`` and into the
    ``task_specs`` of the evaluators' metrics that take them (see the module doc)."""
    model = cfg.get('model')
    if not isinstance(model, dict) or model.get('tasks') is None:
        return cfg
    declared = dataset_task_specs(cfg)
    if declared is None:
        return cfg
    from mmpoly.tasks import task_names
    tasks = task_names(model['tasks'])
    overrides = dict(model.get('task_specs') or {})
    specs = {t: _plain(dict(declared.get(t) or {}, **dict(overrides.get(t) or {})))
             for t in tasks if t in declared or t in overrides}
    cfg.model.task_specs = specs
    from mmseg.registry import METRICS
    for part in ('val', 'test'):
        for metric in metric_configs(cfg.get(f'{part}_evaluator')):
            cls = _registered(METRICS, metric.get('type'))
            if cls is None or 'task_specs' not in inspect.signature(cls.__init__).parameters:
                continue
            if metric.get('task_specs') is None:
                metric['task_specs'] = specs
    return cfg


__all__ = ['load_config', 'fill_task_specs', 'dataset_task_specs']
