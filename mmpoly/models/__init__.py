from . import backbones, heads, losses, segmentors, tuners  # noqa: F401
from .data_preprocessor import MultiTaskDataPreProcessor  # noqa: F401
