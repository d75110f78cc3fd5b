from .build_errors import explain_build_errors
from .runtime import finish_distributed, setup_runtime

__all__ = ['explain_build_errors', 'finish_distributed', 'setup_runtime']
