from .base_multi_task_head import BaseMultiTaskHead
from .multi_task_hrnet_head import HRNetFuseHead, MultiTaskHRNetHead
from .multi_task_segformer_head import MultiTaskSegformerHead

__all__ = ['BaseMultiTaskHead', 'HRNetFuseHead', 'MultiTaskHRNetHead', 'MultiTaskSegformerHead']
