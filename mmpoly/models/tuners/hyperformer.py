"""Hyperformer (Karimi Mahabadi et al. 2021; method.md section 3): per-layer hypernetworks.

The multi-task baseline Polyhistor improves on: one hypernetwork per adapter maps a learnable
task embedding to the whole adapter (eq. 2), so its size grows with d^2 and is huge on the
wide late stages of a hierarchical transformer.
"""
from collections import OrderedDict
from typing import Dict, Tuple

import torch
from torch import nn

from mmseg.registry import MODELS
from .adapter import site_key
from .adapter_base import AdapterWeights
from .hypernet import (VECTOR_BIAS_INIT, ConditionProjector, HypernetTunerBase,
                       LinearGenerators, adapter_vector_pieces)


@MODELS.register_module()
class Hyperformer(HypernetTunerBase):
    """Hyperformer: every adapter's weights generated from the task embedding (eq. 2).

    The conditioning vector of task t is c_t = MLP(V^t) (Linear k -> 128, ReLU, Linear
    128 -> k, no LayerNorm, as the original task projector). Adapter l's hypernetwork is a
    linear map of c_t (weight and bias, as the original ``nn.Linear`` generators) to
    W^t_l = psi(c_t W_hat_l) in R^(d x 2n) = [W_down ; W_up^T] (psi: row-major reshape) and,
    by small linear hypernetworks, to the biases of W_down (n) and W_up (d) and the adapter
    LayerNorm's weight and bias (d, d). :meth:`generate_weights` runs once per forward: one
    matmul per adapter over the T task embeddings.

    Parameters: per adapter (k + 1)(2dn + n + 3d); plus T k task embeddings and the
    projector's 2 k 128 + 128 + k. Swin-T, 4 tasks, defaults: 71,881,680 + 256 + 16,576
    = 71,898,512 (Table 1: 72.77M, -1.2%). Placement: adapters after attention and after the
    MLP, as the original Hyperformer; with one adapter per layer the count halves (35.96M),
    so the paper's figure has two. The paper's description does not account for the
    remaining 0.87M (1.2%); without the generators' biases it would be
    70.79M (-2.7%).

    Init (as Hyperformer): task embeddings standard normal, the generators' weights
    normal(0, ``init_std``) and biases zero, except the LayerNorm-weight generator's bias,
    which starts at 1 (a plain LayerNorm). The generated weights start small but non-zero,
    so the tuned backbone starts close to, not equal to, the frozen one.

    Args:
        reduction: lambda: n = d / lambda (paper: 8; swept 8, 16, 32).
        task_embed_dim: k, width of the task embedding V^t and of c_t (64).
        projector_hidden: hidden width of the task projector MLP (128).
        init_std: std of the generators' initial weights (1e-2, as Hyperformer).
        position: 'after_attn_and_mlp' (default), 'after_mlp' or 'parallel_mlp'.
        scale, act_cfg, layers, tasks, init_cfg: see :class:`~.adapter_base.AdapterTunerBase`.
    """

    def __init__(self,
                 reduction: float = 8,
                 task_embed_dim: int = 64,
                 projector_hidden: int = 128,
                 init_std: float = 1e-2,
                 position: str = 'after_attn_and_mlp',
                 **kwargs):
        super().__init__(reduction=reduction, position=position, **kwargs)
        if task_embed_dim < 1:
            raise ValueError(f'Hyperformer.task_embed_dim must be >= 1, got {task_embed_dim}')
        k = self.task_embed_dim = task_embed_dim
        self.task_embed = nn.Parameter(torch.empty(self.num_tasks, k))
        self.projector = ConditionProjector(k, k, projector_hidden, norm=False)
        # W_hat_l and the vector generators of every adapter (one packed linear map each)
        self.generators = nn.ModuleDict()
        for site, layer in self.adapter_sites():
            d, n = layer.dim, self.hidden(layer)
            pieces = OrderedDict(weight=(d, 2 * n))
            pieces.update(adapter_vector_pieces(d, n, generate_norms=True))
            self.generators[site_key(site, layer)] = LinearGenerators(
                k, pieces, init_std, VECTOR_BIAS_INIT)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.task_embed.normal_()
        self.projector.reset_parameters()
        for generator in self.generators.values():
            generator.reset_parameters()

    def generate_weights(self) -> Dict[Tuple[str, int], AdapterWeights]:
        cond = self.projector(self.task_embed)  # (T, k)
        weights = {}
        for site, layer in self.adapter_sites():
            out = self.generators[site_key(site, layer)](cond)
            n = self.hidden(layer)
            w = out['weight']  # (T, d, 2n) = [W_down ; W_up^T]
            weights[(site, layer.index)] = AdapterWeights(
                w[..., :n], w[..., n:].transpose(-1, -2), out['down_bias'], out['up_bias'],
                out['norm_weight'], out['norm_bias'])
        return weights
