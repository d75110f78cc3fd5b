from .base import BaseTuner, FullFineTuning, LayerInfo

__all__ = ['BaseTuner', 'FullFineTuning', 'LayerInfo']
