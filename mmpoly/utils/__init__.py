"""Small shared helpers: parameter accounting (``param_count``), the paper's printed tables
(``paper_tables``) and state-dict names (``state_dict``). Runner hooks, the optimiser
wrapper and config loading are in ``mmpoly.engine``; checkpoint formats in
``mmpoly.checkpoint``; the benchmark harness in ``mmpoly.benchmark``."""
from . import param_count  # noqa: F401  (registers TrainableParamsHook)
from .state_dict import TUNER_PREFIX, strip_module_prefix

__all__ = ['TUNER_PREFIX', 'strip_module_prefix']
