"""PHM layer, Compacter and Compacter++ (Mahabadi et al. 2021; method.md sections 6 and 8).

The adapter of eq. (1) whose projections are parameterised hypercomplex multiplication (PHM)
layers: with PHM dimension k,

    W_down = sum_{i=1..k} A_i (x) B^down_i,   W_up = sum_{i=1..k} A_i (x) B^up_i

A_i in R^(k x k) are the "slow" weights (the PHM rule), shared by every layer (one set per
task: single-task methods keep a copy per task); B^down_i in R^(d/k x n/k) and
B^up_i in R^(n/k x d/k) are the "fast" weights of each adapter. Compacter factors each fast
weight as a rank-1 product B_i = u_i v_i^T (``factorized=True``); Compacter++ keeps only the
adapter after the MLP. Every adapter has its LayerNorm and biases (:class:`LearnedAdapterTuner`).
"""
import torch
from torch import nn

from mmseg.registry import MODELS
from .adapter import LearnedAdapterTuner
from .kron import kron_sum


@MODELS.register_module()
class PHMAdapter(LearnedAdapterTuner):
    """PHM layer: adapters whose W_down / W_up are sums of Kronecker products A_i (x) B_i.

    Per task: the PHM rule A (k x k x k), shared by all layers and both projections (per-task
    rule matrices); per adapter and task: 2d (LayerNorm) + n + d (biases) + 2dn / k (fast
    weights), or + 2 (d + n) when ``factorized``. Init: A_i normal(0, 1 / k) and B^down_i
    normal(0, 1 / d) (u_i normal(0, 1), v_i normal(0, 1 / d)), so W_down's entries have
    variance 1 / d as the Adapter's; B^up_i (v^up_i) zero, so W_up = 0 and the tuned backbone
    starts as the frozen one.

    Defaults: the authors' form (method.md section 8), ONE adapter per layer (after the MLP),
    lambda = 16, k = 2. Per adapter and task 3d + d / 16 + d^2 / 16; Swin-T, 4 tasks (sum of
    widths 4,416, of squared widths 2,156,544):
    4 x (3.0625 x 4,416 + 2,156,544 / 16) + 4 x 2^3 = 593,232 + 32 = 593,264 (0.59M).

    Text-only form (method.md section 6: after attention and after the MLP, k = 4) is
    ``position='after_attn_and_mlp', phm_dim=4, reduction=8``: 1,188,928 (twice the
    paper's 0.59M).

    Args:
        reduction: lambda: n = d / lambda; k must divide d and n (PHM layer: 16).
        phm_dim: k, the number of Kronecker terms and the size of each A_i (PHM layer: 2).
        factorized: each fast weight B_i a rank-1 product u_i v_i^T (Compacter).
        position: 'after_mlp' (one adapter per layer, the authors' PHM layer; default),
            'after_attn_and_mlp' (the text's two adapters per layer, Compacter) or
            'parallel_mlp'.
        scale, act_cfg, layers, tasks, init_cfg: see :class:`~.adapter.Adapter`.
    """

    def __init__(self,
                 reduction: float = 16,
                 phm_dim: int = 2,
                 factorized: bool = False,
                 position: str = 'after_mlp',
                 **kwargs):
        super().__init__(reduction=reduction, position=position, **kwargs)
        if int(phm_dim) < 1:
            raise ValueError(f'{type(self).__name__}.phm_dim must be >= 1, got {phm_dim}')
        self.phm_dim = k = int(phm_dim)
        for layer in self.layers:
            d, n = layer.dim, self.hidden(layer)
            if d % k or n % k:
                raise ValueError(
                    f'{type(self).__name__}: phm_dim={k} must divide the adapter widths, '
                    f'layer {layer.name} has d={d}, n=d/reduction={n} '
                    f'(reduction={reduction}); choose another reduction or phm_dim')
        self.factorized = factorized
        # the PHM rule: A_1..A_k of every task, shared by all layers and both projections
        self.phm_rule = nn.Parameter(torch.zeros(self.num_tasks, k, k, k))
        self.build_adapters()

    def factor_shapes(self, dim, hidden):
        k = self.phm_dim
        a, b = dim // k, hidden // k
        if self.factorized:
            return dict(down_left=(k, a), down_right=(k, b), up_left=(k, b), up_right=(k, a))
        return dict(down=(k, a, b), up=(k, b, a))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.phm_rule.normal_(0, self.phm_dim**-0.5)
        super().reset_parameters()

    def reset_factors(self, adapter, dim, hidden):
        if self.factorized:
            adapter.down_left.normal_()
            adapter.down_right.normal_(0, dim**-0.5)
            adapter.up_left.normal_()
            adapter.up_right.zero_()
        else:
            adapter.down.normal_(0, dim**-0.5)
            adapter.up.zero_()

    def fast_weights(self, adapter):
        """B^down (T, k, d/k, n/k) and B^up (T, k, n/k, d/k)."""
        if self.factorized:  # B_i = u_i v_i^T
            return (adapter.down_left[..., :, None] * adapter.down_right[..., None, :],
                    adapter.up_left[..., :, None] * adapter.up_right[..., None, :])
        return adapter.down, adapter.up

    def projections(self, adapter):
        down, up = self.fast_weights(adapter)
        return kron_sum(self.phm_rule, down), kron_sum(self.phm_rule, up)


@MODELS.register_module()
class Compacter(PHMAdapter):
    """Compacter: :class:`PHMAdapter` with rank-1 fast weights B_i = u_i v_i^T, after
    attention and after the MLP.

    Per adapter and task 2 (d + n) + 3d + n = 6.5 d with lambda = 2 (whatever k). Swin-T,
    4 tasks, k = 4: 4 x 6.5 x 2 x 4,416 + 4 x 4^3 = 229,632 + 256 = 229,888 (Table 1: 0.23M;
    with k = 2, 229,664, the same at the printed digits).

    Args:
        reduction: lambda: n = d / lambda (2: what the paper's 0.23M / 0.11M imply).
        phm_dim: k (4).
        position: 'after_attn_and_mlp' (two adapters per layer).
        factorized, ...: see :class:`PHMAdapter`.
    """

    def __init__(self,
                 reduction: float = 2,
                 phm_dim: int = 4,
                 factorized: bool = True,
                 position: str = 'after_attn_and_mlp',
                 **kwargs):
        super().__init__(reduction=reduction, phm_dim=phm_dim, factorized=factorized,
                         position=position, **kwargs)


@MODELS.register_module()
class CompacterPP(Compacter):
    """Compacter++: :class:`Compacter` with only the adapter after the MLP, k = 2.

    Its adapters cost 6.5 d per task whatever k (4 x 6.5 x 4,416 = 114,816 on Swin-T, 4
    tasks); the per-task PHM rules add 4 k^3. The paper's 0.11M needs k^3 < 46: with k = 2,
    the PHM dimension of the authors' PHM layer (method.md section 8), 114,816 + 4 x 8 =
    114,848 (0.11M). The text-only k = 4 (``phm_dim=4``) gives 115,072 (0.12M).

    Args:
        position: 'after_mlp' (sequential, after the MLP).
        phm_dim: k (2).
        reduction, factorized, ...: see :class:`Compacter`.
    """

    def __init__(self, position: str = 'after_mlp', phm_dim: int = 2, **kwargs):
        super().__init__(position=position, phm_dim=phm_dim, **kwargs)
