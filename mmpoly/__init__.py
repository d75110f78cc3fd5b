"""mmpoly: parameter-efficient multi-task adaptation of hierarchical vision transformers.

Importing the package registers every dataset, transform, model, tuner and metric into the
MMSegmentation registries, so configs only need
``custom_imports = dict(imports=['mmpoly'], allow_failed_imports=False)``.
"""
from . import datasets, evaluation, models  # noqa: F401  (registration side effects)
from . import visualization  # noqa: F401  (registers the visualizer and its hook)
from .tasks import TaskSpec, resolve_task_specs  # noqa: F401
from . import engine, utils  # noqa: F401  (hooks, optimiser wrapper)
from . import patches

patches.apply()  # what mmpoly changes in torch and mmengine, and why: see patches.py

__version__ = '0.1.0'
