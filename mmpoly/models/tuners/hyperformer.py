"""Hyperformer (Karimi Mahabadi et al. 2021; method.md sections 3 and 8): per-layer
hypernetworks.

The multi-task baseline Polyhistor improves on: one hypernetwork per adapter maps a learnable
task embedding to the whole adapter (eq. 2), so its size grows with d^2 and is huge on the
wide late stages of a hierarchical transformer.
"""
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from mmseg.registry import MODELS
from .adapter import site_key
from .adapter_base import AdapterWeights
from .hypernet import HypernetTunerBase, LinearGenerators, adapter_vector_pieces, vector_init


@MODELS.register_module()
class Hyperformer(HypernetTunerBase):
    """Hyperformer: every adapter's weights generated from the task embedding (eq. 2).

    Authors' form (method.md s. 8, the default): task t has a learned embedding V^t of
    E = ``embed_dim`` = 512; each transformer layer l has its own task projector
    c^t_l = LayerNorm(MLP_l(V^t)) (Linear E -> 128, ReLU, Linear 128 -> k, LayerNorm(k):
    74,048 parameters for 512 -> 128 -> 64), shared by the layer's adapters. Adapter a's
    hypernetwork is a linear map (weight and bias) of c^t_l to W^t_a = psi(c W_hat_a) in
    R^(d x 2n) = [W_down ; W_up^T] (psi: row-major reshape) and, by small linear
    hypernetworks, to the biases of W_down (n) and W_up (d) and the adapter LayerNorm's weight
    and bias (d, d), which act on the adapter's output: h + s LN_t(A(h)) (post-norm).
    :meth:`generate_weights` runs once per forward: the L projectors as batched matmuls, one
    matmul per adapter over the T conditioning vectors.

    Parameters: per adapter (k + 1)(2dn + n + 3d), per layer (E + 1) 128 + 129 k + 2k, plus
    T E task embeddings. Swin-T, 4 tasks, two adapters per layer (after attention and after
    the MLP): lambda 8 / 16 / 32 -> 72,772,304 / 37,692,584 / 20,152,724 (Table 1: 72.77M,
    37.69 / 20.15 in the lambda sweep). The paper's other backbones use one MLP-side adapter
    at lambda 16 (their configs say so).

    Init: task embeddings standard normal, projectors as ``nn.Linear``, the generators'
    weights normal(0, ``init_std``) and biases zero, except the generators of the
    post-norm LayerNorm's weight and bias, which start at exactly zero (weight and bias):
    the adapters output exactly 0 and the tuned backbone starts as the frozen one. (Their
    gradient is non-zero from the first step; the rest of the hypernetwork's from the
    second.) Pre-norm: the LayerNorm-weight generator's bias starts at 1 (a plain LayerNorm)
    and the generated W_up is small but non-zero.

    Text-only forms (method.md s. 3), as keys:

    - ``adapter_norm='pre'``: the generated LayerNorm on the adapter's input, h + s A(LN_t(h)).
    - ``per_layer_projector=False``: one task projector shared by all layers.
    - ``embed_dim=None``: task embeddings of k (the text's V^t in R^k), no wider E.
    - ``projector_norm=False``: no LayerNorm after the projector MLP (the original
      Hyperformer's; the pre-change default).

    The pre-change default is ``adapter_norm='pre', per_layer_projector=False,
    embed_dim=None, projector_norm=False`` (71,898,512 on Swin-T).

    Args:
        reduction: lambda: n = d / lambda (paper: 8 on Swin-T, 16 elsewhere; swept 8-32).
        task_embed_dim: k, width of the conditioning vector c (the projector's output, 64).
        embed_dim: E, width of the task embedding V^t (512); None: k.
        projector_hidden: hidden width of the task projector MLP (128).
        per_layer_projector: one projector per layer (True) or one for all (False).
        projector_norm: LayerNorm(k) after the projector MLP.
        adapter_norm: 'post' or 'pre', see above.
        init_std: std of the generators' initial weights (1e-2, as Hyperformer).
        position: 'after_attn_and_mlp' (default, Swin-T), 'after_mlp' (the other backbones)
            or 'parallel_mlp'.
        scale, act_cfg, layers, tasks, init_cfg: see :class:`~.adapter_base.AdapterTunerBase`.
    """

    def __init__(self,
                 reduction: float = 8,
                 task_embed_dim: int = 64,
                 embed_dim: Optional[int] = 512,
                 projector_hidden: int = 128,
                 per_layer_projector: bool = True,
                 projector_norm: bool = True,
                 init_std: float = 1e-2,
                 position: str = 'after_attn_and_mlp',
                 **kwargs):
        super().__init__(reduction=reduction, position=position, **kwargs)
        k = self.task_embed_dim = task_embed_dim
        self.build_task_conditioning(k, embed_dim, projector_hidden, per_layer_projector,
                                     projector_norm)
        bias_init, zero_weight = vector_init(self.adapter_norm)
        # W_hat_a and the vector generators of every adapter (one packed linear map each)
        self.generators = nn.ModuleDict()
        for site, layer in self.adapter_sites():
            d, n = layer.dim, self.hidden(layer)
            pieces = OrderedDict(weight=(d, 2 * n))
            pieces.update(adapter_vector_pieces(d, n, generate_norms=True))
            self.generators[site_key(site, layer)] = LinearGenerators(
                k, pieces, init_std, bias_init, zero_weight)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.task_embed.normal_()
        self.projector.reset_parameters()
        for generator in self.generators.values():
            generator.reset_parameters()

    def generate_weights(self) -> Dict[Tuple[str, int], AdapterWeights]:
        # (L, T, k) per-layer conditions, or (T, k) shared
        conds = self.layer_condition(self.task_conditions(), self.layers)
        weights = {}
        for i, layer in enumerate(self.layers):
            for site in self.sites:
                out = self.generators[site_key(site, layer)](conds[i])
                n = self.hidden(layer)
                w = out['weight']  # (T, d, 2n) = [W_down ; W_up^T]
                weights[(site, layer.index)] = AdapterWeights(
                    w[..., :n], w[..., n:].transpose(-1, -2), out['down_bias'],
                    out['up_bias'], out['norm_weight'], out['norm_bias'])
        return weights
