"""What every adapter-style tuner shares: where the adapter sits and how it is applied.

An adapter (method.md eq. 1, without its skip term since the residual carries it) maps the
token h to ``A(h) = act(LN(h) W_down + b_down) W_up + b_up`` and the layer adds ``scale * A``
(pre-norm, the text's form). The hypernetwork methods default to the authors' post-norm form
(method.md s. 8): ``A(h) = LN(act(h W_down + b_down) W_up + b_up)``, the LayerNorm on the
adapter's output.
The methods (Adapter, Low-rank adapter, Shared Adapter, PHM, Compacter, Hyperformer,
Polyhistor, Polyhistor-Lite) differ only in how they produce the weights, so a method
implements :meth:`AdapterTunerBase.adapter_weights` (or :meth:`~AdapterTunerBase.generate_weights`)
and nothing else of the forward. Generated weights are produced once per backbone forward by
``before_forward`` and reach the hooks in the pass's context (``ctx.prepared``), never through
the module.
"""
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from torch import Tensor

from ..profiling import profile_range
from .base import BaseTuner, LayerInfo, TaskContext

POSITIONS = {
    # position -> (sites, form): 'parallel' reads the sub-block's input, 'sequential' its output
    'parallel_mlp': (('mlp', ), 'parallel'),
    'after_mlp': (('mlp', ), 'sequential'),
    'after_attn_and_mlp': (('attn', 'mlp'), 'sequential'),
}

#: where the adapter's LayerNorm sits: on its input ('pre') or on its output ('post')
ADAPTER_NORMS = ('pre', 'post')


@dataclass
class AdapterWeights:
    """One adapter's weights for the tasks of a pass; a leading dim of 1 is shared.

    Shapes: down (T', d, n), up (T', n, d), down_bias (T', n), up_bias (T', d),
    norm_weight / norm_bias (T', d) or None (no LayerNorm).
    """
    down: Tensor
    up: Tensor
    down_bias: Optional[Tensor] = None
    up_bias: Optional[Tensor] = None
    norm_weight: Optional[Tensor] = None
    norm_bias: Optional[Tensor] = None

    def map(self, fn) -> 'AdapterWeights':
        """Apply ``fn`` to every tensor (e.g. pick the active task's rows)."""
        return AdapterWeights(**{
            f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
            for f in fields(self)
        })


def apply_adapter(x: Tensor, w: AdapterWeights, act, groups: int, scale: float = 1.0,
                  out: Optional[Tensor] = None, norm: str = 'pre') -> Tensor:
    """``out + scale * A(x)`` (``out`` None: just ``scale * A(x)``) for a task-stacked ``x`` of
    shape (groups * M, ..., d); one batched matmul per projection over the task axis (weights
    with a leading 1 broadcast over it).

    ``norm='pre'``: ``A(h) = act(LN(h) W_down + b_down) W_up + b_up``. The big (groups * M, d)
    tensors see only a LayerNorm without affine, two matmuls with their bias (and ``out``)
    added inside (``baddbmm``), and the activation: the LayerNorm's affine is folded into the
    small weights, ``(LN(h) g + b) W_down + c = LN(h) (g * W_down) + (b W_down + c)``, and
    ``scale`` into the second matmul. Same arithmetic as the plain form up to float rounding,
    four fewer passes over the tokens forward and backward.

    ``norm='post'``: ``A(h) = LN(act(h W_down + b_down) W_up + b_up)`` with the per-task
    affine (g, b): two ``baddbmm``, one LayerNorm without affine, and one ``addcmul`` that
    applies ``scale * g`` and adds ``out + scale * b``. Without LayerNorm weights both forms
    are the same.
    """
    shape = x.shape
    h = x.reshape(groups, -1, shape[-1])
    down, down_bias = w.down, w.down_bias
    post = norm == 'post' and w.norm_weight is not None
    if w.norm_weight is not None and not post:
        h = F.layer_norm(h, h.shape[-1:])
        folded = torch.matmul(w.norm_bias[:, None], down).squeeze(1)  # (T', n)
        down = w.norm_weight[:, :, None] * down
        down_bias = folded if down_bias is None else down_bias + folded
    down = down.expand(groups, -1, -1)
    if down_bias is None:
        h = torch.bmm(h, down)
    else:
        h = torch.baddbmm(down_bias[:, None].expand(groups, 1, -1), h, down)
    up = w.up.expand(groups, -1, -1)
    base = None if out is None else out.reshape(groups, -1, shape[-1])
    if post:
        if w.up_bias is None:
            h = torch.bmm(act(h), up)
        else:
            h = torch.baddbmm(w.up_bias[:, None].expand(groups, 1, -1), act(h), up)
        h = F.layer_norm(h, h.shape[-1:])
        gain = (scale * w.norm_weight)[:, None].expand(groups, 1, -1)
        shift = (scale * w.norm_bias)[:, None].expand(groups, 1, -1)
        base = shift if base is None else base + shift
        return torch.addcmul(base, h, gain).reshape(shape)
    if w.up_bias is not None:
        bias = (scale * w.up_bias[:, None]).expand(groups, 1, -1)
        base = bias if base is None else base + bias
    if base is None:
        h = torch.bmm(act(h), up) * scale
    else:
        h = torch.baddbmm(base, act(h), up, alpha=scale)
    return h.reshape(shape)


def hidden_width(dim: int, reduction: float) -> int:
    """n = d / lambda (at least 1)."""
    return max(1, int(round(dim / reduction)))


class AdapterTunerBase(BaseTuner):
    """Base class of the adapter-style tuners.

    Args:
        reduction: lambda, the down-projection ratio: n = d / lambda.
        position: 'parallel_mlp' (default, beside the MLP), 'after_mlp' (sequential, as in
            Pfeiffer / Compacter) or 'after_attn_and_mlp' (Houlsby).
        scale: fixed output scale s of the adapter branch.
        act_cfg: non-linearity between the projections.
        layers, tasks, init_cfg: see :class:`BaseTuner`.

    Subclasses implement :meth:`adapter_weights`; if their weights are generated, they
    generate them in :meth:`generate_weights`, which runs once per backbone forward (in
    :meth:`before_forward`, whose result every hook of the forward reads from its context).
    """
    task_specific = True
    #: 'pre' or 'post' (see :func:`apply_adapter`); the hypernetwork tuners make it a key
    adapter_norm = 'pre'

    def __init__(self,
                 reduction: float = 2,
                 position: str = 'parallel_mlp',
                 scale: float = 1.0,
                 act_cfg: dict = dict(type='GELU'),
                 **kwargs):
        super().__init__(**kwargs)
        if position not in POSITIONS:
            raise ValueError(f'{type(self).__name__}.position must be one of '
                             f'{list(POSITIONS)}, got {position!r}')
        if reduction <= 0:
            raise ValueError(f'{type(self).__name__}.reduction must be > 0, got {reduction}')
        self.reduction = reduction
        self.position = position
        self.sites: Tuple[str, ...] = POSITIONS[position][0]
        self.form = POSITIONS[position][1]
        self.scale = scale
        self.act = build_activation_layer(act_cfg)

    def hidden(self, layer: LayerInfo) -> int:
        return hidden_width(layer.dim, self.reduction)

    # -------------------------------------------------------------- to implement
    def adapter_weights(self, layer: LayerInfo, site: str) -> AdapterWeights:
        """Weights of the adapter at ``site`` ('attn' or 'mlp') of ``layer``, for all
        tasks (T, ...) or shared (1, ...)."""
        raise NotImplementedError

    def generate_weights(self) -> Optional[Dict[Tuple[str, int], AdapterWeights]]:
        """Generated methods: every adapter's weights at once, keyed (site, layer index)."""
        return None

    @property
    def generates_weights(self) -> bool:
        """Whether the method overrides :meth:`generate_weights` (a hypernetwork)."""
        return type(self).generate_weights is not AdapterTunerBase.generate_weights

    # -------------------------------------------------------------- hooks
    def before_forward(self) -> Optional[Dict[Tuple[str, int], AdapterWeights]]:
        """Generated methods: every adapter's weights for all tasks, once per forward (they
        reach the hooks as ``ctx.prepared``); learned ones: None."""
        if not self.generates_weights:
            return None
        with profile_range('hypernet'):
            return self.generate_weights()

    def weights_for(self, ctx: TaskContext, layer: LayerInfo, site: str) -> AdapterWeights:
        """The adapter's weights for the tasks of ``ctx``'s pass (shared rows stay shared)."""
        if ctx.prepared is not None:
            w = ctx.prepared[(site, layer.index)]
        else:
            w = self.adapter_weights(layer, site)
        if ctx.selects_all:
            return w
        return w.map(lambda t: t if t.shape[0] == 1 else ctx.select(t))

    def _branch(self, ctx: TaskContext, site: str, layer: LayerInfo, x: Tensor,
                out: Tensor) -> Tensor:
        if site not in self.sites:
            return out
        source = x if self.form == 'parallel' else out
        return apply_adapter(source, self.weights_for(ctx, layer, site), self.act, ctx.groups,
                             self.scale, out, self.adapter_norm)

    def attn_branch(self, ctx: TaskContext, layer: LayerInfo, x: Tensor,
                    attn_out: Tensor) -> Tensor:
        return self._branch(ctx, 'attn', layer, x, attn_out)

    def mlp_branch(self, ctx: TaskContext, layer: LayerInfo, x: Tensor,
                   mlp_out: Tensor) -> Tensor:
        return self._branch(ctx, 'mlp', layer, x, mlp_out)

    def adapter_sites(self) -> List[Tuple[str, LayerInfo]]:
        """Every (site, layer) that holds an adapter."""
        return [(site, layer) for layer in self.layers for site in self.sites]
