"""Small shared helpers: parameter accounting (``param_count``), the paper's printed tables
(``paper_tables``) and state-dict names (``state_dict``). Runner hooks, the optimiser
wrapper and config loading are in ``mmpoly.engine``; checkpoint formats in
``mmpoly.checkpoint``; the benchmark harness in ``mmpoly.benchmark``."""
import importlib
import importlib.abc
import importlib.util
import sys

from . import param_count  # noqa: F401  (registers TrainableParamsHook)
from .state_dict import TUNER_PREFIX, strip_module_prefix

#: old module paths (before the split into engine/ and checkpoint/) -> where they are now;
#: importing an old path gives the new module (for code written against the old layout)
MOVED_MODULES = {
    'mmpoly.utils.amp': 'mmpoly.engine.optim_wrappers',
    'mmpoly.utils.runtime': 'mmpoly.engine.runtime',
    'mmpoly.utils.exact_resume': 'mmpoly.engine.exact_resume',
    'mmpoly.utils.nonfinite': 'mmpoly.engine.nonfinite',
    'mmpoly.utils.build_checks': 'mmpoly.engine.build_checks',
    'mmpoly.utils.build_errors': 'mmpoly.engine.build_errors',
    'mmpoly.utils.adapter_checkpoint': 'mmpoly.checkpoint.adapter',
    'mmpoly.utils.atomic_checkpoint': 'mmpoly.checkpoint.atomic',
    'mmpoly.utils.checkpoint': 'mmpoly.checkpoint.safe_load',
    'mmpoly.utils.benchmark': 'mmpoly.benchmark',
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def find_spec(self, name, path=None, target=None):
        if name in MOVED_MODULES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name):
    # ``from mmpoly.utils import explain_build_errors`` (old layout)
    if name in ('explain_build_errors', 'finish_distributed', 'setup_runtime'):
        return getattr(importlib.import_module('mmpoly.engine'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['TUNER_PREFIX', 'strip_module_prefix', 'MOVED_MODULES']
