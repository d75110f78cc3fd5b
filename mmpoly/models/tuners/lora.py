"""LoRA (Hu et al. 2022) on the attention projections, one low-rank update per task.

method.md sections 6 and 8: a frozen projection ``y = x W^T + b`` becomes, for task t,

    y = x W^T + b + s * LN_t(x) A_t^T B_t^T,   A_t in R^(r x d_in),  B_t in R^(d_out x r)

with rank r, scale s and ``LN_t`` a task-specific LayerNorm (weight and bias, 2 d_in) on the
input of the LoRA branch only (the frozen ``x W^T`` still reads ``x``): the authors' adapter
controller adds it, and it is what the paper's 0.32M counts. ``input_norm=False`` drops it
(LoRA eq. 3 as the text gives it: ``s * x A_t^T B_t^T``). A_t starts as LoRA's
kaiming-uniform, B_t at zero and LN_t at (1, 0), so the tuned backbone starts as the frozen
one. The update acts through the ``linear`` hook on the query-key-value projection
(optionally also ``proj``); all tasks' updates are one batched matmul.

The query-key-value projection is ONE branch (LN_t, A_t in R^(r x d), B_t in R^(3d x r)) on
every backbone (``qkv_branch='shared'``, the authors' form): on Swin it updates the fused qkv
projection; PVT computes q from the tokens x and k, v from the spatially reduced tokens x'
with two linears ``q`` (d -> d) and ``kv`` (d -> 2d), and the one branch updates both, q by
``s LN_t(x) A_t^T B_q^T`` and kv by ``s LN_t(x') A_t^T B_kv^T`` (B_t = [B_q; B_kv], LN_t and
A_t shared). Where PVT does not reduce (sr_ratio 1), q and kv read the same tokens and this
is exactly LoRA on the fused d -> 3d projection [W_q; W_kv], as on Swin. It is what the
paper's PVT-S figure counts: 18 d per layer and task, as on Swin (4 x 18 x 4,160 = 299,520,
0.30M). ``qkv_branch='separate'`` gives PVT's q and kv a branch each (their own LN_t, A_t,
B_t: 24 d per layer and task, 399,360 = 0.40M on PVT-S, the form of earlier releases); on
Swin the two settings are the same model.

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
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext, new_task_param
from .merging import MergedWeights, low_rank_weight

#: target -> the projections it covers: the query/key/value projections are one fused 'qkv'
#: on Swin and 'q' + 'kv' on PVT (see ``LayerInfo.projections``)
TARGETS = {'qkv': ('qkv', 'q', 'k', 'v', 'kv'), 'proj': ('proj', )}
#: how the query-key-value projections of a layer are updated (see the module docstring)
QKV_BRANCHES = ('shared', 'separate')


@MODELS.register_module()
class LoRA(MergedWeights, BaseTuner):
    """LoRA with task-specific low-rank updates of the attention projections.

    Parameters per task and branch (d_in -> m d_in): r d_in (A) + m d_in r (B) + 2 d_in
    (input LayerNorm). The query-key-value branch has m = 3 on every backbone (Swin's fused
    qkv; PVT's q and kv share it): with r = 4, 18 d_l per layer and task. Swin-T, 4 tasks:
    4 x 18 x 4,416 = 317,952 (Table 1: 0.32M); without the input norm 4 x 16 x 4,416 =
    282,624. PVT-S: 4 x 18 x 4,160 = 299,520 (0.30M); ``qkv_branch='separate'`` (q: m = 1,
    kv: m = 2, a norm each): 4 x 24 x 4,160 = 399,360.

    Args:
        rank: r, the rank of each update B_t A_t.
        scale: s, the fixed multiplier of the update (the paper's "scale 4"; LoRA's
            alpha / r).
        targets: projections that get an update: 'qkv' (the query-key-value projections:
            Swin's fused qkv, PVT's q and kv) and/or 'proj' (attention output).
        input_norm: a task-specific LayerNorm on the input of every LoRA branch (the
            authors' form, default). False: the text's form, the branch reads x itself
            (the only form :meth:`merge` accepts).
        qkv_branch: 'shared' (the authors' form, default): one branch (LN_t, A_t, B_t with
            3d rows) for the query-key-value projections of a layer, also where a backbone
            splits them into several linears (PVT's q and kv, each reading its own tokens,
            each updated by its rows of B_t). 'separate': each such linear its own branch
            (PVT: q and kv, 24 d per layer and task). The same on Swin (one fused qkv).
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = True

    def __init__(self,
                 rank: int = 4,
                 scale: float = 4.0,
                 targets: Sequence[str] = ('qkv', ),
                 input_norm: bool = True,
                 qkv_branch: str = 'shared',
                 **kwargs):
        super().__init__(**kwargs)
        targets = (targets, ) if isinstance(targets, str) else tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f'LoRA.targets must be a non-empty subset of {list(TARGETS)}, '
                             f'got {list(targets)}')
        if rank < 1:
            raise ValueError(f'LoRA.rank must be >= 1, got {rank}')
        if qkv_branch not in QKV_BRANCHES:
            raise ValueError(f'LoRA.qkv_branch must be one of {list(QKV_BRANCHES)}, '
                             f'got {qkv_branch!r}')
        self.rank = rank
        self.scale = scale
        self.targets = targets
        self.input_norm = bool(input_norm)
        self.qkv_branch = qkv_branch
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        # the task-specific LayerNorm on each branch's input (absent: input_norm=False)
        self.norm_weight = nn.ParameterDict()
        self.norm_bias = nn.ParameterDict()
        # (layer index, projection) -> (branch key, its rows of B): a branch's B stacks the
        # output rows of the projections it updates (PVT's shared branch: q, then kv)
        self._slots: Dict[Tuple[int, str], Tuple[str, int, int]] = {}
        for layer in self.layers:
            widths: Dict[str, int] = {}  # branch key -> output rows, in insertion order
            for name, out_mult in layer.projections:
                target = next((t for t in targets if name in TARGETS[t]), None)
                if target is None:
                    continue
                shared = target == 'qkv' and qkv_branch == 'shared'
                key = self._key(layer, target if shared else name)
                start = widths.get(key, 0)
                widths[key] = start + out_mult * layer.dim
                self._slots[(layer.index, name)] = (key, start, widths[key])
            for key, rows in widths.items():
                self.lora_A[key] = new_task_param(self.num_tasks, rank, layer.dim)
                self.lora_B[key] = new_task_param(self.num_tasks, rows, rank)
                if self.input_norm:
                    self.norm_weight[key] = new_task_param(self.num_tasks, layer.dim)
                    self.norm_bias[key] = new_task_param(self.num_tasks, layer.dim)
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
        super().merge()

    def _B(self, key: str, start: int, stop: int) -> Tensor:
        """(T, d_out, r): the rows of the branch's B that update one projection."""
        B = self.lora_B[key]
        return B if (start, stop) == (0, B.shape[1]) else B[:, start:stop]

    def _merged_weight(self, layer: LayerInfo, name: str, module: nn.Linear) -> Tensor:
        """(T, d_in, d_out) transposed full weights of every task, cached while merged."""
        cache_key = self._key(layer, name)  # per projection: a branch may update several
        if cache_key not in self._merged:
            key, start, stop = self._slots[(layer.index, name)]
            with torch.no_grad():  # (T, d_out, d_in), transposed
                self._merged[cache_key] = low_rank_weight(
                    module.weight, self._B(key, start, stop), self.lora_A[key],
                    self.scale).transpose(1, 2)
        return self._merged[cache_key]

    # --------------------------------------------------------------------- hook
    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        slot = self._slots.get((layer.index, name))
        if slot is None:
            return module(x)
        key, start, stop = slot
        h = ctx.per_task(x)  # (T', M, d_in)
        if self.merged:
            self.check_not_training()
            weight = ctx.select(self._merged_weight(layer, name, module))
            if module.bias is None:
                out = torch.bmm(h, weight)
            else:  # the bias added inside the matmul, as nn.Linear does: one pass less
                out = torch.baddbmm(module.bias, h, weight)
        else:
            A = ctx.select(self.lora_A[key]).transpose(1, 2)  # (T', d_in, r)
            B = ctx.select(self._B(key, start, stop)).transpose(1, 2)  # (T', r, d_out)
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
