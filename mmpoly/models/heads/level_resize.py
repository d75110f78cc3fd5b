"""The bilinear resize of a decoder's feature level, with a backward that skips a transpose.

A decoder resizes its levels, concatenates them along the channels and convolves the result.
Its features are channels-last (the output norms' permute; oneDNN's convolutions keep that
layout), so each resized level's gradient arrives as a channel slice of a channels-last
tensor, dense in neither layout. PyTorch's CPU upsampling backward then takes its NCHW
kernel after transposing that slice, and transposes its result back to channels-last: 17-20
ms per 256 x 128 x 128 level on two cores, against about 2 ms for its channels-last kernel
on the same slice made dense. Both kernels add the same products to each input element in
the same order (output pixels row by row, the four corners in turn), so the gradient comes
out the same to the bit (``tests/models/heads/test_level_resize.py`` holds them to that,
in float32 and float64; other dtypes keep mmseg's path).
"""
from typing import Sequence

import torch
from torch import Tensor

from mmseg.models.utils import resize


class _DenseChannelsLastGrad(torch.autograd.Function):
    """Identity; a channels-last-strided gradient goes back dense in channels-last."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        # x[...] keeps every stride (view_as would rewrite a size-1 batch's, and the
        # concatenation would then choose another layout)
        return x[...]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        if grad.stride(1) == 1 and not grad.is_contiguous(memory_format=torch.channels_last):
            return grad.contiguous(memory_format=torch.channels_last)
        return grad


def resize_level(x: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """mmseg's ``resize(x, size, mode='bilinear', align_corners)``; on the CPU, a
    channels-last result hands its gradient to the upsampling's channels-last kernel."""
    out = resize(x, size=size, mode='bilinear', align_corners=align_corners)
    if out.requires_grad and out.device.type == 'cpu' and out.dim() == 4 \
            and out.dtype in (torch.float32, torch.float64) \
            and out.is_contiguous(memory_format=torch.channels_last):
        return _DenseChannelsLastGrad.apply(out)
    return out


__all__ = ['resize_level']
