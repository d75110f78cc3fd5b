"""Pixel-wise cross-entropy for the class-map tasks (semseg, human_parts)."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from .utils import IgnoreIndexLoss, flatten_label, masked_mean


@MODELS.register_module()
class PixelCrossEntropyLoss(IgnoreIndexLoss):
    """Softmax cross-entropy averaged over the labelled pixels of the batch.

    Matches the reference ``SoftMaxwithLoss`` (``NLLLoss(ignore_index=255)`` on
    log-softmax, i.e. the mean over non-ignored pixels of the whole batch). Unlike
    ``NLLLoss`` it returns an exact, differentiable 0 instead of NaN when every pixel
    is ignored, which is common for human_parts (an image without a person is
    all-ignore).

    Args:
        ignore_index (int): label value excluded from the loss. Default: 255.
        loss_weight (float): multiplier of the loss. Default: 1.0.
        loss_name (str): key of the loss in the loss dict; must start with ``loss_``
            to be back-propagated by mmengine. Default: 'loss_ce'.
    """

    def __init__(self,
                 ignore_index: int = 255,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce'):
        super().__init__(ignore_index, loss_weight, loss_name)

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred: logits, (N, C, H, W).
            target: class ids, (N, H, W) or (N, 1, H, W), ``ignore_index`` = no label.
            weight: unsupported, must be None (kept for mmseg's call signature).
            ignore_index: overrides the constructor's value when given (mmseg heads
                pass their own).

        Returns:
            Scalar tensor.
        """
        ignore_index = self.check_call(weight, ignore_index)
        target = flatten_label(target, pred, 1)[:, 0].long()
        # reduction='none' puts 0 at ignored pixels; averaging ourselves avoids 0/0.
        loss = F.cross_entropy(
            pred, target, ignore_index=ignore_index, reduction='none')
        return self.loss_weight * masked_mean(loss, target != ignore_index)
