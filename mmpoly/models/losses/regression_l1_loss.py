"""Masked L1 loss for regression tasks (depth and the like)."""
from typing import Optional

import torch
from mmseg.registry import MODELS

from .utils import DenseLoss, flatten_label, masked_mean


@MODELS.register_module()
class RegressionL1Loss(DenseLoss):
    """Mean absolute error over the labelled elements: a label equal to ``ignore_index``
    (depth: 0, no measurement) or non-finite is skipped. A batch without a labelled pixel
    gives an exact, differentiable 0.

    Args:
        ignore_index (float): label value without a label. Default: 0.
        loss_weight (float): multiplier of the loss. Default: 1.0.
        loss_name (str): key of the loss in the loss dict. Default: 'loss_regression'.
    """

    def __init__(self, ignore_index: float = 0.0, loss_weight: float = 1.0,
                 loss_name: str = 'loss_regression'):
        super().__init__(loss_weight, loss_name)
        self.ignore_index = ignore_index

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        """``pred`` (N, C, H, W); ``target`` (N, H, W) for C = 1 or (N, C, H, W)."""
        self.check_no_weight(weight)
        pred = pred.float()
        target = flatten_label(target, pred, pred.shape[1]).float()
        valid = (target != self.ignore_index) & torch.isfinite(target)
        diff = (pred - torch.where(valid, target, torch.zeros_like(target))).abs()
        return self.loss_weight * masked_mean(diff, valid)

    def extra_repr(self) -> str:
        return f'ignore_index={self.ignore_index}, loss_weight={self.loss_weight}'
