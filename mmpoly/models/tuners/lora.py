"""LoRA (Hu et al. 2022) on the attention projections, one low-rank update per task.

method.md section 6: a frozen projection ``y = x W^T + b`` becomes, for task t,

    y = x W^T + b + s * x A_t^T B_t^T,   A_t in R^(r x d_in),  B_t in R^(d_out x r)   (LoRA eq. 3)

with rank r and scale s. A_t starts as LoRA's kaiming-uniform, B_t at zero, so the tuned
backbone starts as the frozen one. The update acts through the ``linear`` hook on the fused
qkv projection (and optionally ``proj``); all tasks' updates are one batched matmul.

:meth:`LoRA.merge` folds each task's update into a task-specific full weight
``W_t = W + s B_t A_t`` (kept apart from the frozen ``W``, which is never touched) used with one
(T', M, d_in) @ (T', d_in, d_out) matmul; :meth:`LoRA.unmerge` drops them, which restores the
unmerged computation exactly. Merged weights are constants, so training while merged is an
error.
"""
import math
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, new_task_param

#: target -> the projections it covers: the query/key/value projections are one fused 'qkv'
#: on Swin and 'q' + 'kv' on PVT (see ``LayerInfo.projections``)
TARGETS = {'qkv': ('qkv', 'q', 'k', 'v', 'kv'), 'proj': ('proj', )}


@MODELS.register_module()
class LoRA(BaseTuner):
    """LoRA with task-specific low-rank updates of the attention projections.

    Swin-T, 4 tasks, qkv only: 4 x sum_l r (d_l + 3 d_l) = 282,624 parameters.

    Args:
        rank: r, the rank of each update B_t A_t.
        scale: s, the fixed multiplier of the update (the paper's "scale 4"; LoRA's
            alpha / r).
        targets: projections that get an update: 'qkv' (the query-key-value projections:
            Swin's fused qkv, PVT's q and kv) and/or 'proj' (attention output).
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = True

    def __init__(self,
                 rank: int = 4,
                 scale: float = 4.0,
                 targets: Sequence[str] = ('qkv', ),
                 **kwargs):
        super().__init__(**kwargs)
        targets = (targets, ) if isinstance(targets, str) else tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f'LoRA.targets must be a non-empty subset of {list(TARGETS)}, '
                             f'got {list(targets)}')
        if rank < 1:
            raise ValueError(f'LoRA.rank must be >= 1, got {rank}')
        self.rank = rank
        self.scale = scale
        self.targets = targets
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.projections = {p for t in targets for p in TARGETS[t]}
        for layer in self.layers:
            for name, out_mult in layer.projections:
                if name not in self.projections:
                    continue
                key = self._key(layer, name)
                self.lora_A[key] = new_task_param(self.num_tasks, rank, layer.dim)
                self.lora_B[key] = new_task_param(self.num_tasks, out_mult * layer.dim, rank)
        self._merged: Optional[Dict[str, Tensor]] = None
        self.reset_parameters()

    @staticmethod
    def _key(layer: LayerInfo, name: str) -> str:
        return f'{name}{layer.index}'

    def reset_parameters(self) -> None:
        """A: kaiming_uniform(a=sqrt(5)) of each (r, d_in) slice, i.e. U(+-1/sqrt(d_in)), as
        loralib; B: zero."""
        for key, A in self.lora_A.items():
            bound = 1 / math.sqrt(A.shape[-1])
            nn.init.uniform_(A, -bound, bound)
            nn.init.zeros_(self.lora_B[key])

    # ------------------------------------------------------------------- merging
    @property
    def merged(self) -> bool:
        return self._merged is not None

    def merge(self) -> None:
        """Use task-specific full weights W + s B_t A_t (built on the next forward)."""
        self._merged = {}

    def unmerge(self) -> None:
        """Back to W x + s B_t A_t x; the frozen W was never modified."""
        self._merged = None

    def _merged_weight(self, key: str, module: nn.Linear) -> Tensor:
        """(T, d_in, d_out) transposed full weights of every task, cached while merged."""
        if key not in self._merged:
            with torch.no_grad():
                delta = torch.matmul(self.lora_B[key], self.lora_A[key])  # (T, d_out, d_in)
                self._merged[key] = (module.weight + self.scale * delta).transpose(1, 2)
        return self._merged[key]

    # --------------------------------------------------------------------- hook
    def linear(self, layer: LayerInfo, name: str, module: nn.Linear, x: Tensor) -> Tensor:
        if name not in self.projections:
            return module(x)
        key = self._key(layer, name)
        h = self.per_task(x)  # (T', M, d_in)
        if self.merged:
            if self.training:
                raise RuntimeError('LoRA: cannot train while merged (the merged weights are '
                                   'constants); call unmerge() before training')
            weight = self.active(self._merged_weight(key, module))
            if module.bias is None:
                out = torch.bmm(h, weight)
            else:  # the bias added inside the matmul, as nn.Linear does: one pass less
                out = torch.baddbmm(module.bias, h, weight)
        else:
            A = self.active(self.lora_A[key]).transpose(1, 2)  # (T', d_in, r)
            B = self.active(self.lora_B[key]).transpose(1, 2)  # (T', r, d_out)
            out = torch.baddbmm(self.per_task(module(x)), torch.bmm(h, A), B,
                                alpha=self.scale)
        return out.reshape(*x.shape[:-1], out.shape[-1])
