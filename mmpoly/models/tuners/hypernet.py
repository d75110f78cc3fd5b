"""What every hypernetwork tuner shares (Hyperformer, Polyhistor, Polyhistor-Lite).

method.md sections 3-5: a learnable task embedding (with a layer embedding, where one
hypernetwork serves many layers) passes through a projector MLP and a LayerNorm; small linear
hypernetworks map the resulting conditioning vector to the adapter's weights, biases and
LayerNorm. The methods differ only in how the weight matrices are generated, so this module
holds the rest:

- :class:`ConditionProjector`: Linear -> ReLU -> Linear -> LayerNorm.
- :class:`LinearGenerators`: many linear hypernetworks on the same input, run as ONE matmul.
- :func:`adapter_vector_pieces` / :data:`VECTOR_BIAS_INIT`: the generated adapter biases and
  LayerNorm weight / bias, :class:`TaskNorms`: plain per-task adapter LayerNorms instead.
- :class:`HypernetTunerBase`: generation once per forward while training, and a cache in
  eval mode that is refreshed whenever a parameter changes.
"""
import math
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...utils.benchmark import profile_range
from .adapter_base import AdapterTunerBase, AdapterWeights

#: initial bias of the generators of the adapter vectors: the generated LayerNorm weight
#: starts at 1 (a plain LayerNorm), everything else at 0
VECTOR_BIAS_INIT = {'norm_weight': 1.0}


def adapter_vector_pieces(in_width: int, hidden: int, generate_norms: bool,
                          lead: Tuple[int, ...] = ()) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of an adapter's generated vectors: the biases of W_down (n) and
    W_up (d), and if ``generate_norms`` the weight and bias of its LayerNorm (d each)."""
    pieces = OrderedDict(down_bias=(*lead, hidden), up_bias=(*lead, in_width))
    if generate_norms:
        pieces.update(norm_weight=(*lead, in_width), norm_bias=(*lead, in_width))
    return pieces


class ConditionProjector(nn.Module):
    """The conditioning vector: Linear -> ReLU -> Linear, then a LayerNorm (method.md s. 4).

    Args:
        in_dim: width of the embedding it reads (k; k/2 + k/2 for Polyhistor-Lite).
        out_dim: k, the width of the conditioning vector.
        hidden: hidden width of the MLP (128 in the paper's code).
        norm: LayerNorm after the MLP.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, norm: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.norm = nn.LayerNorm(out_dim) if norm else nn.Identity()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()
        if isinstance(self.norm, nn.LayerNorm):
            self.norm.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.fc2(F.relu(self.fc1(x))))


class LinearGenerators(nn.Module):
    """Linear hypernetworks ``in_dim -> shape`` for named outputs, run as one matmul.

    Equivalent to one ``nn.Linear`` per piece; packed so that generating every piece for every
    task (and layer) is a single ``F.linear``. Packing: the weight's rows are the pieces in
    order, each flattened row-major (``torch.reshape`` order).

    Args:
        in_dim: width of the conditioning vector (k).
        pieces: name -> output shape, in packing order.
        init_std: weights start normal(0, init_std) (method.md s. 4: 1e-2).
        bias_init: name -> constant initial bias (default 0).
    """

    def __init__(self,
                 in_dim: int,
                 pieces: Mapping[str, Sequence[int]],
                 init_std: float = 1e-2,
                 bias_init: Optional[Mapping[str, float]] = None):
        super().__init__()
        self.pieces = OrderedDict((name, tuple(shape)) for name, shape in pieces.items())
        self.sizes = [math.prod(shape) for shape in self.pieces.values()]
        self.init_std = init_std
        self.bias_init = dict(bias_init or {})
        self.weight = nn.Parameter(torch.empty(sum(self.sizes), in_dim))
        self.bias = nn.Parameter(torch.empty(sum(self.sizes)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init_std > 0:
            self.weight.normal_(0, self.init_std)
        else:
            self.weight.zero_()
        for name, chunk in zip(self.pieces, self.bias.split(self.sizes)):
            chunk.fill_(self.bias_init.get(name, 0.0))

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(..., in_dim) -> {name: (..., *shape)}."""
        out = F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
        return {name: chunk.unflatten(-1, shape) if shape else chunk.squeeze(-1)
                for (name, shape), chunk in zip(self.pieces.items(), out)}

    def extra_repr(self) -> str:
        return f'in_dim={self.weight.shape[1]}, out={sum(self.sizes)} ({len(self.sizes)} pieces)'


class TaskNorms(nn.Module):
    """Plain (not generated) per-task adapter LayerNorms for ``count`` adapters of width
    ``dim``: weight and bias of shape (T, count, dim), starting at 1 and 0."""

    def __init__(self, num_tasks: int, count: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_tasks, count, dim))
        self.bias = nn.Parameter(torch.zeros(num_tasks, count, dim))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.weight.fill_(1.0)
        self.bias.zero_()


class HypernetTunerBase(AdapterTunerBase):
    """An adapter tuner whose weights are generated from parameters only, never from the input.

    Subclasses implement :meth:`generate_weights` (every adapter, every task, in a few batched
    calls) and :meth:`reset_parameters`. The weights are generated once per backbone forward
    while autograd records (training); in eval mode without grad they are constants, generated
    once and cached until a parameter changes. The cache key holds each parameter's identity,
    storage, dtype, device and in-place version counter, so an optimiser step, a
    ``load_state_dict`` (both write in place) and ``.to()`` all invalidate it.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache: Optional[Tuple[tuple, Dict[Tuple[str, int], AdapterWeights]]] = None

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def init_weights(self) -> None:
        # the backbone's random init re-initialises every nn.Linear / LayerNorm it contains,
        # ours included; restore the method's own init
        if self.init_cfg is None:
            self.reset_parameters()
        else:
            super().init_weights()

    def _parameter_key(self) -> tuple:
        return tuple((id(p), p.data_ptr(), p.dtype, p.device, p._version)
                     for p in self.parameters())

    def current_weights(self) -> Dict[Tuple[str, int], AdapterWeights]:
        """The generated weights: fresh while training / recording gradients, else cached."""
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return self.generate_weights()
        key = self._parameter_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.generate_weights())
        return self._cache[1]

    def before_forward(self) -> None:
        with profile_range('hypernet'):
            self._generated = self.current_weights()
