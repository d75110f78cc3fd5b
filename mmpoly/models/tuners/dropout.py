"""Dropout on a low-rank branch's input, with a cheap random mask on the CPU.

MTLoRA, DiTASK, Free Sinewich and TADFormer drop 5 % of every LoRA branch's input (the
reference's ``nn.Dropout``), about 55 M elements per MTLoRA Swin-T step at 512 px. On the CPU
torch draws each keep bit with its sequential Mersenne twister (``bernoulli_``, 3-4 ns per
element, a float32 mask kept for the backward): forward and backward of one 16384 x 384
float32 input take 29 ms with ``F.dropout`` and 8 ms here (2 cores, measured).
:func:`branch_dropout` computes the same function, ``x * keep / (1 - p)`` with keep bits
independent and ``P(keep) = 1 - p`` (to 2^-32), from a counter-based generator instead:
element ``i``'s bits are splitmix64's output for state ``seed + i * golden_gamma``
(Steele et al., 2014), with ``seed`` drawn from torch's generator, so runs stay reproducible
under ``torch.manual_seed`` (and activation checkpointing, which restores that generator,
recomputes the same mask). One compiled pass writes the output; the backward draws the same
bits again from the seed (no mask kept).

The masks are not torch's: a training run with these methods draws different (equally
distributed) masks than ``F.dropout`` would. Off the CPU (CUDA has its own fused dropout),
for other dtypes, under ``torch.compile`` and for ``p`` of 0 or 1 it is ``F.dropout``.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

#: dtypes the compiled kernels take
_KERNEL_DTYPES = (torch.float32, torch.float64)


def branch_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)`` in distribution (see the module docstring)."""
    if not training or p == 0:
        return x
    if (x.device.type != 'cpu' or x.dtype not in _KERNEL_DTYPES or not 0 < p < 1
            or torch.compiler.is_compiling()):
        return F.dropout(x, p, training)
    return _CounterDropout.apply(x, p)


class _CounterDropout(torch.autograd.Function):
    """The keep bits are a function of (seed, element index): the backward draws them
    again instead of keeping a mask."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        keep = 1.0 - p
        # P(keep) = threshold / 2^32 for the top 32 bits of each element's draw
        ctx.threshold = min(round(keep * 2**32), 2**32)
        ctx.seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
        ctx.scale = 1.0 / keep
        return _scale_kept(ctx, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _scale_kept(ctx, grad), None


def _scale_kept(ctx, x: Tensor) -> Tensor:
    from . import _dropout_kernels
    x = x.detach().contiguous()
    out = torch.empty_like(x)
    _dropout_kernels.scale_kept(x.view(-1).numpy(), out.view(-1).numpy(), ctx.seed,
                                ctx.threshold, ctx.scale)
    return out


__all__ = ['branch_dropout']
