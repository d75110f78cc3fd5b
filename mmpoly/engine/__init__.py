"""What runs a model: config loading, run setup, Runner hooks and the optimiser wrapper.

- ``config``: ``load_config(path, cfg_options)``, the one way every tool loads a config (task
  specs filled in from the dataset's METAINFO);
- ``config_text``: mmengine's yapf formatting of a config done once per run (was 4-6;
  installed by ``mmpoly.patches``);
- ``runtime``: backend and work dir of a run (``prepare_run``), ``finish_distributed``;
- ``build_checks`` / ``build_errors``: config checks before building, hints after a failure;
- ``optim_wrappers``: ``MixedPrecisionOptimWrapper`` (``--amp``);
- hooks: ``exact_resume`` (``ExactResumeHook``, ``EpochSeededDataset``), ``nonfinite``
  (``NonFiniteLossHook``). The checkpoint hooks are in ``mmpoly.checkpoint``.
"""
from . import exact_resume, nonfinite, optim_wrappers  # noqa: F401  (registrations)
from .build_errors import explain_build_errors
from .config import fill_task_specs, load_config, model_task_specs
from .runtime import finish_distributed, prepare_run, setup_runtime

__all__ = ['load_config', 'fill_task_specs', 'model_task_specs', 'prepare_run',
           'setup_runtime', 'finish_distributed', 'explain_build_errors']
