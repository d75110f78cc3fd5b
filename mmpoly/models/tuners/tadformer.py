"""TADFormer (Baek et al., arXiv 2501.04293): task-adaptive dynamic transformer.

Keys and defaults (what the released code, Min100KM/TADFormer, trains: its Swin-T r64 yaml)::

    tuner=dict(type='TADFormer',
               rank=64,               # shared LoRA rank (16 / 32 / 64 in the paper)
               scale=4.0,             # LoRA scale s (a multiplier)
               dropout=0.05,          # on the LoRA branches' shared input
               targets=('qkv', 'proj', 'fc1', 'fc2'),
               filter='static',       # 'static' (released) | 'dynamic' (the paper's DTF)
               filter_kernel=3,
               prompt_len=1,          # prompt tokens per task (the TPC needs 1)
               prompt_init=(1.0, 1.0, 2.0),  # trunc_normal(mean, std), cut at +-2
               gate_init=0.0,         # stage gate g: sigma(0) = an even mix at the start
               stage_gating=True,     # False: (skip + block) / 2
               skip_connection=True,  # False: no TPC skip into the stage output
               skip_layout='reference',  # 'reference' (the released reinterpretation) | 'tokens'
               prompt_update='tadformer',  # 'tadformer' | 'vpt'
               mask_padding=True,     # padded window tokens out of the proj filter
               train_patch_embed=True, train_norms=True,
               train_relative_position_bias=True, train_patch_merging=False,
               build_unused=False)    # the 8 prompt LayerNorms the reference builds, never uses

What it computes, per the plan (docs/plans/issue24.md sec. 1), with the mmpoly hooks:

- **Shared LoRA** on qkv, proj, fc1, fc2 of every block: ``W x + b + s B A drop(x)``
  (A kaiming-uniform, B zero); one A, B per projection, shared by every stream.
- **Task prompts**: one ``(T * L, d_0)`` parameter, all tasks' prompts join every window of
  every block (no position bias, no shift mask: the backbone's prompt rule); their outputs
  are averaged over the windows and carried on (``prompt_update``):
  ``p <- p + MLP(norm2(p_attn))`` with the block's shared-LoRA MLP (no attention residual;
  'vpt' is the tokens' rule), except in the network's last block; at every patch merging
  they are widened by ``Linear(d, 2d, bias=False)`` (``stage_prompts``).
- **Forked last block of each stage** (as MTLoRA; qkv shared): per task t, on proj, fc1,
  fc2, ``W x + b + s B f_t(A x_t)`` with the frozen term on the shared input ``x`` and
  ``f_t`` a filter on the rank-r map of ``A x_t`` (proj: each window, fc1/fc2: the stage's
  H x W): 'static' a per-task depthwise k x k convolution with bias, 'dynamic' one
  per-projection kernel generator (1x1 conv r -> k^2 r on the average-pooled map,
  standardised over the k^2 taps per channel, rescaled by learned std and mean), per sample.
  proj's task input is ``x_t = LN_p(a + a * GELU(l_t))`` (TPC): ``a`` the shared, dropped
  attention output, ``l_t`` task t's prompt's unscaled logits against the window's tokens,
  per head on that head's channels.
- **Stage gate**: the stage's task output is ``sigma(g) skip_t + (1 - sigma(g)) block_t``,
  ``skip_t = a * GELU(l_t)`` in image order; the released code reinterprets its
  ``(B nW, C, N)`` memory as ``(B nW, ws, ws, C)`` ('reference'); 'tokens' permutes it.

Padded windows (512 px inputs; the released setting, 448 px, pads none): the padded tokens
are zeroed in the rank-r map before the proj filter (``mask_padding``). Backbones: Swin only
(PVT has no windows or forks: refused through ``needs``).
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import (BaseTuner, LayerInfo, Site, TaskContext, split_streams, stage_last_layers,
                   subset_of)
from .dropout import branch_dropout
from .merging import MergedWeights, add_low_rank, low_rank_weight
from .mtlora import PROJECTIONS, TASK_PROJECTIONS, backbone_patterns

#: published totals (M) of Swin-T, 4 tasks, by rank (TADFormer table 1)
PUBLISHED = {16: '3.56', 32: '4.78', 64: '7.38'}
#: the reference HRNet heads with per-task downsamplers (docs/plans/issue24.md sec. 0.5)
REFERENCE_HEADS = 1_946_624


@MODELS.register_module()
class TADFormer(MergedWeights, BaseTuner):
    """TADFormer: shared LoRA, task prompts, forked last blocks with TPC, task filters and a
    stage gate (see the module docstring).

    Args:
        rank: shared LoRA rank r.
        scale: LoRA scale s.
        dropout: dropout on the LoRA branches' shared input (training only).
        targets: projections with LoRA, a subset of 'qkv', 'proj', 'fc1', 'fc2'.
        filter: 'static' (per-task depthwise convolution, released) or 'dynamic' (DTF).
        filter_kernel: k of the k x k filters.
        prompt_len: prompt tokens per task (the TPC uses one logit row per task: 1).
        prompt_init: (mean, std, cut): truncated normal of the prompts (absolute cut +-cut).
        gate_init: initial g of the stage gates.
        stage_gating: learned gate; False mixes skip and block half and half.
        skip_connection: the TPC skip joins the stage output; False: the block's output only.
        skip_layout: 'reference' or 'tokens' (see above).
        prompt_update: 'tadformer' or 'vpt'.
        mask_padding: zero the padded tokens of a window in the rank-r map before the proj
            filter, so that they do not leak into the image's tokens (no padding at 448 px).
        train_*: backbone groups trained besides the tuner (patch merging frozen, as
            released).
        build_unused: also build the prompt LayerNorms of the non-forked blocks (the
            reference counts them; no output reads them). For counting only.
    """
    task_specific = False  # one shared pass that forks at each stage's last block
    carries_prompts = True
    needs = ('task_forks', 'windows', 'prompts')

    def __init__(self,
                 rank: int = 64,
                 scale: float = 4.0,
                 dropout: float = 0.05,
                 targets: Sequence[str] = PROJECTIONS,
                 filter: str = 'static',
                 filter_kernel: int = 3,
                 prompt_len: int = 1,
                 prompt_init: Tuple[float, float, float] = (1.0, 1.0, 2.0),
                 gate_init: float = 0.0,
                 stage_gating: bool = True,
                 skip_connection: bool = True,
                 skip_layout: str = 'reference',
                 prompt_update: str = 'tadformer',
                 mask_padding: bool = True,
                 train_patch_embed: bool = True,
                 train_norms: bool = True,
                 train_relative_position_bias: bool = True,
                 train_patch_merging: bool = False,
                 build_unused: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        targets = subset_of(targets, PROJECTIONS, 'TADFormer.targets')
        checks = [(filter in ('static', 'dynamic'), f"filter must be 'static' or 'dynamic', "
                   f'got {filter!r}'),
                  (skip_layout in ('reference', 'tokens'), "skip_layout must be 'reference' "
                   f"or 'tokens', got {skip_layout!r}"),
                  (prompt_update in ('tadformer', 'vpt'), "prompt_update must be 'tadformer' "
                   f"or 'vpt', got {prompt_update!r}"),
                  (prompt_len == 1, f'prompt_len must be 1 (the TPC reads one logit row per '
                   f'task), got {prompt_len}'),
                  (rank >= 1, f'rank must be >= 1, got {rank}'),
                  (filter_kernel % 2 == 1 and filter_kernel >= (3 if filter == 'dynamic'
                                                                else 1),
                   f'filter_kernel must be odd (>= 3 for the dynamic filter, which '
                   f'standardises the taps), got {filter_kernel}'),
                  ('proj' in targets, f"targets must hold 'proj' (the TPC's projection), "
                   f'got {list(targets)}')]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'TADFormer.{message}')
        self.rank, self.scale, self.dropout, self.targets = rank, float(scale), dropout, targets
        self.filter, self.kernel = filter, filter_kernel
        self.prompt_len, self.prompt_init = prompt_len, tuple(prompt_init)
        self.gate_init, self.stage_gating = gate_init, stage_gating
        self.skip_connection, self.skip_layout = skip_connection, skip_layout
        self.update_rule, self.mask_padding = prompt_update, mask_padding

        self.fork_layers = stage_last_layers(self.layers)
        last = {layer.stage: layer for layer in self.layers if layer.index in self.fork_layers}
        self._final = max((layer.index for layer in self.layers), default=-1)
        stages = sorted(last)
        T, r, k = self.num_tasks, rank, filter_kernel

        self.shared_A = nn.ParameterDict()
        self.shared_B = nn.ParameterDict()
        for layer in self.layers:
            for name in targets:
                d_in, d_out = layer.widths(name)
                self.shared_A[self._key(layer, name)] = nn.Parameter(torch.zeros(r, d_in))
                self.shared_B[self._key(layer, name)] = nn.Parameter(torch.zeros(d_out, r))
        #: the forked projections: proj (TPC + filter), fc1, fc2 (filter) of each last block
        self.task_keys = [self._key(layer, name) for layer in last.values()
                          for name in TASK_PROJECTIONS if name in targets]
        self.filter_weight = nn.ParameterDict()  # static: (T, r, 1, k, k); dynamic: (k²r, r)
        self.filter_bias = nn.ParameterDict()  # static: (T, r); dynamic: (k²r,)
        self.filter_std = nn.ParameterDict()  # dynamic: (r, k²)
        self.filter_mean = nn.ParameterDict()  # dynamic: (r, k²)
        for key in self.task_keys:
            if filter == 'static':
                self.filter_weight[key] = nn.Parameter(torch.zeros(T, r, 1, k, k))
                self.filter_bias[key] = nn.Parameter(torch.zeros(T, r))
            else:
                self.filter_weight[key] = nn.Parameter(torch.zeros(k * k * r, r))
                self.filter_bias[key] = nn.Parameter(torch.zeros(k * k * r))
                self.filter_std[key] = nn.Parameter(torch.zeros(r, k * k))
                self.filter_mean[key] = nn.Parameter(torch.zeros(r, k * k))
        # the TPC's LayerNorm of each forked proj (every block's with build_unused)
        self.prompt_norm = nn.ModuleDict({
            str(layer.index): nn.LayerNorm(layer.dim) for layer in self.layers
            if layer.index in self.fork_layers or build_unused})
        dims = [last[s].dim for s in stages]
        self.prompts = nn.Parameter(torch.zeros(T * prompt_len, dims[0] if dims else 1))
        self.prompt_up = nn.ParameterList(
            [nn.Parameter(torch.zeros(2 * d, d)) for d in dims[:-1]])
        self.gates = nn.Parameter(torch.zeros(len(stages)))
        #: backbone parameters it trains, as patterns (``TunedBackboneMixin._freeze``)
        self.backbone_trainable = backbone_patterns(
            train_patch_embed=train_patch_embed, train_norms=train_norms,
            train_relative_position_bias=train_relative_position_bias,
            train_patch_merging=train_patch_merging)
        self.reset_parameters()

    @staticmethod
    def _key(layer: LayerInfo, name: str) -> str:
        return f'{name}{layer.index}'

    def reset_parameters(self) -> None:
        """A: kaiming_uniform(a=sqrt(5)); B: zero; static filters: PyTorch's Conv2d default;
        dynamic: its 1x1 conv PyTorch's default, std and mean N(0, 1); prompts:
        trunc_normal(mean, std) cut at +-cut; widening: trunc_normal(0.02); gates g_0."""
        for A in self.shared_A.values():
            bound = 1 / math.sqrt(A.shape[-1])
            nn.init.uniform_(A, -bound, bound)
        for Bm in self.shared_B.values():
            nn.init.zeros_(Bm)
        for key, weight in self.filter_weight.items():
            fan_in = self.kernel**2 if self.filter == 'static' else weight.shape[1]
            bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the bias's
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(self.filter_bias[key], -bound, bound)
        for p in [*self.filter_std.values(), *self.filter_mean.values()]:
            nn.init.normal_(p)
        for norm in self.prompt_norm.values():
            norm.reset_parameters()
        mean, std, cut = self.prompt_init
        nn.init.trunc_normal_(self.prompts, mean, std, -cut, cut)
        for up in self.prompt_up:
            nn.init.trunc_normal_(up, std=0.02)
        nn.init.constant_(self.gates, self.gate_init)

    def count_report(self, model: nn.Module, counts: Dict) -> Dict:
        """``paper``: our encoder count plus the reference's HRNet heads beside the paper's
        total for this rank (4 tasks only). The paper's totals are the 'dynamic' build with
        ``build_unused``; the released 'static' one is short by the filters."""
        if self.rank not in PUBLISHED or self.num_tasks != 4:
            return {}
        build = 'encoder + the reference HRNet heads'
        if self.filter == 'static':
            build += "; the paper counted filter='dynamic', build_unused=True"
        return dict(paper=dict(source=f'TADFormer r{self.rank}, Swin-T, 4 tasks', build=build,
                               reference=counts['encoder'] + REFERENCE_HEADS,
                               published=PUBLISHED[self.rank]))

    # ------------------------------------------------------------------ merging
    # (merge folds the shared LoRA into W + s B A wherever no task stream needs the bare W:
    # all but the forked proj, fc1, fc2)

    # ------------------------------------------------------------------ LoRA
    def _shared(self, layer: LayerInfo, key: str, module: nn.Linear, x: Tensor,
                dropped: Optional[Tensor] = None, frozen: Optional[Tensor] = None) -> Tensor:
        """``W x + b + s B A drop(x)``; ``frozen``: ``W x + b``, already computed."""
        if key not in self.shared_A:
            return module(x) if frozen is None else frozen
        if self.merged and frozen is None:
            self.check_not_training()
            if key not in self._merged:
                with torch.no_grad():
                    self._merged[key] = low_rank_weight(module.weight, self.shared_B[key],
                                                        self.shared_A[key], self.scale)
            return F.linear(x, self._merged[key], module.bias)
        if dropped is None:
            dropped = branch_dropout(x, self.dropout, self.training)
        return add_low_rank(module(x) if frozen is None else frozen,
                            F.linear(dropped, self.shared_A[key]), self.shared_B[key], self.scale)

    # ------------------------------------------------------------------ filters
    def task_filter(self, ctx: TaskContext, key: str, u: Tensor, hw: Tuple[int, int]) -> Tensor:
        """``f_t`` on ``u (T', n, H*W, r)``: every task's rank-r maps, ``n`` per task."""
        Tn, n, N, r = u.shape
        H, W = hw
        k = self.kernel
        maps = u.permute(0, 1, 3, 2).reshape(Tn * n, r, H, W)
        if self.filter == 'static':  # per-task depthwise conv: tasks stacked as channels
            maps = maps.view(Tn, n, r, H, W).transpose(0, 1).reshape(n, Tn * r, H, W)
            weight = ctx.select(self.filter_weight[key]).reshape(Tn * r, 1, k, k)
            bias = ctx.select(self.filter_bias[key]).reshape(Tn * r)
            out = F.conv2d(maps, weight, bias, padding=k // 2, groups=Tn * r)
            out = out.view(n, Tn, r, N).transpose(0, 1)
        else:  # one kernel per sample and channel, generated from the pooled map
            kernels = F.linear(maps.mean((2, 3)), self.filter_weight[key],
                               self.filter_bias[key]).view(Tn * n, r, k * k)
            kernels = (kernels - kernels.mean(-1, keepdim=True)) / (
                kernels.std(-1, keepdim=True) + 1e-10)
            kernels = kernels * self.filter_std[key] + self.filter_mean[key]
            patches = F.unfold(maps, k, padding=k // 2).view(Tn * n, r, k * k, N)
            out = torch.einsum('brk,brkp->brp', kernels, patches).view(Tn, n, r, N)
        return out.transpose(2, 3)  # (T', n, N, r)

    def tpc(self, ctx: TaskContext, layer: LayerInfo, a: Tensor, site: Site) -> Tensor:
        """``a * GELU(l_t)`` per head for every task of the pass: ``a (n, N, C)`` the grid
        tokens' proj input -> ``(T', n, N, C)``."""
        n, N, C = a.shape
        heads = layer.num_heads
        logits = site.prompt_logits()  # (n, heads, T * L, N)
        rows = torch.as_tensor(ctx.tasks, device=a.device) * self.prompt_len
        gates = F.gelu(logits[:, :, rows])  # (n, heads, T', N)
        gates = gates.permute(2, 0, 3, 1)[..., None]  # (T', n, N, heads, 1)
        return (a.view(1, n, N, heads, C // heads) * gates).reshape(-1, n, N, C)

    # ------------------------------------------------------------------ hooks
    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        """The shared LoRA (also the prompts' MLP, through ``prompt_linear``'s default)."""
        key = self._key(layer, name)
        return self._shared(layer, key, module, x) if name in self.targets else module(x)

    def linear_at(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
                  x: Tensor, site: Site):
        key = self._key(layer, name)
        if not (ctx.forked and key in self.filter_weight):
            return self.linear(ctx, layer, name, module, x)
        G, Tn = ctx.groups, ctx.groups - 1
        if name == 'proj':  # the fork: the rows are the shared stream's, with prompts
            P = site.num_prompts
            dropped = branch_dropout(x, self.dropout, self.training)
            frozen = module(x)
            shared = self._shared(layer, key, module, x, dropped, frozen)
            skip = self.tpc(ctx, layer, dropped[:, P:], site)  # (T', n, N, C)
            task_in = self.prompt_norm[str(layer.index)](dropped[None, :, P:] + skip)
            u = F.linear(task_in, self.shared_A[key])  # (T', n, N, r)
            if self.mask_padding and site.real_tokens is not None:
                real = site.real_tokens()  # (windows of an image, N)
                u = u * real.repeat(x.shape[0] // real.shape[0], 1)[None, :, :, None]
            low = self.task_filter(ctx, key, u, site.hw)
            tasks = torch.add(frozen[None, :, P:], F.linear(low, self.shared_B[key]),
                              alpha=self.scale)
            # task streams keep the shared prompt rows (only the shared stream's carry on)
            tasks = torch.cat([shared[None, :, :P].expand(Tn, -1, -1, -1), tasks], dim=2)
            out = torch.cat([shared[None], tasks]).flatten(0, 1)
            return out, self._skip_layout(skip).flatten(0, 1)
        # (G, n, N, C): shared, then one per task
        h0, task_in = split_streams(x.reshape(G, -1, *x.shape[1:]))
        frozen = module(h0)
        shared = self._shared(layer, key, module, h0, frozen=frozen)
        low = self.task_filter(ctx, key, F.linear(task_in, self.shared_A[key]), site.hw)
        tasks = torch.add(frozen, F.linear(low, self.shared_B[key]), alpha=self.scale)
        return torch.cat([shared[None], tasks]).reshape(*x.shape[:-1], -1)

    def _skip_layout(self, skip: Tensor) -> Tensor:
        """The released code keeps ``skip`` as (n, C, N) and views that memory as
        (n, ws, ws, C) ('reference'); 'tokens' keeps each token's channels together."""
        if self.skip_layout == 'tokens':
            return skip
        Tn, n, N, C = skip.shape
        return skip.transpose(2, 3).reshape(Tn, n, N, C)

    def layer_output(self, ctx: TaskContext, layer: LayerInfo, x: Tensor,
                     side: Optional[Tensor]) -> Tensor:
        if side is None or not self.skip_connection:
            return x
        B = x.shape[0] // ctx.groups
        g = torch.sigmoid(self.gates[layer.stage]) if self.stage_gating else 0.5
        tasks = torch.lerp(x[B:], side, g)  # g skip + (1 - g) block
        return torch.cat([x[:B], tasks])

    def stage_prompts(self, ctx: TaskContext, stage: int, previous: Optional[Tensor],
                      batch_size: int) -> Optional[Tensor]:
        if stage == 0:
            return self.prompts[None].expand(batch_size, *self.prompts.shape)
        return None if previous is None else F.linear(previous, self.prompt_up[stage - 1])

    def layer_prompts(self, ctx: TaskContext, layer: LayerInfo, carried: Optional[Tensor],
                      batch_size: int) -> Optional[Tensor]:
        return carried

    def prompt_update(self, ctx: TaskContext, layer: LayerInfo, prompts: Tensor,
                      p_attn: Tensor, mlp) -> Optional[Tensor]:
        if layer.index == self._final:  # nothing reads the last block's prompts
            return None
        if self.update_rule == 'vpt':
            return super().prompt_update(ctx, layer, prompts, p_attn, mlp)
        return prompts + mlp(p_attn)


__all__ = ['TADFormer', 'PUBLISHED', 'REFERENCE_HEADS']
