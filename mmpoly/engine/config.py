"""Loading a config, the one way every tool does it.

``load_config(path, cfg_options)`` reads the file (``FileNotFoundError`` naming it when it is
missing), merges ``--cfg-options`` (importing ``custom_imports`` again when an option
changes them) and records the resolved task specs in ``model.task_specs`` (so the saved
config of a run says what it trained). Nothing else is filled in: a config built with plain
``Config.fromfile`` + ``MODELS.build`` / ``DATASETS.build`` / ``METRICS.build`` gives the same
model, dataset and metric. The flow of tasks:

    dataset class ``METAINFO['task_specs']``
      -> the dataset (``tasks`` picks; ``metainfo.task_specs`` overrides) -> its
         ``metainfo`` -> the metric, visualizer and prediction writer (``dataset_meta``)
      -> the segmentor (``model.tasks``; ``model.task_source`` names the dataset class;
         ``model.task_specs`` overrides) -> head, data preprocessor.
"""
import os.path as osp
from typing import List, Optional

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


def model_task_specs(model: dict, where: str = 'model.tasks') -> dict:
    """task -> ``TaskSpec`` of a model config, resolved as the segmentor resolves them."""
    import mmpoly  # noqa: F401  (registers the datasets task_source names)
    from mmpoly.tasks import resolve_task_specs
    return resolve_task_specs(model.get('tasks'), model.get('task_specs'), where=where,
                              source=model.get('task_source'))


def fill_task_specs(cfg: Config) -> Config:
    """Record the resolved task specs of ``model.tasks`` in ``model.task_specs`` (plain
    dicts); the build does not need them."""
    model = cfg.get('model')
    if not isinstance(model, dict) or model.get('tasks') is None:
        return cfg
    if model.get('task_source') is None and not model.get('task_specs'):
        return cfg  # left to the build, whose error names what is missing
    specs = model_task_specs(model)
    cfg.model.task_specs = {t: s.to_dict() for t, s in specs.items()}
    return cfg


__all__ = ['load_config', 'fill_task_specs', 'model_task_specs']
