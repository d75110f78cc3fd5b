"""MTLoRA (Agiza et al., CVPR 2024): task-agnostic and task-specific low-rank adaptation.

Keys and defaults (the paper's main Swin-T configuration, scale-lab/MTLoRA
``configs/mtlora/tiny_448/mtlora_tiny_448_r64_scale4_pertask.yaml`` on top of ``config.py``)::

    tuner=dict(type='MTLoRA',
               rank=64,              # TA-LoRA rank, int or one per stage (R / R_PER_TASK.shared)
               task_rank=4,          # TS-LoRA rank, int, one per stage, or {task: int | list}
               shared_scale=4.0,     # TA scale, float or one per stage (SHARED_SCALE)
               task_scale=None,      # TS scale; None: shared_scale (SCALE_PER_TASK is empty)
               dropout=0.05,         # on the LoRA branches' input, per stage or one (DROPOUT)
               targets=('qkv', 'proj', 'fc1', 'fc2'),   # {QKV,PROJ,FC1,FC2}_ENABLED
               shared_mode='matrix', # 'matrix' | 'matrixv2' | 'addition' | 'lora_only'
               shared_layers='all',  # TA-LoRA in 'all' blocks, or only the 'last' of a stage
               train_patch_embed=True, train_norms=True,           # not TRAIN.FREEZE_*
               train_relative_position_bias=True, train_patch_merging=True,
               build_unused=False)   # the reference's never-trained last fc2 update

Paper variants: r = 16 / 32 / 64 are ``rank=16 / 32 / 64`` with everything else as above
(``configs/mtlora-r16_swin-t.py``, ``configs/mtlora-r32_swin-t.py``,
``configs/mtlora_swin-t.py``).

What it computes (followed: ``MTLoRALinear.forward`` in ``models/lora.py`` and
``SwinTransformerBlock.forward`` / ``BasicLayer.forward`` in
``models/swin_transformer_mtlora.py``). Every enabled projection ``y = W x + b`` of every block
gets the task-agnostic update (TA-LoRA) ``y = W x + b + s B A drop(x)`` (A: kaiming-uniform,
B: zero; ``s`` is a plain multiplier, not alpha / r). The last block of every stage forks: its
attention (qkv: TA-LoRA only) is shared, and from ``proj`` on every task t has its own stream,

    proj:     y_t = W a + b + s_t B_t A_t drop(a)       (a: the shared attention output)
    fc1/fc2:  y_t = W h + b + s_t B_t A_t h_t            (h: the shared stream's input, h_t:
                                                           task t's stream's input)

i.e. the frozen projection of a task stream reads the *shared* stream's input and only the
TS-LoRA branch reads the task's own (the reference's ``pretrained = self.linear(x)`` is shared
by the task outputs). ``shared_mode`` combines the shared output: 'matrix' ``W h + b + TA``
(task streams without TA), 'matrixv2' (task streams ``+ TA`` as well), 'addition'
``W h + b + LN(sum_t y_t)`` (a LayerNorm instead of TA on the forked projections),
'lora_only' (no task streams: TA-LoRA alone, the features shared by every task). The stage's
task outputs go to the decoders; the shared stream goes on through the patch merging into
the next stage. One backbone pass serves all tasks: a forked block computes its attention
once (on the shared rows) and parts the rows at its first TS projection ('proj'), where this
tuner's ``linear`` hook returns the shared stream and one stream per task.

Where mmpoly differs from the reference code, on purpose: the decoders read each stage's
output *before* its patch merging (the stride 4 / 8 / 16 / 32 pyramid every mmpoly decoder
reads; the reference merges the task streams too and feeds strides 8 / 16 / 32 / 32 to its
heads); trainable scales, INTERMEDIATE_SPECIALIZATION, LoRA on the patch merging
(DOWNSAMPLER_ENABLED) and bias training are not offered (all off in the reference's configs);
per-task ranks must agree within a stage (they do in every reference config). The
reference's corner cases with a forked projection disabled (a task stream that loses its
residual) are not reproduced: a disabled projection runs the frozen weight on each stream.

Backbones: Swin (and MoBY) only. MTLoRA is defined on Swin's blocks, and what it trains
besides LoRA (relative position bias tables, patch merging) does not exist on PVT, so PVT
refuses it (``needs``).

``task_batching``: the task streams are coupled to the shared stream inside a forked block
(their frozen projections read the shared input; 'addition' sums every task into the shared
stream), so there is no per-task pass to loop over: 'loop' runs the same single pass as
'stacked'.

Merging (inference): TA-LoRA folds into ``W + s B A`` (kept beside the frozen ``W``, which is
never modified) for every projection whose every stream uses ``W + TA``: all projections but
the forked ones in 'matrix' mode, whose task streams need the bare ``W x`` (so the shared
stream adds its TA to that product, unmerged: 11 of the 47 TA-LoRA projections built on
Swin-T). TS-LoRA stays a low-rank branch.
"""
import math
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext, split_streams, stage_last_layers
from .dropout import branch_dropout
from .merging import MergedWeights, add_low_rank, low_rank_weight, through_task_A

PROJECTIONS = ('qkv', 'proj', 'fc1', 'fc2')
#: projections that carry TS-LoRA in a forked block (the reference passes ``tasks`` to these)
TASK_PROJECTIONS = ('proj', 'fc1', 'fc2')
#: why a fork tuner offers no task-specific qkv
QKV_FORK = 'a fork at qkv would part the attention rows: not offered'
SHARED_MODES = ('matrix', 'matrixv2', 'addition', 'lora_only')
#: the backbone groups the reference leaves trainable (``mark_only_lora_as_trainable``
#: filters), as patterns searched in the backbone's parameter names
BACKBONE_GROUPS = {
    'train_patch_embed': r'^patch_embed\.',
    'train_norms': r'norm',
    'train_relative_position_bias': r'relative_position_bias_table',
    'train_patch_merging': r'downsample\.reduction',
}


def backbone_patterns(**train: bool) -> tuple:
    """The patterns of the backbone parameters a tuner of the MTLoRA family trains beside its
    own, from its ``train_*`` flags (the keys of :data:`BACKBONE_GROUPS`)."""
    return tuple(pattern for key, pattern in BACKBONE_GROUPS.items() if train[key])


@MODELS.register_module()
class MTLoRA(MergedWeights, BaseTuner):
    """MTLoRA: TA-LoRA on every block, TS-LoRA forking the last block of every stage.

    Parameters (per enabled projection d_in -> d_out): TA ``r (d_in + d_out)`` in every block
    (``shared_layers='all'``); TS ``T r_t (d_in + d_out)`` on proj, fc1, fc2 of each stage's
    last block. Swin-T, 4 tasks, r_t = 4: TA = 16 r * 4,416 (qkv 4d + proj 2d + fc1 5d +
    fc2 5d per block, sum of block widths 4,416) less the unused 5 r * 768 of the last fc2
    (``build_unused``), TS = 4 * 4 * 12 * 1,440 = 276,480.

    Args:
        rank: TA-LoRA rank r, an int or one per stage.
        task_rank: TS-LoRA rank, an int, one per stage, or a dict task -> int / per stage
            (all tasks must agree within a stage).
        shared_scale: TA scale s (a multiplier), a float or one per stage.
        task_scale: TS scale s_t: None (= ``shared_scale``), a float, one per stage, or a
            dict task -> float / per stage.
        dropout: dropout on the LoRA branches' input (training only), one or per stage.
        targets: the projections that get LoRA: subset of 'qkv', 'proj', 'fc1', 'fc2'.
        shared_mode: 'matrix', 'matrixv2', 'addition' ('add') or 'lora_only' (see above).
        shared_layers: 'all' (TA-LoRA in every block, the released code and the paper's
            counts) or 'last' (only in each stage's last block: the build behind the 5.30M
            printed in scale-lab/MTLoRA issue 5).
        train_patch_embed, train_norms, train_relative_position_bias, train_patch_merging:
            train these backbone groups too (the reference's defaults: all True).
        build_unused: also build the shared-stream update of the very last block's fc2
            ('matrix' / 'addition' mode), which the reference builds and counts but no
            output reads (the shared stream ends there): it never gets a gradient, which
            DDP with ``find_unused_parameters=False`` refuses. For counting only.
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = False  # one shared pass, which forks at ``fork_layers``
    needs = ('task_forks', 'relative_position_bias')

    def __init__(self,
                 rank: Union[int, Sequence[int]] = 64,
                 task_rank: Union[int, Sequence[int], Mapping] = 4,
                 shared_scale: Union[float, Sequence[float]] = 4.0,
                 task_scale: Union[None, float, Sequence[float], Mapping] = None,
                 dropout: Union[float, Sequence[float]] = 0.05,
                 targets: Sequence[str] = PROJECTIONS,
                 shared_mode: str = 'matrix',
                 shared_layers: str = 'all',
                 train_patch_embed: bool = True,
                 train_norms: bool = True,
                 train_relative_position_bias: bool = True,
                 train_patch_merging: bool = True,
                 build_unused: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        shared_mode = 'addition' if shared_mode == 'add' else shared_mode
        if shared_mode not in SHARED_MODES:
            raise ValueError(f'MTLoRA.shared_mode must be one of {list(SHARED_MODES)} (or '
                             f"'add'), got {shared_mode!r}")
        if shared_layers not in ('all', 'last'):
            raise ValueError(f"MTLoRA.shared_layers must be 'all' or 'last', got "
                             f'{shared_layers!r}')
        targets = (targets, ) if isinstance(targets, str) else tuple(targets)
        if not targets or any(t not in PROJECTIONS for t in targets):
            raise ValueError(f'MTLoRA.targets must be a non-empty subset of {list(PROJECTIONS)}'
                             f', got {list(targets)}')
        self.shared_mode, self.shared_layers, self.targets = shared_mode, shared_layers, targets
        stages = 1 + max((layer.stage for layer in self.layers), default=0)
        self.rank = _per_stage(rank, stages, 'rank', int)
        self.shared_scale = _per_stage(shared_scale, stages, 'shared_scale', float)
        self.dropout = _per_stage(dropout, stages, 'dropout', float)
        self.task_rank = self._per_task_stage(task_rank, stages, 'task_rank', int)
        self.task_scale = self._per_task_stage(
            self.shared_scale if task_scale is None else task_scale, stages, 'task_scale',
            float)
        if any(r < 1 for r in self.rank) or any(r < 1 for r in self.task_rank):
            raise ValueError(f'MTLoRA ranks must be >= 1, got rank={rank!r}, '
                             f'task_rank={task_rank!r}')
        # (T,) scale of each task's update, per stage
        for s, scales in enumerate(self._task_scales):
            self.register_buffer(f'task_scale{s}', torch.tensor(scales), persistent=False)

        last = stage_last_layers(self.layers)
        #: the layers whose output forks into one stream per task (none for 'lora_only')
        self.fork_layers = frozenset() if shared_mode == 'lora_only' else frozenset(last)
        #: layer -> its first TS projection: where the streams part (the attention before
        #: 'proj' is shared: computed once)
        self._fork_at = {index: next((n for n in TASK_PROJECTIONS if n in targets), None)
                         for index in self.fork_layers}

        self.shared_A = nn.ParameterDict()
        self.shared_B = nn.ParameterDict()
        self.task_A = nn.ParameterDict()
        self.task_B = nn.ParameterDict()
        self.shared_norm = nn.ModuleDict()  # 'addition' mode's LayerNorm
        final = max((layer.index for layer in self.layers), default=-1)
        for layer in self.layers:
            r, r_t = self.rank[layer.stage], self.task_rank[layer.stage]
            for name in targets:
                d_in, d_out = layer.widths(name)
                key = self._key(layer, name)
                forked = layer.index in self.fork_layers and name in TASK_PROJECTIONS
                # the shared stream's last output is read by nothing (its task streams read
                # the bare W in these modes): no parameter for it unless asked
                unused = (layer.index == final and name == 'fc2' and forked
                          and shared_mode in ('matrix', 'addition') and not build_unused)
                if forked:
                    self.task_A[key] = nn.Parameter(torch.zeros(self.num_tasks, r_t, d_in))
                    self.task_B[key] = nn.Parameter(torch.zeros(self.num_tasks, d_out, r_t))
                if unused:
                    continue
                if forked and shared_mode == 'addition':
                    self.shared_norm[key] = nn.LayerNorm(d_out)
                elif shared_layers == 'all' or layer.index in last:
                    self.shared_A[key] = nn.Parameter(torch.zeros(r, d_in))
                    self.shared_B[key] = nn.Parameter(torch.zeros(d_out, r))
        #: backbone parameters it trains, as patterns (``TunedBackboneMixin._freeze``)
        self.backbone_trainable = backbone_patterns(
            train_patch_embed=train_patch_embed, train_norms=train_norms,
            train_relative_position_bias=train_relative_position_bias,
            train_patch_merging=train_patch_merging)
        self.reset_parameters()

    # ------------------------------------------------------------------ config
    def _per_task_stage(self, value, stages: int, key: str, kind) -> List:
        """-> one value per stage; tasks must agree within a stage (kept per task for the
        scales in ``_task_scales``)."""
        if isinstance(value, Mapping):
            if 'shared' in value:  # the reference's R_PER_TASK.shared
                raise ValueError(f"MTLoRA.{key}: give the shared rank / scale as 'rank' / "
                                 f"'shared_scale', not as {key}['shared']")
            unknown = sorted(set(value) - set(self.tasks))
            missing = sorted(set(self.tasks) - set(value))
            if unknown or missing:
                raise ValueError(f'MTLoRA.{key}: give every task of {list(self.tasks)} '
                                 f'(missing {missing}, unknown {unknown})')
            per_task = [_per_stage(value[t], stages, f'{key}.{t}', kind) for t in self.tasks]
        else:
            per_task = [_per_stage(value, stages, key, kind)] * self.num_tasks
        if key == 'task_scale':
            self._task_scales = [[p[s] for p in per_task] for s in range(stages)]
            return per_task[0]
        for s in range(stages):
            if len({p[s] for p in per_task}) > 1:
                raise ValueError(f'MTLoRA.{key}: the tasks have different ranks in stage {s} '
                                 f'({dict(zip(self.tasks, (p[s] for p in per_task)))}); '
                                 f'all tasks must share one rank per stage')
        return per_task[0]

    @staticmethod
    def _key(layer: LayerInfo, name: str) -> str:
        return f'{name}{layer.index}'

    def reset_parameters(self) -> None:
        """A: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(d_in)), per matrix; B: zero (the
        reference's ``reset_parameters``); the 'addition' LayerNorm: (1, 0)."""
        for A in [*self.shared_A.values(), *self.task_A.values()]:
            bound = 1 / math.sqrt(A.shape[-1])
            nn.init.uniform_(A, -bound, bound)
        for Bm in [*self.shared_B.values(), *self.task_B.values()]:
            nn.init.zeros_(Bm)
        for norm in self.shared_norm.values():
            norm.reset_parameters()

    # ------------------------------------------------------------------ merging
    def _merged_weight(self, key: str, stage: int, module: nn.Linear) -> Tensor:
        """``W + s B A`` of a TA-LoRA projection, kept while merged (TS-LoRA stays)."""
        if key not in self._merged:
            with torch.no_grad():
                self._merged[key] = low_rank_weight(module.weight, self.shared_B[key],
                                                    self.shared_A[key], self.shared_scale[stage])
        return self._merged[key]

    # ------------------------------------------------------------------ counts
    def count_report(self, model: nn.Module, counts: Dict) -> Dict:
        """The lines scale-lab/MTLoRA's ``main.py`` prints: LoRA (trainable, 'lora' in the
        name: here the tuner), decoders (everything outside the backbone), extra (the rest
        that is trained)."""
        lora = sum(p.numel() for n, p in model.named_parameters()
                   if p.requires_grad and 'tuner' in n.split('.'))
        decoders = sum(p.numel() for n, p in model.named_parameters()
                       if not n.startswith('backbone.'))
        trainable, total = counts['all'], counts['total']
        return dict(reference=dict(trainable=trainable, decoders=decoders, lora=lora,
                                   extra=trainable - lora - decoders, total=total,
                                   total_without_lora=total - lora))

    # ------------------------------------------------------------------ hooks
    def _shared(self, layer: LayerInfo, key: str, module: nn.Linear, x: Tensor,
                dropped: Optional[Tensor] = None, frozen: Optional[Tensor] = None) -> Tensor:
        """``W x + b + s B A drop(x)`` (``W x + b`` where the layer has no TA-LoRA);
        ``frozen``: ``W x + b``, already computed (then never the merged weight)."""
        if key not in self.shared_A:
            return module(x) if frozen is None else frozen
        if self.merged and frozen is None:
            self.check_not_training()
            return F.linear(x, self._merged_weight(key, layer.stage, module), module.bias)
        if dropped is None:
            dropped = self._drop(layer, x)
        return add_low_rank(module(x) if frozen is None else frozen,
                            F.linear(dropped, self.shared_A[key]), self.shared_B[key],
                            self.shared_scale[layer.stage])

    def _drop(self, layer: LayerInfo, x: Tensor) -> Tensor:
        return branch_dropout(x, self.dropout[layer.stage], self.training)

    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        key = self._key(layer, name)
        if key not in self.task_A:
            # the shared rows (anywhere but in a forked block past its fork), or every
            # stream through a projection without TS-LoRA: each reads its own input
            return self._shared(layer, key, module, x) if name in self.targets else module(x)
        # a forked block's TS projection: at the fork (the first one) the rows are the
        # shared stream's and this hook parts them; past it, the shared stream then one
        # stream per task of ctx.tasks
        G, d_in = ctx.groups, x.shape[-1]
        forks_here = name == self._fork_at[layer.index]
        h0, task_in = (x.reshape(-1, d_in), None) if forks_here else \
            split_streams(x.reshape(G, -1, d_in))
        dropped = self._drop(layer, h0)
        # s_t folded into the small A_t; the low-rank product added inside the batched
        # matmul (baddbmm): no pass over the (T', M, d_out) update of its own
        scale = ctx.select(getattr(self, f'task_scale{layer.stage}'))[:, None, None]
        A = ctx.select(self.task_A[key]) * scale  # (T', r_t, d_in)
        Bt = ctx.select(self.task_B[key]).transpose(1, 2)  # (T', r_t, d_out)
        if task_in is None:
            # at the fork the reference gives no task inputs (x_tasks=None), so every task
            # branch reads the shared, dropped input: one product for all of them
            low = F.linear(dropped, A.flatten(0, 1)).view(-1, G - 1, A.shape[1]).transpose(0, 1)
        else:  # past it, each task's own stream
            low = through_task_A(task_in, A)  # (T', M, r_t)

        def plus_updates(base: Tensor) -> Tensor:  # base + s_t B_t A_t task_in, every task
            return torch.baddbmm(base.expand(low.shape[0], *base.shape), low, Bt)

        if self.shared_mode == 'matrixv2':  # every stream has W + TA: merges
            shared = self._shared(layer, key, module, h0, dropped)
            tasks = plus_updates(shared)
        else:  # the task streams read the bare W: computed once, TA added unmerged
            frozen = module(h0)
            tasks = plus_updates(frozen)
            if self.shared_mode == 'addition':
                norm = self.shared_norm[key] if key in self.shared_norm else None
                shared = frozen if norm is None else frozen + norm(tasks.sum(0))
            else:
                shared = self._shared(layer, key, module, h0, dropped, frozen)
        out = torch.cat([shared[None], tasks])  # (G, M, d_out)
        if forks_here:
            return out.reshape(G * x.shape[0], *x.shape[1:-1], out.shape[-1])
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _per_stage(value, stages: int, key: str, kind) -> List:
    """An int / float, or a list of one or ``stages`` values (the reference's rule) -> list."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values = values * stages
    if len(values) != stages or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                        for v in values):
        raise ValueError(f'MTLoRA.{key} must be a number or a list of 1 or {stages} numbers '
                         f'(one per stage), got {value!r}')
    return [kind(v) for v in values]


__all__ = ['MTLoRA', 'BACKBONE_GROUPS', 'PROJECTIONS', 'TASK_PROJECTIONS', 'QKV_FORK',
           'backbone_patterns']
