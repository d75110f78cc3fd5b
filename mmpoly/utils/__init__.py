from .build_errors import explain_build_errors
from .runtime import setup_runtime

__all__ = ['explain_build_errors', 'setup_runtime']
