"""Masked L1 loss for surface normals."""
from typing import Optional

import torch
from mmseg.registry import MODELS

from .utils import DenseLoss, flatten_label, masked_mean


@MODELS.register_module()
class NormalL1Loss(DenseLoss):
    """L1 between the L2-normalised predicted normal and the label, valid pixels only.

    Matches the reference ``NormalsLoss(normalize=True, size_average=True, norm=1)``:
    the prediction is divided by ``(||pred||_2 + 1e-12)`` per pixel, the absolute
    differences are *summed over the valid elements* (3 per valid pixel) of the whole
    batch and divided by the number of valid *elements*, i.e. the mean over valid
    elements (= per-pixel L1 summed over x, y, z and divided by 3 x valid pixels).
    The reference marks invalid normals with 255; here the label's zero vector marks
    them (see ``mmpoly.tasks``). A batch without a valid pixel gives an exact,
    differentiable 0.

    Args:
        loss_weight (float): multiplier of the loss. Default: 1.0.
        loss_name (str): key of the loss in the loss dict. Default: 'loss_normal'.
    """

    def __init__(self, loss_weight: float = 1.0, loss_name: str = 'loss_normal'):
        super().__init__(loss_weight, loss_name)

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred: unnormalised normals, (N, 3, H, W).
            target: unit normals, (N, 3, H, W); the zero vector = no label.
            weight: unsupported, must be None (kept for mmseg's call signature).
            kwargs: ignored (e.g. ``ignore_index`` passed by mmseg heads).

        Returns:
            Scalar tensor.
        """
        self.check_no_weight(weight)
        pred = pred.float()  # batch-wide sums overflow half precision
        target = flatten_label(target, pred, 3).float()
        pred = pred / (torch.linalg.vector_norm(pred, dim=1, keepdim=True) + 1e-12)
        valid = (target != 0).any(dim=1, keepdim=True).expand_as(target)
        return self.loss_weight * masked_mean((pred - target).abs(), valid)
