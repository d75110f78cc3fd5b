"""Small helpers shared by the multi-task losses."""
import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the ``True`` entries of ``mask``.

    When the mask is empty the result is an exact 0 that is still connected to the graph
    of ``values`` (zero gradient), so a batch without any label never yields NaN.
    """
    # Indexing keeps the graph even for an empty selection; sum() of nothing is 0.
    total = values[mask].sum()
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
