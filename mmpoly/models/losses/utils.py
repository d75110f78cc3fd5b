"""Small helpers shared by the multi-task losses."""
from typing import Optional

import torch
import torch.nn as nn


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the ``True`` entries of ``mask``.

    When the mask is empty the result is an exact 0 that is still connected to the graph
    of ``values`` (zero gradient), so a batch without any label never yields NaN.
    """
    # masked_select keeps the graph even for an empty selection; sum() of nothing is 0. It
    # selects what ``values[mask]`` does, in the same order (the same sum, bit for bit),
    # without that indexing's nonzero() and index_put backward: 2.5x faster on the CPU.
    total = torch.masked_select(values, mask).sum()
    count = mask.sum().clamp(min=1).to(total.dtype)
    return total / count


def flatten_label(target: torch.Tensor, pred: torch.Tensor,
                  channels: int) -> torch.Tensor:
    """Bring a label of shape (N, H, W) or (N, C, H, W) to the prediction's layout.

    Args:
        target: the label.
        pred: the prediction, (N, channels, H, W).
        channels: label channels expected (1 for class maps, 3 for normals).
    """
    if target.dim() == pred.dim() - 1 and channels == 1:
        target = target.unsqueeze(1)
    if target.shape[0] != pred.shape[0] or target.shape[-2:] != pred.shape[-2:] \
            or target.shape[1] != channels:
        raise ValueError(f'label shape {tuple(target.shape)} does not match '
                         f'prediction shape {tuple(pred.shape)}')
    return target


class DenseLoss(nn.Module):
    """What the dense-task losses share: ``loss_weight``, ``loss_name`` and mmseg's call
    signature, whose per-pixel ``weight`` they do not support.

    Args:
        loss_weight (float): multiplier of the loss.
        loss_name (str): key of the loss in the loss dict; must start with ``loss_`` to be
            back-propagated by mmengine.
    """

    def __init__(self, loss_weight: float, loss_name: str):
        super().__init__()
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def check_no_weight(self, weight: Optional[torch.Tensor]) -> None:
        """Refuse mmseg's per-pixel ``weight``."""
        if weight is not None:
            raise NotImplementedError(f'{self.__class__.__name__} has no pixel weights')

    @property
    def loss_name(self) -> str:
        """Name of the loss item (mmseg convention)."""
        return self._loss_name

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'


class IgnoreIndexLoss(DenseLoss):
    """A :class:`DenseLoss` on labels where ``ignore_index`` marks an unlabelled pixel.

    Args:
        ignore_index (int): label value excluded from the loss.
        loss_weight (float): multiplier of the loss.
        loss_name (str): key of the loss in the loss dict.
    """

    def __init__(self, ignore_index: int, loss_weight: float, loss_name: str):
        super().__init__(loss_weight, loss_name)
        self.ignore_index = ignore_index

    def check_call(self, weight: Optional[torch.Tensor],
                   ignore_index: Optional[int]) -> int:
        """Refuse a per-pixel ``weight``; the ``ignore_index`` of the call, else the
        constructor's."""
        self.check_no_weight(weight)
        return self.ignore_index if ignore_index is None else ignore_index

    def extra_repr(self) -> str:
        return f'ignore_index={self.ignore_index}, loss_weight={self.loss_weight}'
