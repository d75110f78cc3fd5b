"""Class-balanced binary cross-entropy for saliency, and its fixed-weight form for edges."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from .utils import IgnoreIndexLoss, flatten_label


@MODELS.register_module()
class BalancedBCELoss(IgnoreIndexLoss):
    r"""HED-style balanced binary cross-entropy on logits.

    With :math:`w` the fraction of negative pixels among the valid pixels of the
    batch, :math:`p = \sigma(x)` and valid pixels :math:`V`:

    .. math::
        L = \frac{1}{|V|} \sum_{i \in V} -w\, y_i \log p_i - (1 - w)(1 - y_i) \log(1 - p_i)

    This matches the reference ``BalancedCrossEntropyLoss(size_average=True)`` of
    Multi-Task-Learning-PyTorch (the loss used for PASCAL saliency there): ``w`` is
    computed once per *batch* (not per image), the weighted positive and negative
    terms are *summed* over the batch and the sum is divided by the number of pixels
    of the batch. A label counts as positive when it is >= 0.5. The one deviation:
    the reference divides by every pixel of the batch (it never passes ignore regions
    for saliency); here pixels equal to ``ignore_index`` (padding) are dropped from the
    sums, from ``w`` and from the divisor, so both agree when nothing is ignored.
    As in the reference ``w`` is a constant (no gradient), and a batch with no positive
    pixel gives ``w = 1`` and therefore a zero loss. ``log p`` and ``log(1 - p)`` use
    ``logsigmoid`` for numerical stability. An all-ignored batch gives an exact,
    differentiable 0.

    With ``pos_weight`` set, :math:`w` is that constant instead (the reference's
    ``BalancedCrossEntropyLoss(size_average=True, pos_weight=p['edge_w'])`` for edges,
    ``edge_w = 0.95``); the sums and the divisor are the same. (The reference then skips
    its void-pixel handling, so its ignore label 255 counts as an edge pixel there; here
    it is dropped as above.)

    Args:
        ignore_index (int): label value excluded from the loss. Default: 255.
        pos_weight (float, optional): fixed weight of the positive term, in [0, 1].
            Default (None): the batch's fraction of negative pixels.
        loss_weight (float): multiplier of the loss. Default: 1.0.
        loss_name (str): key of the loss in the loss dict. Default: 'loss_bce'.
    """

    def __init__(self,
                 ignore_index: int = 255,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_bce',
                 pos_weight: Optional[float] = None):
        super().__init__(ignore_index, loss_weight, loss_name)
        if pos_weight is not None and not 0.0 <= pos_weight <= 1.0:
            raise ValueError(f'pos_weight must be in [0, 1], got {pos_weight}')
        self.pos_weight = pos_weight

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred: logits, (N, 1, H, W).
            target: labels in {0, 1} (or probabilities, thresholded at 0.5),
                (N, H, W) or (N, 1, H, W); ``ignore_index`` = no label.
            weight: unsupported, must be None (kept for mmseg's call signature).
            ignore_index: overrides the constructor's value when given.

        Returns:
            Scalar tensor.
        """
        ignore_index = self.check_call(weight, ignore_index)
        if pred.dim() == 3:
            pred = pred.unsqueeze(1)
        target = flatten_label(target, pred, 1)
        pred = pred.float()  # batch-wide sums overflow half precision
        valid = target != ignore_index
        pos = (valid & (target >= 0.5)).float()
        neg = (valid & (target < 0.5)).float()
        # clamp: an all-ignored batch has zero sums, hence an exact 0 still in the graph.
        num_valid = valid.sum().clamp(min=1).float()
        # fraction of negatives (a constant), or the fixed weight
        w = neg.sum() / num_valid if self.pos_weight is None else self.pos_weight
        loss_pos = -(F.logsigmoid(pred) * pos).sum()    # -log p on positives
        loss_neg = -(F.logsigmoid(-pred) * neg).sum()   # -log(1-p) on negatives
        loss = (w * loss_pos + (1 - w) * loss_neg) / num_valid
        return self.loss_weight * loss
