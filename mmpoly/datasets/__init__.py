from .base_multi_task import MultiTaskDataset
from .pascal_context_mt import PascalContextMTDataset
from .synthetic import make_synthetic_pascal_mt
from .transforms import *  # noqa: F401,F403

__all__ = ['MultiTaskDataset', 'PascalContextMTDataset', 'make_synthetic_pascal_mt']
