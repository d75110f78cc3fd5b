"""Pictures of multi-task predictions: a visualizer and a validation / test hook."""
from .multi_task_visualizer import (MultiTaskLocalVisualizer, MultiTaskVisualizationHook,
                                    draw_multi_task, task_to_rgb)

__all__ = ['MultiTaskLocalVisualizer', 'MultiTaskVisualizationHook', 'draw_multi_task',
           'task_to_rgb']
