"""What every hypernetwork tuner shares (Hyperformer, Polyhistor, Polyhistor-Lite).

method.md sections 3-5 and 8: a learnable task embedding (with a layer embedding, where one
hypernetwork serves many layers) passes through a projector MLP and a LayerNorm; small linear
hypernetworks map the resulting conditioning vector to the adapter's weights, biases and
LayerNorm. The methods differ only in how the weight matrices are generated, so this module
holds the rest:

- :class:`ConditionProjector`: Linear -> ReLU -> Linear -> LayerNorm, one, or one per layer
  run as batched matmuls.
- :class:`LinearGenerators`: many linear hypernetworks on the same input, run as ONE matmul
  (or one batched matmul for a stack of them).
- :func:`adapter_vector_pieces` / :func:`vector_init`: the generated adapter biases and
  LayerNorm weight / bias, :class:`TaskNorms`: plain per-task adapter LayerNorms instead.
- :class:`HypernetTunerBase`: the adapter LayerNorm's place (post-norm by default), the task
  embedding and its projector(s), generation once per forward while training, and a cache in
  eval mode that is refreshed whenever a parameter changes.
"""
import math
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..profiling import profile_range
from .adapter_base import ADAPTER_NORMS, AdapterTunerBase, AdapterWeights

#: pre-norm: initial bias of the generators of the adapter vectors: the generated LayerNorm
#: weight starts at 1 (a plain LayerNorm), everything else at 0
VECTOR_BIAS_INIT = {'norm_weight': 1.0}
#: post-norm: the generators of the LayerNorm weight and bias start at zero (weight rows and
#: bias), so the adapter's output LN(A(h)) g + b is exactly 0 and the tuned model starts as
#: the frozen one. A LayerNorm'd output has unit scale whatever A's, so small generator
#: weights alone would not make the adapter start small (as they do in the pre-norm form).
POST_NORM_ZERO = ('norm_weight', 'norm_bias')


def vector_init(adapter_norm: str) -> Tuple[Dict[str, float], Tuple[str, ...]]:
    """(bias_init, zero_weight) of :class:`LinearGenerators` for the adapter vectors."""
    if adapter_norm == 'post':
        return {}, POST_NORM_ZERO
    return dict(VECTOR_BIAS_INIT), ()


def adapter_vector_pieces(in_width: int, hidden: int, generate_norms: bool,
                          lead: Tuple[int, ...] = ()) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of an adapter's generated vectors: the biases of W_down (n) and
    W_up (d), and if ``generate_norms`` the weight and bias of its LayerNorm (d each)."""
    pieces = OrderedDict(down_bias=(*lead, hidden), up_bias=(*lead, in_width))
    if generate_norms:
        pieces.update(norm_weight=(*lead, in_width), norm_bias=(*lead, in_width))
    return pieces


class StackedLinear(nn.Module):
    """``count`` independent ``nn.Linear(in_dim, out_dim)`` as one batched matmul: weight
    (count, out_dim, in_dim), bias (count, out_dim), each initialised as ``nn.Linear``."""

    def __init__(self, count: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(count, out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(count, out_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # nn.Linear's default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias alike
        bound = 1 / math.sqrt(self.weight.shape[-1])
        self.weight.uniform_(-bound, bound)
        self.bias.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(count, N, in_dim), or (N, in_dim) shared by all -> (count, N, out_dim)."""
        if x.dim() == 2:
            x = x.expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias[:, None], x, self.weight.transpose(1, 2))


class StackedLayerNorm(nn.Module):
    """``count`` independent LayerNorms over the last dim of a (count, N, dim) input."""

    def __init__(self, count: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(count, dim))
        self.bias = nn.Parameter(torch.zeros(count, dim))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.weight.fill_(1.0)
        self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias[:, None], x, self.weight[:, None])


class ConditionProjector(nn.Module):
    """The conditioning vector: Linear -> ReLU -> Linear, then a LayerNorm (method.md s. 4, 8).

    Parameters: in_dim hidden + hidden + hidden out_dim + out_dim (+ 2 out_dim with the norm),
    per projector; section 8's 512 -> 128 -> 64: 74,048.

    Args:
        in_dim: width of the embedding it reads (E, or [task; layer] for Polyhistor-Lite).
        out_dim: k, the width of the conditioning vector.
        hidden: hidden width of the MLP (128 in the paper's code).
        norm: LayerNorm after the MLP.
        count: None: one projector, ``nn.Linear`` / ``nn.LayerNorm`` (input (..., in_dim));
            an int: that many independent projectors (one per layer) stacked, run as batched
            matmuls: input (N, in_dim) shared by all, or (count, N, in_dim), output
            (count, N, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, norm: bool = True,
                 count: Optional[int] = None):
        super().__init__()
        self.count = count
        if count is None:
            self.fc1 = nn.Linear(in_dim, hidden)
            self.fc2 = nn.Linear(hidden, out_dim)
            self.norm = nn.LayerNorm(out_dim) if norm else nn.Identity()
        else:
            self.fc1 = StackedLinear(count, in_dim, hidden)
            self.fc2 = StackedLinear(count, hidden, out_dim)
            self.norm = StackedLayerNorm(count, out_dim) if norm else nn.Identity()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()
        if not isinstance(self.norm, nn.Identity):
            self.norm.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.fc2(F.relu(self.fc1(x))))


class LinearGenerators(nn.Module):
    """Linear hypernetworks ``in_dim -> shape`` for named outputs, run as one matmul.

    Equivalent to one ``nn.Linear`` per piece; packed so that generating every piece for every
    task (and layer) is a single ``F.linear``. Packing: the weight's rows are the pieces in
    order, each flattened row-major (``torch.reshape`` order). Parameters:
    (in_dim + 1) x sum of the pieces' sizes (per stacked copy).

    Args:
        in_dim: width of the conditioning vector (k).
        pieces: name -> output shape, in packing order.
        init_std: weights start normal(0, init_std) (method.md s. 4: 1e-2).
        bias_init: name -> constant initial bias (default 0).
        zero_weight: names whose weight rows start at 0 (with their bias: a piece that
            starts exactly at its ``bias_init``, e.g. the post-norm LayerNorm's).
        count: None: one packed generator, weight (out, in_dim), input (..., in_dim); an int:
            that many stacked (one per layer), weight (count, out, in_dim), input
            (count, ..., in_dim), one batched matmul.
    """

    def __init__(self,
                 in_dim: int,
                 pieces: Mapping[str, Sequence[int]],
                 init_std: float = 1e-2,
                 bias_init: Optional[Mapping[str, float]] = None,
                 zero_weight: Iterable[str] = (),
                 count: Optional[int] = None):
        super().__init__()
        self.pieces = OrderedDict((name, tuple(shape)) for name, shape in pieces.items())
        self.sizes = [math.prod(shape) for shape in self.pieces.values()]
        self.init_std = init_std
        self.bias_init = dict(bias_init or {})
        self.zero_weight = tuple(zero_weight)
        lead = () if count is None else (count, )
        self.weight = nn.Parameter(torch.empty(*lead, sum(self.sizes), in_dim))
        self.bias = nn.Parameter(torch.empty(*lead, sum(self.sizes)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init_std > 0:
            self.weight.normal_(0, self.init_std)
        else:
            self.weight.zero_()
        for name, rows, chunk in zip(self.pieces, self.weight.split(self.sizes, dim=-2),
                                     self.bias.split(self.sizes, dim=-1)):
            chunk.fill_(self.bias_init.get(name, 0.0))
            if name in self.zero_weight:
                rows.zero_()

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(..., in_dim) -> {name: (..., *shape)}; stacked: (count, ..., in_dim) ->
        {name: (count, ..., *shape)}."""
        if self.weight.dim() == 2:
            out = F.linear(x, self.weight, self.bias)
        else:
            flat = x.reshape(x.shape[0], -1, x.shape[-1])
            out = torch.baddbmm(self.bias[:, None], flat, self.weight.transpose(1, 2))
            out = out.reshape(*x.shape[:-1], -1)
        out = out.split(self.sizes, dim=-1)
        return {name: chunk.unflatten(-1, shape) if shape else chunk.squeeze(-1)
                for (name, shape), chunk in zip(self.pieces.items(), out)}

    def extra_repr(self) -> str:
        return f'in_dim={self.weight.shape[1]}, out={sum(self.sizes)} ({len(self.sizes)} pieces)'


class TaskNorms(nn.Module):
    """Plain (not generated) per-task adapter LayerNorms for ``count`` adapters of width
    ``dim``: weight and bias of shape (T, count, dim), starting at ``weight_init`` (1 for a
    pre-norm, 0 for a post-norm adapter: it then starts at exactly 0) and 0."""

    def __init__(self, num_tasks: int, count: int, dim: int, weight_init: float = 1.0):
        super().__init__()
        self.weight_init = weight_init
        self.weight = nn.Parameter(torch.full((num_tasks, count, dim), float(weight_init)))
        self.bias = nn.Parameter(torch.zeros(num_tasks, count, dim))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.weight.fill_(self.weight_init)
        self.bias.zero_()


class HypernetTunerBase(AdapterTunerBase):
    """An adapter tuner whose weights are generated from parameters only, never from the input.

    Subclasses implement :meth:`generate_weights` (every adapter, every task, in a few batched
    calls) and :meth:`reset_parameters`. The weights are generated once per backbone forward
    while autograd records (training); in eval mode without grad they are constants, generated
    once and cached until a parameter changes. The cache key holds each parameter's identity,
    storage, dtype, device and in-place version counter, so an optimiser step, a
    ``load_state_dict`` (both write in place) and ``.to()`` all invalidate it.

    Args:
        adapter_norm: 'post' (default, the authors' form, method.md s. 8): the generated
            LayerNorm acts on the adapter's output, h + s LN_t(A(h)), and its generators start
            at zero so the tuned model starts as the frozen one; 'pre' (the text's form): on
            its input, generated LayerNorm weight starting near 1.
    """

    def __init__(self, adapter_norm: str = 'post', **kwargs):
        super().__init__(**kwargs)
        if adapter_norm not in ADAPTER_NORMS:
            raise ValueError(f'{type(self).__name__}.adapter_norm must be one of '
                             f'{ADAPTER_NORMS}, got {adapter_norm!r}')
        self.adapter_norm = adapter_norm
        self._cache: Optional[Tuple[tuple, Dict[Tuple[str, int], AdapterWeights]]] = None

    def build_task_conditioning(self, task_embed_dim: int, embed_dim: Optional[int],
                                projector_hidden: int, per_layer_projector: bool,
                                projector_norm: bool) -> None:
        """The task side of Hyperformer and Polyhistor (method.md s. 8): ``task_embed``
        (T, E) and ``projector`` E -> hidden -> k (+ LayerNorm), one per layer (stacked) or
        one for all layers; E = ``embed_dim``, or k when None."""
        k = task_embed_dim
        self.embed_dim = k if embed_dim is None else embed_dim
        if k < 1 or self.embed_dim < 1:
            raise ValueError(f'{type(self).__name__}: task_embed_dim and embed_dim must be '
                             f'>= 1, got {k} and {embed_dim}')
        self.per_layer_projector = per_layer_projector
        self.task_embed = nn.Parameter(torch.empty(self.num_tasks, self.embed_dim))
        self.projector = ConditionProjector(
            self.embed_dim, k, projector_hidden, norm=projector_norm,
            count=len(self.layers) if per_layer_projector else None)
        self._layer_pos = {layer.index: i for i, layer in enumerate(self.layers)}

    def task_conditions(self) -> Tensor:
        """c = projector(V): (L, T, k) with a projector per layer, else (T, k)."""
        return self.projector(self.task_embed)

    def layer_condition(self, cond: Tensor, layers: Sequence) -> Tensor:
        """The conditioning vectors of ``layers`` (LayerInfo): (len, T, k), whichever
        projector form (a shared one repeats its (T, k))."""
        if not self.per_layer_projector:
            return cond.expand(len(layers), -1, -1)
        pos = [self._layer_pos[layer.index] for layer in layers]
        if pos == list(range(pos[0], pos[0] + len(pos))):
            return cond[pos[0]:pos[0] + len(pos)]  # consecutive layers (a stage): a view
        return cond.index_select(0, torch.tensor(pos, device=cond.device))

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

    def clear_cache(self) -> None:
        """Forget the eval-mode cache: the next forward generates the weights again."""
        self._cache = None

    def cached_tensors(self) -> List[Tensor]:
        """The cached generated weights (eval mode), if any."""
        if self._cache is None:
            return []
        return [t for w in self._cache[1].values() for t in vars(w).values()
                if torch.is_tensor(t)]

    def current_weights(self) -> Dict[Tuple[str, int], AdapterWeights]:
        """The generated weights: fresh while training / recording gradients, else cached."""
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return self.generate_weights()
        key = self._parameter_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.generate_weights())
        return self._cache[1]

    def before_forward(self) -> Dict[Tuple[str, int], AdapterWeights]:
        with profile_range('hypernet'):
            return self.current_weights()
