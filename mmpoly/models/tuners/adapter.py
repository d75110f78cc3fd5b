"""Adapter, Low-rank adapter and Shared Adapter (method.md sections 2 and 6).

All three are the adapter of eq. (1), placed as :class:`AdapterTunerBase` says, with weights
that are parameters: every adapter has its own LayerNorm (2d) and the biases of W_down (n) and
W_up (d). They differ only in how W_down (d x n) and W_up (n x d) are parametrised:

- :class:`Adapter`: full matrices, one set per task.
- :class:`LowRankAdapter`: each matrix a rank-``rank`` product (rank 1: u v^T).
- :class:`SharedAdapter`: full matrices and biases shared by all tasks, LayerNorms per task.

:class:`LearnedAdapterTuner`, the base of these and of the PHM family (``phm.py``), holds what
they share: the per-adapter parameter container, the LayerNorms and biases, the init.
"""
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from mmseg.registry import MODELS
from .adapter_base import AdapterTunerBase, AdapterWeights
from .base import LayerInfo


def site_key(site: str, layer: LayerInfo) -> str:
    """Name of the adapter at ``site`` ('attn' / 'mlp') of ``layer``, e.g. 'mlp_3'."""
    return f'{site}_{layer.index}'


class AdapterParams(nn.Module):
    """The parameters of one adapter.

    ``norm_weight`` / ``norm_bias`` (T, d): its LayerNorm, always one per task.
    ``down_bias`` (R, n) / ``up_bias`` (R, d) and the method's ``factors`` (R, *shape): R = T,
    or 1 when one set serves every task.
    """

    def __init__(self, num_tasks: int, rows: int, dim: int, hidden: int,
                 factors: Dict[str, Tuple[int, ...]]):
        super().__init__()
        self.norm_weight = nn.Parameter(torch.ones(num_tasks, dim))
        self.norm_bias = nn.Parameter(torch.zeros(num_tasks, dim))
        self.down_bias = nn.Parameter(torch.zeros(rows, hidden))
        self.up_bias = nn.Parameter(torch.zeros(rows, dim))
        for name, shape in factors.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(rows, *shape)))

    @torch.no_grad()
    def reset_norms_and_biases(self) -> None:
        self.norm_weight.fill_(1.0)
        self.norm_bias.zero_()
        self.down_bias.zero_()
        self.up_bias.zero_()


class LearnedAdapterTuner(AdapterTunerBase):
    """Base of the adapter tuners whose weights are learned directly (not generated).

    One :class:`AdapterParams` per (site, layer) in :attr:`adapters`. A subclass sets its own
    attributes, then calls :meth:`build_adapters`, and implements:

    - :meth:`factor_shapes`: its parameters of W_down / W_up for one adapter;
    - :meth:`reset_factors`: their init; W_up must start at an exact zero, so that a new
      tuner leaves the frozen backbone's output unchanged;
    - :meth:`projections`: W_down (R, d, n) and W_up (R, n, d) from them (batched ops).

    The forward (one matmul per projection over the task axis) is
    :func:`~.adapter_base.apply_adapter`'s.
    """
    #: one set of adapter weights and biases serves every task (the LayerNorms stay per task)
    share_weights: bool = False

    @property
    def weight_rows(self) -> int:
        return 1 if self.share_weights else self.num_tasks

    def build_adapters(self) -> None:
        self.adapters = nn.ModuleDict()
        for site, layer in self.adapter_sites():
            d, n = layer.dim, self.hidden(layer)
            self.adapters[site_key(site, layer)] = AdapterParams(
                self.num_tasks, self.weight_rows, d, n, self.factor_shapes(d, n))
        self.reset_parameters()

    # -------------------------------------------------------------- to implement
    def factor_shapes(self, dim: int, hidden: int) -> Dict[str, Tuple[int, ...]]:
        raise NotImplementedError

    def reset_factors(self, adapter: AdapterParams, dim: int, hidden: int) -> None:
        raise NotImplementedError

    def projections(self, adapter: AdapterParams) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    # -------------------------------------------------------------- shared
    @torch.no_grad()
    def reset_parameters(self) -> None:
        for site, layer in self.adapter_sites():
            adapter = self.adapters[site_key(site, layer)]
            adapter.reset_norms_and_biases()
            self.reset_factors(adapter, layer.dim, self.hidden(layer))

    def init_weights(self) -> None:
        if self.init_cfg is None:
            self.reset_parameters()
        else:
            super().init_weights()

    def adapter_weights(self, layer: LayerInfo, site: str) -> AdapterWeights:
        adapter = self.adapters[site_key(site, layer)]
        down, up = self.projections(adapter)
        return AdapterWeights(down, up, adapter.down_bias, adapter.up_bias, adapter.norm_weight,
                              adapter.norm_bias)


def init_down_(weight: Tensor, fan_in: int) -> Tensor:
    """Down-projection init: normal(0, 1 / sqrt(d)), so that ``LN(h) W_down`` has unit scale."""
    return weight.normal_(0, fan_in**-0.5)


@MODELS.register_module()
class Adapter(LearnedAdapterTuner):
    """Adapter (method.md eq. 1, section 2): one adapter per task per layer.

    Per adapter and task: LayerNorm (2d), W_down (d x n) + b_down (n), W_up (n x d) + b_up (d);
    d^2 + 3.5 d parameters with lambda = 2. W_up and both biases start at zero (the tuned
    backbone starts as the frozen one), W_down normal(0, 1 / sqrt(d)).
    Swin-T, 4 tasks: 4 x 2,172,000 = 8,688,000 (Table 1: 8.69M). The paper's rows on Swin-B,
    Swin-B-22k and PVT-S use lambda = 16 (their configs say so): 3,637,184 / 790,288.

    Args:
        reduction: lambda, the down-projection ratio: n = d / lambda (paper: 2 on Swin-T and
            MoBY-T, 16 on Swin-B and PVT-S; swept 1..16).
        position: 'parallel_mlp' (beside the MLP, He et al. 2022; default), 'after_mlp' or
            'after_attn_and_mlp'.
        scale: fixed output scale s of the adapter branch.
        act_cfg: the non-linearity sigma of eq. (1) (GELU).
        layers, tasks, init_cfg: given by the backbone, see :class:`BaseTuner`.
    """

    def __init__(self, reduction: float = 2, **kwargs):
        super().__init__(reduction=reduction, **kwargs)
        self.build_adapters()

    def factor_shapes(self, dim, hidden):
        return dict(down=(dim, hidden), up=(hidden, dim))

    def reset_factors(self, adapter, dim, hidden):
        init_down_(adapter.down, dim)
        adapter.up.zero_()

    def projections(self, adapter):
        return adapter.down, adapter.up


@MODELS.register_module()
class SharedAdapter(Adapter):
    """Shared Adapter (VL-Adapter, method.md section 6): one adapter set for all tasks.

    The :class:`Adapter` of eq. (1) whose W_down, W_up and biases are shared by every task
    (stored with a leading dim of 1), while each task keeps its own adapter LayerNorms (the
    paper's 2.20M counts them). Swin-T, 4 tasks: 2,163,168 shared + 4 x 8,832 LayerNorm
    = 2,198,496 (Table 1: 2.20M).

    Args:
        reduction: lambda: n = d / lambda (paper: 2).
        position, scale, act_cfg, layers, tasks, init_cfg: see :class:`Adapter`.
    """
    share_weights = True


@MODELS.register_module()
class LowRankAdapter(LearnedAdapterTuner):
    """Low-rank adapter (Compacter paper's baseline, method.md sections 6 and 8).

    The :class:`Adapter` of eq. (1) with W_down = L_down R_down (d x r)(r x n) and
    W_up = L_up R_up (n x r)(r x d), Compacter's low-rank factorisation without the Kronecker
    structure. Per adapter and task: 2d (LayerNorm) + n + d (biases) + r (d + n) for each
    projection; with the authors' form (r = 2, lambda = 2) 2d + 1.5d + 2 x 2 x 1.5d = 9.5d.
    Defaults (method.md section 8, the paper's Table 1): rank 2, one adapter after attention
    and one after the MLP, lambda = 2. Swin-T, 4 tasks: 4 x 2 x 9.5 x 4,416 = 335,616
    (0.34M). Per-backbone lambda in the configs (PVT-S: 8).
    Init: L_down normal(0, 1), R_down normal(0, 1 / (r d)) (W_down entries of variance 1 / d,
    as :class:`Adapter`'s), L_up normal(0, 1), R_up zero (W_up = 0: starts as the frozen
    backbone).

    Text-only form (``rank=1, position='parallel_mlp'``): rank-1 products u v^T, one adapter
    beside the MLP: 4 x 6.5 x 4,416 = 114,816 (0.11M, not the paper's 0.34M).

    Args:
        reduction: lambda: n = d / lambda (paper: 2 on Swin, 8 on PVT-S).
        rank: r, the rank of W_down and W_up (authors' form: 2; 1 is u v^T).
        position: 'after_attn_and_mlp' (authors' form, default), 'after_mlp' or
            'parallel_mlp' (the Adapter's placement, the text-only form).
        scale, act_cfg, layers, tasks, init_cfg: see :class:`Adapter`.
    """

    def __init__(self,
                 reduction: float = 2,
                 rank: int = 2,
                 position: str = 'after_attn_and_mlp',
                 **kwargs):
        super().__init__(reduction=reduction, position=position, **kwargs)
        if int(rank) < 1:
            raise ValueError(f'LowRankAdapter.rank must be >= 1, got {rank}')
        self.rank = int(rank)
        self.build_adapters()

    def factor_shapes(self, dim, hidden):
        r = self.rank
        return dict(down_left=(dim, r), down_right=(r, hidden), up_left=(hidden, r),
                    up_right=(r, dim))

    def reset_factors(self, adapter, dim, hidden):
        adapter.down_left.normal_()
        init_down_(adapter.down_right, self.rank * dim)
        adapter.up_left.normal_()
        adapter.up_right.zero_()

    def projections(self, adapter):
        return (torch.matmul(adapter.down_left, adapter.down_right),
                torch.matmul(adapter.up_left, adapter.up_right))
