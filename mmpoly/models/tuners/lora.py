"""LoRA (Hu et al. 2022) on the attention projections, one low-rank update per task.

method.md sections 6 and 8: a frozen projection ``y = x W^T + b`` becomes, for task t,

    y = x W^T + b + s * LN_t(x) A_t^T B_t^T,   A_t in R^(r x d_in),  B_t in R^(d_out x r)

with rank r, scale s and ``LN_t`` a task-specific LayerNorm (weight and bias, 2 d_in) on the
input of the LoRA branch only (the frozen ``x W^T`` still reads ``x``): the authors' adapter
controller adds it, and it is what the paper's 0.32M counts. ``input_norm=False`` drops it
(LoRA eq. 3 as the text gives it: ``s * x A_t^T B_t^T``). A_t starts as LoRA's
kaiming-uniform, B_t at zero and LN_t at (1, 0), so the tuned backbone starts as the frozen
one. The update acts through the ``linear`` hook on the fused qkv projection (PVT: its q and
kv projections, each with its own LN_t; optionally ``proj``); all tasks' updates are one
batched matmul.

Merging (inference): without the input norm the update is linear in x, and
:meth:`LoRA.merge` folds each task's update into a task-specific full weight
``W_t = W + s B_t A_t`` (kept apart from the frozen ``W``, which is never touched) used with one
(T', M, d_in) @ (T', d_in, d_out) matmul; :meth:`LoRA.unmerge` drops them, which restores the
unmerged computation exactly. With the input norm (the default) ``B_t A_t LN_t(x)`` is not
linear in x (LN divides by the token's own standard deviation), so it has no merged form:
:meth:`LoRA.merge` raises and says so. Merged weights are constants, so training while merged
is an error.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext, new_task_param

#: target -> the projections it covers: the query/key/value projections are one fused 'qkv'
#: on Swin and 'q' + 'kv' on PVT (see ``LayerInfo.projections``)
TARGETS = {'qkv': ('qkv', 'q', 'k', 'v', 'kv'), 'proj': ('proj', )}


@MODELS.register_module()
class LoRA(BaseTuner):
    """LoRA with task-specific low-rank updates of the attention projections.

    Parameters per task and updated projection (d_in -> m d_in): r d_in (A) + m d_in r (B)
    + 2 d_in (input LayerNorm). Swin-T, 4 tasks, qkv (m = 3), r = 4:
    4 x sum_l 18 d_l = 4 x 18 x 4,416 = 317,952 (Table 1: 0.32M); without the input norm
    4 x sum_l 16 d_l = 282,624. On PVT, q (m = 1) and kv (m = 2) each have their own input
    norm: 24 d_l per layer and task.

    Args:
        rank: r, the rank of each update B_t A_t.
        scale: s, the fixed multiplier of the update (the paper's "scale 4"; LoRA's
            alpha / r).
        targets: projections that get an update: 'qkv' (the query-key-value projections:
            Swin's fused qkv, PVT's q and kv) and/or 'proj' (attention output).
        input_norm: a task-specific LayerNorm on the input of every LoRA branch (the
            authors' form, default). False: the text's form, the branch reads x itself
            (the only form :meth:`merge` accepts).
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = True

    def __init__(self,
                 rank: int = 4,
                 scale: float = 4.0,
                 targets: Sequence[str] = ('qkv', ),
                 input_norm: bool = True,
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
        self.input_norm = bool(input_norm)
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        # the task-specific LayerNorm on each branch's input (absent: input_norm=False)
        self.norm_weight = nn.ParameterDict()
        self.norm_bias = nn.ParameterDict()
        self.projections = {p for t in targets for p in TARGETS[t]}
        for layer in self.layers:
            for name, out_mult in layer.projections:
                if name not in self.projections:
                    continue
                key = self._key(layer, name)
                self.lora_A[key] = new_task_param(self.num_tasks, rank, layer.dim)
                self.lora_B[key] = new_task_param(self.num_tasks, out_mult * layer.dim, rank)
                if self.input_norm:
                    self.norm_weight[key] = new_task_param(self.num_tasks, layer.dim)
                    self.norm_bias[key] = new_task_param(self.num_tasks, layer.dim)
        self._merged: Optional[Dict[str, Tensor]] = None
        self.reset_parameters()

    @staticmethod
    def _key(layer: LayerInfo, name: str) -> str:
        return f'{name}{layer.index}'

    def reset_parameters(self) -> None:
        """A: kaiming_uniform(a=sqrt(5)) of each (r, d_in) slice, i.e. U(+-1/sqrt(d_in)), as
        loralib; B: zero; the input LayerNorm: weight 1, bias 0."""
        for key, A in self.lora_A.items():
            bound = 1 / math.sqrt(A.shape[-1])
            nn.init.uniform_(A, -bound, bound)
            nn.init.zeros_(self.lora_B[key])
        for key, w in self.norm_weight.items():
            nn.init.ones_(w)
            nn.init.zeros_(self.norm_bias[key])

    # ------------------------------------------------------------------- merging
    @property
    def merged(self) -> bool:
        return self._merged is not None

    def merge(self) -> None:
        """Use task-specific full weights W + s B_t A_t (built on the next forward).

        Only without the input norm: ``B_t A_t LN_t(x)`` is not linear in x, so no weight
        reproduces it, and merging raises rather than change what the model computes.
        """
        if self.input_norm:
            raise RuntimeError(
                'LoRA.merge(): this LoRA has a task-specific LayerNorm on its branch input '
                '(input_norm=True, the authors\' form and the default): s B_t A_t LN_t(x) is '
                'not linear in x, so it cannot be folded into W_t = W + s B_t A_t. Merged '
                'inference exists for input_norm=False only (--cfg-options '
                'model.backbone.tuner.input_norm=False, a different model: train it so); '
                'the model stays unmerged')
        self._merged = {}

    def unmerge(self) -> None:
        """Back to W x + s B_t A_t x; the frozen W was never modified."""
        self._merged = None

    def clear_cache(self) -> None:
        """Drop the merged weights built so far (still merged: rebuilt on the next forward)."""
        if self._merged is not None:
            self._merged = {}

    def cached_tensors(self) -> List[Tensor]:
        """The merged weights built so far."""
        return list(self._merged.values()) if self._merged else []

    def _merged_weight(self, key: str, module: nn.Linear) -> Tensor:
        """(T, d_in, d_out) transposed full weights of every task, cached while merged."""
        if key not in self._merged:
            with torch.no_grad():
                delta = torch.matmul(self.lora_B[key], self.lora_A[key])  # (T, d_out, d_in)
                self._merged[key] = (module.weight + self.scale * delta).transpose(1, 2)
        return self._merged[key]

    # --------------------------------------------------------------------- hook
    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        if name not in self.projections:
            return module(x)
        key = self._key(layer, name)
        h = ctx.per_task(x)  # (T', M, d_in)
        if self.merged:
            if self.training:
                raise RuntimeError('LoRA: cannot train while merged (the merged weights are '
                                   'constants); call unmerge() before training')
            weight = ctx.select(self._merged_weight(key, module))
            if module.bias is None:
                out = torch.bmm(h, weight)
            else:  # the bias added inside the matmul, as nn.Linear does: one pass less
                out = torch.baddbmm(module.bias, h, weight)
        else:
            A = ctx.select(self.lora_A[key]).transpose(1, 2)  # (T', d_in, r)
            B = ctx.select(self.lora_B[key]).transpose(1, 2)  # (T', r, d_out)
            if self.input_norm:
                # (LN(h) g + b) A = LN(h) (g * A) + b A: the affine folded into the small A
                g = ctx.select(self.norm_weight[key])
                b = ctx.select(self.norm_bias[key])
                low = torch.baddbmm(torch.bmm(b[:, None], A), F.layer_norm(h, h.shape[-1:]),
                                    g[:, :, None] * A)
            else:
                low = torch.bmm(h, A)
            out = torch.baddbmm(ctx.per_task(module(x)), low, B, alpha=self.scale)
        return out.reshape(*x.shape[:-1], out.shape[-1])
