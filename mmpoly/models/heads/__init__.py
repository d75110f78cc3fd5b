from .multi_task_segformer_head import MultiTaskSegformerHead

__all__ = ['MultiTaskSegformerHead']
