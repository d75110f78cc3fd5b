"""DiTASK (Mantri et al., CVPR 2025): diffeomorphic multi-task fine-tuning.

Every frozen projection ``W = U diag(S) V^T`` is replaced by ``W' = U diag(S') V^T``: the
singular vectors stay, the spectrum ``S`` (read as a 1-D signal on ``linspace(0, 1, k)``,
largest first) is resampled at ``phi_theta(linspace(0, 1, k))`` by linear interpolation,
``phi_theta`` a 1-D CPAB diffeomorphism of [0, 1] (``cpab.py``). With a zero boundary
``phi`` fixes 0 and 1 and is increasing, so ``S'_1 = S_1``, ``S'_k = S_k`` and the order of
the spectrum is kept.

Keys and defaults (ipsitmantri/DiTASK ``models/lora.py`` ``DiTASKLinear`` and its yaml
``R_PER_TASK``: shared 64, per task 4)::

    tuner=dict(type='DiTASK',
               shared_cells=64,       # tessellation of the shared theta (63 parameters)
               task_cells=4,          # tessellation of each task's theta (3 parameters)
               zero_boundary=True,    # difw's Cpab(zero_boundary=True)
               basis='rref',          # difw's default basis
               time=1.0,              # integration time of the velocity field
               theta_init='kaiming',  # 'kaiming' (the reference) | 'zeros' (the frozen model)
               targets=('qkv', 'proj', 'fc1', 'fc2'),   # projections with a shared theta
               task_targets=('proj', 'fc1', 'fc2'),     # ... with task thetas (forked blocks)
               split_qkv=True,        # q, k, v warped as three matrices, one theta
               dropout=0.05,          # on the warped projections' input (the reference's)
               train_patch_embed=True, train_norms=True,
               train_relative_position_bias=True, train_patch_merging=True,
               build_unused=False)    # the last block's shared thetas no output reads

What it computes (followed: ``DiTASKLinear.transform_data`` and ``.forward``). Each targeted
projection of every block: ``y = W'(theta) drop(x) + b`` with one shared theta per
projection (``qkv``: the (3d, d) weight split into its q, k and v blocks, each with its own
SVD, warped by the same theta: the reference's ``do == 3 * di`` rule; proj, fc1, fc2 whole).
Here ``W'`` is built in delta form, ``W' = W + U diag(S' - S) V^T``: exactly ``W`` at
``theta = 0``, whatever the rounding of the SVD. The released code lacks the Swin wiring
(``swin_transformer_ditask.py``); it is assumed as MTLoRA's (the paper builds on it): the
last block of every stage forks, its attention (qkv) is shared, and from ``proj`` on every
task t has its own stream, through ``W'(theta_t)`` with ``theta_t`` alone (not composed with
the shared theta, as released): at proj ``y_t = W'(theta_t) drop(a) + b`` on the shared,
dropped attention output (the reference's ``x_tasks=None``); at fc1 / fc2
``y_t = W'(theta_t) h_t + b`` on the task's own stream (not dropped, as released). Unlike
MTLoRA, a task stream's projections read only the task's own input. The shared stream goes on
through the patch merging; the task streams are the stage's features for the decoders.

Where mmpoly differs from the reference, on purpose: the SVD of each frozen weight is computed
once and cached (the reference recomputes ``torch.svd`` every forward) in the weight's dtype
and device, keyed by the weight's storage, version, dtype and device so that
``load_state_dict``, ``.double()`` or ``.to(device)`` refresh it; it is never saved in the
state dict. The warp runs in float32 at least (the reference forces float32 under autocast)
and in float64 for a float64 model. The very last block's shared thetas on its task
projections feed nothing (the shared stream ends there; the task streams use theta_t alone):
not built unless ``build_unused``, which DDP without ``find_unused_parameters`` needs (the
reference runs DDP with ``find_unused_parameters=True``). The decoders read each stage's
output before its patch merging, as for MTLoRA. The reference's ``theta`` init,
``kaiming_uniform_(a=sqrt(5))`` on a (1, d) tensor, is U(+-1/sqrt(d)): DiTASK does not start
as the frozen model (``theta_init='zeros'`` does, exactly).

Parameters, Swin-T, 4 tasks: shared theta 63 per projection, 4 per block (qkv, proj, fc1,
fc2) x 12 blocks = 3,024; task theta 3 per task and task projection, 3 x 4 stages x 4 tasks
= 144; the trained backbone parts (patch embedding 4,896, LayerNorms 23,040, relative
position tables 23,322, patch-merging reductions 1,548,288) 1,599,546. The reference build
(with the unused thetas) is 3,024 + 144 + 1,599,546 = 1,602,714 = 1.60M against the paper's
1.61M (encoder side): short by 2,286 to 12,285 (to print 1.61), in a group the released code
does not show (its Swin model file is missing); for scale, task thetas on qkv too add 48, a
final LayerNorm(768) 1,536, 64-cell task thetas (63 each) give 1,605,594 (1.61). mmpoly
builds 189 fewer by default (the last block's proj, fc1, fc2 shared thetas): 1,602,525.

``task_batching``: one shared pass that forks (as MTLoRA): 'loop' runs the same pass.

Backbones: Swin (and MoBY). The task thetas need the fork of a stage's last block and the
trained groups Swin's tables and patch mergings: PVT refuses it (``needs``).

Merging (inference): ``merge()`` keeps every ``W'(theta)`` (shared, and per task) built once;
``unmerge()`` drops them. The frozen weights are never modified.

Cost per forward: ``before_forward`` integrates every theta's phi in two batched calls (one
per tessellation, a few cell hops each); each warped projection then costs one
``(U * (S' - S)) @ V^T`` product (sum over Swin-T's 48 projections of 12 d^3 = 15.1 GMAC,
plus 4.7 GMAC per task for the forked ones). The cached SVD holds about 1.5 times the
warped projections' weights. ``dropout=0`` is the reference without dropout.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import (BaseTuner, LayerInfo, TaskContext, split_streams, stage_last_layers,
                   subset_of)
from .dropout import branch_dropout
from .cpab import Cpab1d, resample
from .merging import MergedWeights
from .mtlora import PROJECTIONS, QKV_FORK, TASK_PROJECTIONS, backbone_patterns

THETA_INITS = ('kaiming', 'zeros')


@MODELS.register_module()
class DiTASK(MergedWeights, BaseTuner):
    """DiTASK: singular values of every frozen projection warped by a CPAB diffeomorphism,
    shared in every block, per task in the forked last block of every stage.

    Args:
        shared_cells: cells of the shared tessellation (d = cells - 1 thetas with a zero
            boundary, cells + 1 without).
        task_cells: cells of each task's tessellation.
        zero_boundary: the velocity is zero at both ends (phi fixes the first and last
            singular values).
        basis: the CPAB basis: 'rref'.
        time: integration time of the velocity field.
        theta_init: 'kaiming' (U(+-1/sqrt(d)), the reference) or 'zeros' (the frozen model).
        targets: projections warped by a shared theta: subset of 'qkv', 'proj', 'fc1', 'fc2'.
        task_targets: projections of each stage's last block with one theta per task:
            subset of 'proj', 'fc1', 'fc2' (empty: no task thetas, no fork).
        split_qkv: warp q, k and v as three matrices with one theta (the reference), else the
            fused (3d, d) weight as one.
        dropout: dropout on the warped projections' input (training only).
        train_patch_embed, train_norms, train_relative_position_bias, train_patch_merging:
            train these backbone groups too (the reference: all True).
        build_unused: also build the very last block's shared thetas on its task
            projections, which no output reads (for counting only: they get no gradient).
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = False  # one shared pass, which forks at ``fork_layers``
    needs = ('task_forks', 'relative_position_bias')

    def __init__(self,
                 shared_cells: int = 64,
                 task_cells: int = 4,
                 zero_boundary: bool = True,
                 basis: str = 'rref',
                 time: float = 1.0,
                 theta_init: str = 'kaiming',
                 targets: Sequence[str] = PROJECTIONS,
                 task_targets: Sequence[str] = TASK_PROJECTIONS,
                 split_qkv: bool = True,
                 dropout: float = 0.05,
                 train_patch_embed: bool = True,
                 train_norms: bool = True,
                 train_relative_position_bias: bool = True,
                 train_patch_merging: bool = True,
                 build_unused: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        targets = subset_of(targets, PROJECTIONS, 'DiTASK.targets')
        task_targets = subset_of(task_targets, TASK_PROJECTIONS, 'DiTASK.task_targets',
                                 allow_empty=True, refused=QKV_FORK)
        if theta_init not in THETA_INITS:
            raise ValueError(f'DiTASK.theta_init must be one of {list(THETA_INITS)}, got '
                             f'{theta_init!r}')
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f'DiTASK.dropout must be a number in [0, 1), got {dropout!r}')
        if not isinstance(time, (int, float)) or isinstance(time, bool) or time <= 0:
            raise ValueError(f'DiTASK.time must be a positive number, got {time!r}')
        if basis != 'rref':
            raise ValueError(f"DiTASK.basis must be 'rref' (difw's default), got {basis!r}")
        if not isinstance(zero_boundary, bool):
            raise ValueError(f'DiTASK.zero_boundary must be True or False, got '
                             f'{zero_boundary!r}')
        for key, cells in (('shared_cells', shared_cells), ('task_cells', task_cells)):
            if not isinstance(cells, int) or isinstance(cells, bool) or cells < 2:
                raise ValueError(f'DiTASK.{key} must be an int >= 2, got {cells!r}')
        self.targets, self.task_targets = targets, task_targets
        self.split_qkv, self.dropout, self.time = split_qkv, float(dropout), float(time)
        self.theta_init = theta_init
        self.shared_cpab = Cpab1d(shared_cells, zero_boundary, basis)
        self.task_cpab = Cpab1d(task_cells, zero_boundary, basis)

        #: the layers whose output forks into one stream per task
        self.fork_layers = stage_last_layers(self.layers) if task_targets else frozenset()
        #: layer -> its first task projection: where the streams part (the attention before
        #: it is shared: computed once)
        self._fork_at = {index: next(n for n in TASK_PROJECTIONS if n in task_targets)
                         for index in self.fork_layers}

        self.shared_theta = nn.ParameterDict()
        self.task_theta = nn.ParameterDict()
        #: key -> k, the length of the projection's spectrum (of each block)
        self._spectrum: Dict[str, int] = {}
        final = max((layer.index for layer in self.layers), default=-1)
        for layer in self.layers:
            for name in PROJECTIONS:
                key = _key(layer, name)
                d_in, d_out = layer.widths(name)
                self._spectrum[key] = min(d_out // self._blocks(name), d_in)
                forked = layer.index in self.fork_layers and name in task_targets
                if forked:
                    self.task_theta[key] = nn.Parameter(
                        torch.zeros(self.num_tasks, self.task_cpab.dim))
                # the network's last shared stream past the fork is read by nothing
                unused = forked and layer.index == final and not build_unused
                if name in targets and not unused:
                    self.shared_theta[key] = nn.Parameter(torch.zeros(self.shared_cpab.dim))
        #: backbone parameters it trains, as patterns (``TunedBackboneMixin._freeze``)
        self.backbone_trainable = backbone_patterns(
            train_patch_embed=train_patch_embed, train_norms=train_norms,
            train_relative_position_bias=train_relative_position_bias,
            train_patch_merging=train_patch_merging)
        #: key -> (stamp of the weight, U, S, Vh), the SVD of its blocks (not in the state dict)
        self._svd: Dict[str, Tuple] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """'kaiming': ``kaiming_uniform_(a=sqrt(5))`` of each (1, d) theta, i.e.
        U(+-1/sqrt(d)) (the reference's ``reset_parameters``); 'zeros': identity warps."""
        for theta in [*self.shared_theta.values(), *self.task_theta.values()]:
            if self.theta_init == 'zeros':
                nn.init.zeros_(theta)
            else:
                bound = 1 / math.sqrt(theta.shape[-1])
                nn.init.uniform_(theta, -bound, bound)

    # ------------------------------------------------------------------ weights
    def _blocks(self, name: str) -> int:
        return 3 if name == 'qkv' and self.split_qkv else 1

    def svd(self, key: str, name: str, weight: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(U, S, Vh)`` of the weight's blocks ``(nb, m, k)``, ``(nb, k)``, ``(nb, k, n)``,
        computed once per weight version, dtype and device (float32 at least)."""
        stamp = (weight.data_ptr(), weight._version, weight.dtype, weight.device,
                 tuple(weight.shape))
        cached = self._svd.get(key)
        if cached is None or cached[0] != stamp:
            nb = self._blocks(name)
            # normal tensors even under inference_mode: a later training step saves them
            with torch.inference_mode(False), torch.no_grad():
                w = weight.detach().to(_work_dtype(weight.dtype))
                U, S, Vh = torch.linalg.svd(w.reshape(nb, -1, w.shape[-1]), full_matrices=False)
            cached = self._svd[key] = (stamp, U, S, Vh)
        return cached[1:]

    def warped_weight(self, key: str, name: str, module: nn.Linear, theta: Tensor,
                      cpab: Cpab1d, phi: Optional[Tensor] = None) -> Tensor:
        """``W'(theta) = W + U diag(S' - S) V^T`` for each theta ``(N, d)``: ``(N, out, in)``
        (q, k, v blocks each warped, with the same theta, when split). ``phi``: the thetas'
        ``phi(linspace(0, 1, k))`` ``(N, k)`` if already integrated (``before_forward``)."""
        weight = module.weight
        U, S, Vh = self.svd(key, name, weight)
        nb, k = S.shape
        with torch.autocast(weight.device.type, enabled=False):
            if phi is None:
                grid = cpab.uniform_meshgrid(k, S.dtype, S.device)
                phi = cpab.transform_grid(grid, theta.to(S.dtype), self.time)
            elif phi.shape[-1] != k:
                raise RuntimeError(f'DiTASK: {key} has {k} singular values per block, its '
                                   f'prepared warp {phi.shape[-1]} (the layer description '
                                   f'does not match the module)')
            phi = phi.to(S.dtype)
            signal = S.T.unsqueeze(0).expand(phi.shape[0], k, nb)  # (N, k, blocks)
            moved = resample(signal, phi) - signal
            delta = (U.unsqueeze(0) * moved.transpose(1, 2).unsqueeze(-2)) @ Vh  # (N,nb,m,n)
            delta = delta.reshape(phi.shape[0], *weight.shape)
            return weight.to(delta.dtype) + delta

    def before_forward(self) -> Optional[Dict[Tuple[str, str], Tensor]]:
        """Every theta's ``phi(linspace(0, 1, k))``, integrated in two batched calls (one per
        tessellation) rather than once per projection: ``{('shared', key): (1, k),
        ('task', key): (T, k)}``; None when merged."""
        if self._merged is not None:
            return None
        prepared = {}
        for kind, thetas, cpab in (('shared', self.shared_theta, self.shared_cpab),
                                   ('task', self.task_theta, self.task_cpab)):
            if not len(thetas):
                continue
            keys = list(thetas)
            per_key = [thetas[k].view(-1, cpab.dim) for k in keys]  # (1, d) or (T, d)
            rows = [theta.shape[0] for theta in per_key]
            stacked = torch.cat(per_key)
            dtype = _work_dtype(stacked.dtype)
            sizes = [self._spectrum[k] for k, r in zip(keys, rows) for _ in range(r)]
            with torch.autocast(stacked.device.type, enabled=False):
                grids = [cpab.uniform_meshgrid(n, dtype, stacked.device) for n in sizes]
                owner = torch.arange(len(sizes), device=stacked.device).repeat_interleave(
                    torch.tensor(sizes, device=stacked.device))
                phi = cpab.transform_points(torch.cat(grids), owner, stacked.to(dtype),
                                            self.time)
            parts = iter(phi.split(sizes))
            for k, r in zip(keys, rows):
                prepared[(kind, k)] = torch.stack([next(parts) for _ in range(r)])
        return prepared

    def _shared_weight(self, ctx: TaskContext, key: str, name: str,
                       module: nn.Linear) -> Tensor:
        if self._merged is not None:
            return self._merged_weights(key, name, module)[0]
        phi = None if ctx.prepared is None else ctx.prepared.get(('shared', key))
        theta = self.shared_theta[key][None]
        return self.warped_weight(key, name, module, theta, self.shared_cpab, phi)[0].to(
            module.weight.dtype)

    def _task_weights(self, ctx: TaskContext, key: str, name: str,
                      module: nn.Linear) -> Tensor:
        if self._merged is not None:
            return ctx.select(self._merged_weights(key, name, module)[1])
        phi = None if ctx.prepared is None else ctx.prepared.get(('task', key))
        theta = ctx.select(self.task_theta[key])
        return self.warped_weight(key, name, module, theta, self.task_cpab,
                                  None if phi is None else ctx.select(phi)).to(
                                      module.weight.dtype)

    # ------------------------------------------------------------------ merging
    # (merge keeps every W'(theta) once built, rebuilt when a theta or a weight changes)
    def cached_tensors(self) -> List[Tensor]:
        """The SVDs (constants of the frozen weights, checked against the weights' version
        at every use: ``clear_cache`` keeps them) and the merged weights."""
        return [t for _, *factors in self._svd.values() for t in factors] + \
            super().cached_tensors()

    def _merged_weights(self, key: str, name: str, module: nn.Linear):
        self.check_not_training()
        shared = self.shared_theta[key] if key in self.shared_theta else None
        tasks = self.task_theta[key] if key in self.task_theta else None
        weight = module.weight
        stamp = (weight.data_ptr(), weight._version, weight.dtype, weight.device,
                 *((p.data_ptr(), p._version, p.dtype) for p in (shared, tasks)
                   if p is not None))
        entry = self._merged.get(key)
        if entry is None or entry[0] != stamp:
            with torch.no_grad():
                w_shared = w_tasks = None
                if shared is not None:
                    w_shared = self.warped_weight(key, name, module, shared[None],
                                                  self.shared_cpab)[0].to(weight.dtype)
                if tasks is not None:
                    w_tasks = self.warped_weight(key, name, module, tasks,
                                                 self.task_cpab).to(weight.dtype)
            entry = self._merged[key] = (stamp, w_shared, w_tasks)
        return entry[1:]

    # ------------------------------------------------------------------ hooks
    def _drop(self, x: Tensor) -> Tensor:
        return branch_dropout(x, self.dropout, self.training)

    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        key = _key(layer, name)
        if key not in self.task_theta:
            # the shared rows, or every stream past a fork through a projection without task
            # thetas: each reads its own input through the shared warp
            if key not in self.shared_theta:
                return module(x)
            return F.linear(self._drop(x), self._shared_weight(ctx, key, name, module),
                            module.bias)
        # a forked block's task projection: at the fork (the first one) the rows are the
        # shared stream's and this hook parts them; past it, the shared stream then one
        # stream per task of ctx.tasks
        G = ctx.groups
        forks_here = name == self._fork_at[layer.index]
        h0, task_in = (x.reshape(-1, x.shape[-1]), None) if forks_here else \
            split_streams(x.reshape(G, -1, x.shape[-1]))
        dropped = self._drop(h0)
        if key in self.shared_theta:
            shared = F.linear(dropped, self._shared_weight(ctx, key, name, module),
                              module.bias)
        else:  # the network's last shared stream: read by nothing
            shared = module(h0)
        # at the fork the tasks read the shared, dropped input (the reference's
        # x_tasks=None); past it, each task's own stream, not dropped (as released)
        if task_in is None:
            task_in = dropped.expand(G - 1, *dropped.shape)
        weights = self._task_weights(ctx, key, name, module).transpose(1, 2)  # (T', in, out)
        if module.bias is None:
            tasks = torch.bmm(task_in, weights)
        else:
            tasks = torch.baddbmm(module.bias.expand(G - 1, 1, -1), task_in, weights)
        out = torch.cat([shared[None], tasks])  # (G, M, d_out)
        if forks_here:
            return out.reshape(G * x.shape[0], *x.shape[1:-1], out.shape[-1])
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _key(layer: LayerInfo, name: str) -> str:
    return f'{name}{layer.index}'


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


__all__ = ['DiTASK']
