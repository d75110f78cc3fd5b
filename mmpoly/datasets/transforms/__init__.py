from .formatting import PackMultiTaskInputs
from .geometric import (MTPad, MTRandomCrop, MTRandomFlip, MTRandomRotate, MTRandomScale,
                        MTResize)
from .loading import LoadMultiTaskAnnotations

__all__ = [
    'LoadMultiTaskAnnotations', 'MTRandomFlip', 'MTRandomScale', 'MTRandomRotate', 'MTResize',
    'MTRandomCrop', 'MTPad', 'PackMultiTaskInputs'
]
