"""What runs a model: config loading, Runner hooks, optimiser wrappers, run setup."""
from .config import dataset_task_specs, fill_task_specs, load_config
from .runtime import finish_distributed, prepare_run, setup_runtime

__all__ = ['load_config', 'fill_task_specs', 'dataset_task_specs', 'prepare_run',
           'setup_runtime', 'finish_distributed']
