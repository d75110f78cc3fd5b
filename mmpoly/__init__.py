"""mmpoly: parameter-efficient multi-task adaptation of hierarchical vision transformers.

Importing the package registers every dataset, transform, model, tuner and metric into the
MMSegmentation registries, so configs only need
``custom_imports = dict(imports=['mmpoly'], allow_failed_imports=False)``.
"""
from . import datasets, evaluation, models  # noqa: F401  (registration side effects)
from . import visualization  # noqa: F401  (registers the visualizer and its hook)
from .tasks import ALL_TASKS, TaskSpec, resolve_task_specs  # noqa: F401
from .utils import adapter_checkpoint, param_count  # noqa: F401  (register their hooks)
from .utils import atomic_checkpoint, exact_resume, nonfinite  # noqa: F401  (hooks)
from .utils.checkpoint import allow_mmengine_checkpoints

allow_mmengine_checkpoints()
atomic_checkpoint.install_named_loader()  # checkpoint loading errors name the file

__version__ = '0.1.0'
