"""What every adapter-style tuner shares: where the adapter sits and how it is applied.

An adapter (method.md eq. 1, without its skip term since the residual carries it) maps the
token h to ``A(h) = act(LN(h) W_down + b_down) W_up + b_up`` and the layer adds ``scale * A``.
The methods (Adapter, Low-rank adapter, Shared Adapter, PHM, Compacter, Hyperformer,
Polyhistor, Polyhistor-Lite) differ only in how they produce the weights, so a method
implements :meth:`AdapterTunerBase.adapter_weights` and nothing else of the forward.
"""
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from torch import Tensor

from .base import BaseTuner, LayerInfo

POSITIONS = {
    # position -> (sites, form): 'parallel' reads the sub-block's input, 'sequential' its output
    'parallel_mlp': (('mlp', ), 'parallel'),
    'after_mlp': (('mlp', ), 'sequential'),
    'after_attn_and_mlp': (('attn', 'mlp'), 'sequential'),
}


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


def apply_adapter(x: Tensor, w: AdapterWeights, act, groups: int) -> Tensor:
    """``A(x)`` for a task-stacked ``x`` of shape (groups * M, ..., d); one matmul per
    projection over the task axis (weights with a leading 1 broadcast over it)."""
    shape = x.shape
    h = x.reshape(groups, -1, shape[-1])
    if w.norm_weight is not None:
        h = F.layer_norm(h, h.shape[-1:]) * w.norm_weight[:, None] + w.norm_bias[:, None]
    h = torch.matmul(h, w.down)
    if w.down_bias is not None:
        h = h + w.down_bias[:, None]
    h = torch.matmul(act(h), w.up)
    if w.up_bias is not None:
        h = h + w.up_bias[:, None]
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
    generate them in :meth:`generate_weights`, which runs once per backbone forward.
    """
    task_specific = True

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
        self._generated: Optional[Dict[Tuple[str, int], AdapterWeights]] = None

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

    # -------------------------------------------------------------- hooks
    def before_forward(self) -> None:
        self._generated = self.generate_weights()

    def _weights(self, layer: LayerInfo, site: str) -> AdapterWeights:
        if self._generated is not None:
            w = self._generated[(site, layer.index)]
        else:
            w = self.adapter_weights(layer, site)
        return w.map(lambda t: t if t.shape[0] == 1 else self.active(t))

    def _branch(self, site: str, layer: LayerInfo, x: Tensor, out: Tensor) -> Tensor:
        if site not in self.sites:
            return out
        source = x if self.form == 'parallel' else out
        return out + self.scale * apply_adapter(source, self._weights(layer, site), self.act,
                                                self.num_active)

    def attn_branch(self, layer: LayerInfo, x: Tensor, attn_out: Tensor) -> Tensor:
        return self._branch('attn', layer, x, attn_out)

    def mlp_branch(self, layer: LayerInfo, x: Tensor, mlp_out: Tensor) -> Tensor:
        return self._branch('mlp', layer, x, mlp_out)

    def adapter_sites(self) -> List[Tuple[str, LayerInfo]]:
        """Every (site, layer) that holds an adapter."""
        return [(site, layer) for layer in self.layers for site in self.sites]
