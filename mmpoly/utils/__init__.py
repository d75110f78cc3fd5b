from . import amp  # noqa: F401  (registers MixedPrecisionOptimWrapper)
from .build_errors import explain_build_errors
from ..engine.runtime import finish_distributed, setup_runtime

__all__ = ['explain_build_errors', 'finish_distributed', 'setup_runtime']
