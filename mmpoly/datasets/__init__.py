from .base_multi_task import MultiTaskDataset
from .nyud_mt import NYUDMTDataset
from .pascal_context_mt import PascalContextMTDataset
from .synthetic import make_synthetic_pascal_mt
from .synthetic_nyud import make_synthetic_nyud_mt
from .transforms import *  # noqa: F401,F403

__all__ = [
    'MultiTaskDataset', 'PascalContextMTDataset', 'make_synthetic_pascal_mt', 'NYUDMTDataset',
    'make_synthetic_nyud_mt'
]
