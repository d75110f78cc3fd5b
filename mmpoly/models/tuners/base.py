"""The interface between a backbone and a tuning method.

A backbone describes its transformer layers as a list of :class:`LayerInfo` and builds its
tuner with that list and the task names. While it runs it calls the tuner's hooks at fixed
points of every layer; a tuner overrides only the hooks its method needs. The backbone never
knows which method is active, and a tuner never copies the backbone.

Every hook receives a :class:`TaskContext` as its first argument: which tasks the current
pass holds (all ``T`` stacked, one task of the per-task loop, or one shared batch for a tuner
without task-specific parts) and what the tuner prepared for this forward
(:meth:`BaseTuner.before_forward`, e.g. generated adapter weights). Nothing a hook computes
depends on module state set before the call, so activation checkpointing, which re-runs a
layer in the backward, sees exactly what the forward saw.

Task-specific tuners see a task-stacked batch: every tensor a hook receives has the task axis
outermost (``T' * M`` rows, ``T'`` = ``ctx.groups``, the number of tasks in this pass).
:meth:`TaskContext.per_task` views such a tensor as ``(T', M, ...)`` and
:meth:`TaskContext.select` picks the rows of a ``(T, ...)`` parameter for the tasks in the
pass, so every hook is one batched op over the task axis.
"""
import re
from dataclasses import dataclass, field
from typing import (Any, Callable, ContextManager, Dict, FrozenSet, List, NamedTuple,
                    Optional, Sequence, Tuple, Union)

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmseg.registry import MODELS
from ...tasks import check_tasks


@dataclass(frozen=True)
class LayerInfo:
    """One transformer layer of a hierarchical backbone, as a tuner sees it.

    Args:
        index: position among all layers of the backbone (0-based).
        stage: stage (block group) holding the layer, 0-based.
        index_in_stage: position inside its stage.
        dim: token width d_l.
        num_heads: attention heads.
        mlp_hidden: hidden width of the layer's MLP.
        scale: s(l) = dim / (width of stage 0), the Kronecker scale of the layer.
        name: module path of the layer inside the backbone (e.g. 'stages.2.blocks.5').
        window_size: attention window (0 for global attention, as in PVT).
        projections: the attention's linear projections that the backbone routes through
            :meth:`BaseTuner.linear`, as (name, output width / dim): Swin has a fused
            ('qkv', 3) and ('proj', 1); PVT has ('q', 1), ('kv', 2) and ('proj', 1).
    """
    index: int
    stage: int
    index_in_stage: int
    dim: int
    num_heads: int
    mlp_hidden: int
    scale: int
    name: str
    window_size: int = 0
    projections: Tuple[Tuple[str, int], ...] = (('qkv', 3), ('proj', 1))

    @property
    def linears(self) -> Tuple[Tuple[str, int, int], ...]:
        """Every linear of the layer that the backbone routes through
        :meth:`BaseTuner.linear`, as (name, input width, output width): the attention's
        projections, then the MLP's 'fc1' and 'fc2'."""
        attention = tuple((name, self.dim, m * self.dim) for name, m in self.projections)
        return attention + (('fc1', self.dim, self.mlp_hidden),
                            ('fc2', self.mlp_hidden, self.dim))

    def widths(self, name: str) -> Tuple[int, int]:
        """(input width, output width) of the routed linear ``name``."""
        for linear, d_in, d_out in self.linears:
            if linear == name:
                return d_in, d_out
        raise KeyError(f'layer {self.name} routes no linear {name!r} (it has '
                       f'{[n for n, _, _ in self.linears]})')


def stage_last_layers(layers: Sequence[LayerInfo]) -> FrozenSet[int]:
    """Indices of the last layer of every stage: where the fork tuners (MTLoRA, DiTASK, Free
    Sinewich, TADFormer) part the shared stream into one stream per task."""
    depth = {}
    for layer in layers:
        depth[layer.stage] = max(depth.get(layer.stage, 0), layer.index_in_stage + 1)
    return frozenset(layer.index for layer in layers
                     if layer.index_in_stage == depth[layer.stage] - 1)


def split_streams(h: Tensor) -> Tuple[Tensor, Tensor]:
    """A forked layer's stacked streams ``(G, ...)`` -> (the shared stream ``h[0]``, the task
    streams ``h[1:]``), as views whose backward is one concatenation of their gradients.
    Indexing (``h[0]``, ``h[1:]``) would fill a zero tensor the size of ``h`` for each piece
    and add them (0.4 s of MTLoRA's 9.3 s single-thread step at 512 px, measured)."""
    shared, tasks = h.split([1, h.shape[0] - 1])
    return shared.squeeze(0), tasks


def subset_of(value, allowed: Sequence[str], where: str, allow_empty: bool = False,
              refused: str = '') -> Tuple[str, ...]:
    """A tuner's ``targets``-like key (a name or names, no repeats) -> the names in
    ``allowed``'s order; else a ValueError naming ``where`` (``refused``: said when a name is
    not allowed, e.g. why qkv is not offered)."""
    names = (value, ) if isinstance(value, str) else tuple(value)
    if (not names and not allow_empty) or any(n not in allowed for n in names) \
            or len(set(names)) != len(names):
        why = f' ({refused})' if refused and any(n not in allowed for n in names) else ''
        raise ValueError(f'{where} must be a {"" if allow_empty else "non-empty "}subset of '
                         f'{list(allowed)}, got {list(names)}{why}')
    return tuple(n for n in allowed if n in names)


class Site(NamedTuple):
    """Where a linear of a layer runs (:meth:`BaseTuner.linear_at`), for methods that act on
    the token grid (TADFormer's filters) or on the attention's prompt logits (its TPC).

    Args:
        hw: the grid of the tokens along ``x``'s rows: a window's (ws, ws) for the windowed
            attention's 'qkv' and 'proj', the stage's (H, W) for the MLP's 'fc1' and 'fc2'.
        num_prompts: prompt tokens in front of each row's grid tokens ('qkv', 'proj').
        prompt_logits: ``() -> (rows, heads, P, N)``, the unscaled ``q k^T`` of the P prompt
            queries against the N grid keys ('proj'; computed only when called), or None.
        real_tokens: ``() -> (windows, N)``, 1 on the image's tokens and 0 on the padding of
            each window of an image ('proj' when the windows are padded), or None.
    """
    hw: Tuple[int, int]
    num_prompts: int = 0
    prompt_logits: Optional[Callable[[], Tensor]] = None
    real_tokens: Optional[Callable[[], Tensor]] = None


@dataclass(frozen=True)
class TaskContext:
    """What one backbone pass holds, given to every hook of every layer of the pass.

    The backbone makes one per pass (:meth:`all_tasks` for the task-stacked pass,
    :meth:`one_task` for each pass of the per-task loop, :meth:`shared_batch` when the tuner
    has no task-specific part) and hands the same object to every hook, also when a
    checkpointed layer is recomputed in the backward.

    Args:
        tasks: indices of the tasks whose rows the pass holds, task-major, in row order.
        num_tasks: T, the model's number of tasks (rows of a ``(T, ...)`` parameter).
        shared: one batch serves every task in ``tasks`` (no task axis on the rows).
        forked: a forked layer of a shared pass (:meth:`fork`, a tuner with
            :attr:`BaseTuner.fork_layers`): the rows are the shared stream's ``M`` rows until
            the tuner forks them (a ``linear`` hook returns ``groups * M`` rows: the shared
            stream, then one stream per task in ``tasks``, ``groups = 1 + len(tasks)``);
            the rest of the layer runs on every stream.
        prepared: what the tuner's :meth:`BaseTuner.before_forward` returned for this
            forward (e.g. every adapter's generated weights, for all T tasks), or None.
    """
    tasks: Tuple[int, ...]
    num_tasks: int
    shared: bool = False
    forked: bool = False
    prepared: Any = field(default=None, compare=False, repr=False)
    #: task groups along the batch axis: len(tasks), or 1 for a shared batch (derived)
    groups: int = field(init=False, compare=False, repr=False)
    #: the pass holds every task, in order: :meth:`select` returns its argument (derived)
    selects_all: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        tasks = tuple(int(t) for t in self.tasks)
        if not tasks or any(not 0 <= t < self.num_tasks for t in tasks) \
                or len(set(tasks)) != len(tasks):
            raise ValueError(f'TaskContext: tasks must be distinct indices in '
                             f'[0, {self.num_tasks}), got {self.tasks!r}')
        if self.shared and self.forked:
            raise ValueError('TaskContext: a forked layer is not a shared batch')
        object.__setattr__(self, 'tasks', tasks)
        # derived once, so the hooks' per-layer work is an attribute read
        object.__setattr__(self, 'groups',
                           1 if self.shared else len(tasks) + (1 if self.forked else 0))
        everything = tasks == tuple(range(self.num_tasks))
        object.__setattr__(self, 'selects_all', everything)
        if not everything and tasks == tuple(range(tasks[0], tasks[-1] + 1)):
            rows = slice(tasks[0], tasks[-1] + 1)  # contiguous: a view
        else:
            rows = list(tasks)
        object.__setattr__(self, '_rows', rows)

    # ------------------------------------------------------------ constructors
    @classmethod
    def all_tasks(cls, num_tasks: int, prepared: Any = None) -> 'TaskContext':
        """The task-stacked pass: T x B rows, task-major."""
        return cls(tuple(range(num_tasks)), num_tasks, prepared=prepared)

    @classmethod
    def one_task(cls, task: int, num_tasks: int, prepared: Any = None) -> 'TaskContext':
        """One pass of the per-task loop: task ``task``'s B rows."""
        return cls((task, ), num_tasks, prepared=prepared)

    @classmethod
    def shared_batch(cls, num_tasks: int, prepared: Any = None) -> 'TaskContext':
        """A tuner without task-specific parts: B rows that serve every task."""
        return cls(tuple(range(num_tasks)), num_tasks, shared=True, prepared=prepared)

    def fork(self) -> 'TaskContext':
        """The context of a forked layer of this shared pass: its rows are the shared stream
        then one stream per task of ``tasks``."""
        return TaskContext(self.tasks, self.num_tasks, forked=True, prepared=self.prepared)

    # ------------------------------------------------------------ task axis
    def select(self, param: Tensor) -> Tensor:
        """Rows of a ``(T, ...)`` tensor for the tasks of this pass (no copy when it holds
        every task; a view for one task)."""
        if self.selects_all:
            return param
        return param[self._rows]

    def per_task(self, x: Tensor) -> Tensor:
        """View a task-stacked tensor ``(T' * M, ..., C)`` as ``(T', M * ..., C)``."""
        return x.reshape(self.groups, -1, x.shape[-1])


@MODELS.register_module()
@MODELS.register_module(name='NoTuner')
class BaseTuner(BaseModule):
    """A tuner that changes nothing: the frozen backbone of decoder-only fine-tuning.

    Subclasses override the hooks their method needs. Every hook has an identity default.

    Args:
        layers: the backbone's layers (given by the backbone, not by the config).
        tasks: task names (given by the backbone).
        init_cfg: mmengine init config.
    """
    #: the backbone must run once per task (on a task-stacked batch) for this tuner
    task_specific: bool = False
    #: the backbone's own parameters are trained (full fine-tuning)
    trains_backbone: bool = False
    #: prompt outputs of a layer are fed to the next layer of the same stage (VPT-shallow)
    carries_prompts: bool = False
    #: backbone features the method cannot do without: 'relative_position_bias' (Swin's
    #: tables, through ``attn_bias``), 'windows' (windowed attention). A backbone that lacks
    #: one (PVT lacks both) refuses the tuner when it is built.
    needs: Tuple[str, ...] = ()
    #: indices of the layers where a shared pass forks into one stream per task (MTLoRA):
    #: the backbone runs such a layer with a :meth:`TaskContext.fork` context on the shared
    #: rows, the tuner's ``linear`` hook widens them to the shared stream plus one stream
    #: per task where the streams part, the task rows become the stage's per-task output
    #: and the shared rows go on. Empty: no fork.
    fork_layers: FrozenSet[int] = frozenset()
    #: patterns (``re.search``) of backbone parameter names the tuner trains besides its own
    #: (MTLoRA's norms, patch embedding, ...); :attr:`trains_backbone` trains them all
    backbone_trainable: Tuple[str, ...] = ()

    def __init__(self,
                 layers: Sequence[LayerInfo] = (),
                 tasks: Sequence[str] = ('semseg', ),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.layers = tuple(layers)
        self.tasks = check_tasks(tasks, where=f'{type(self).__name__}.tasks')
        self._bound: Optional[TaskContext] = None

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def per_task_features(self) -> bool:
        """The backbone's outputs hold one feature map per task (T*B rows, task-major):
        it runs once per task, or its shared pass forks."""
        return self.task_specific or bool(self.fork_layers)

    def trains_backbone_param(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` is trained."""
        return self.trains_backbone or any(re.search(p, name) for p in self.backbone_trainable)

    # ------------------------------------------------------------ lifecycle
    def attach(self, backbone: nn.Module) -> None:
        """Called once after the backbone is built (e.g. to register forward hooks)."""

    def before_forward(self) -> Any:
        """Called once at the start of every backbone forward, before its pass(es).

        What it returns travels to every hook of the forward as ``ctx.prepared`` (e.g. the
        weights a hypernetwork generates for all T tasks, once per step); default None."""
        return None

    def clear_cache(self) -> None:
        """Drop whatever the tuner keeps between forwards (generated or merged weights), so
        that the next forward recomputes it; nothing by default."""

    def cached_tensors(self) -> List[Tensor]:
        """The tensors the tuner keeps between forwards (besides parameters and buffers)."""
        return []

    def count_report(self, model: nn.Module, counts: Dict) -> Dict:
        """Entries the trainable-parameter report (``tools/count_params.py``, the training
        log) adds for this method, given the model and its counts: e.g. the lines the
        method's released code prints, or our count beside its paper's figure. None here."""
        return {}

    # ------------------------------------------------- forward hooks on backbone modules
    def bind(self, ctx: TaskContext) -> ContextManager[TaskContext]:
        """The scope in which :attr:`bound_context` is ``ctx``.

        Only for forward hooks that the tuner registers on backbone modules in
        :meth:`attach` (BitFit's biases): torch calls those without our arguments. The
        backbone binds a pass's context around the pass and again inside every checkpointed
        layer function, so a recomputation in the backward binds the context its forward had.
        Hooks the backbone calls get the context as their first argument and never read it.
        """
        return _Binding(self, ctx)

    @property
    def bound_context(self) -> TaskContext:
        """The context of the pass now running (see :meth:`bind`)."""
        if self._bound is None:
            raise RuntimeError(f'{type(self).__name__}: a forward hook on a backbone module ran '
                               f'outside a backbone pass (no TaskContext is bound)')
        return self._bound

    # ------------------------------------------------------------ backbone hooks
    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        """A frozen linear of the layer, by ``name`` (:attr:`LayerInfo.linears`): the
        attention's projections (PolyhistorSwin 'qkv' (fused), 'proj'; PolyhistorPVT 'q'
        (every token), 'kv' (the spatially reduced tokens), 'proj') and the MLP's 'fc1',
        'fc2' (also on carried prompts, see :attr:`carries_prompts`)."""
        return module(x)

    def linear_at(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
                  x: Tensor, site: Site) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """:meth:`linear`, told where it runs (:class:`Site`), on the backbones that say
        (PolyhistorSwin: 'qkv', 'proj', 'fc1', 'fc2'; the MLP of every backbone).

        'proj' may return ``(out, side)``: ``side`` (the grid tokens' rows, like ``out``'s
        without the prompts) is put back in image order like the attention output and
        handed to :meth:`layer_output`. Default: :meth:`linear` (no side output)."""
        return self.linear(ctx, layer, name, module, x)

    def prompt_linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
                      x: Tensor) -> Tensor:
        """'fc1' / 'fc2' on carried prompts (:attr:`carries_prompts`): their rows are not a
        token grid, and in a forked layer they are the shared stream's only. Default:
        :meth:`linear`."""
        return self.linear(ctx, layer, name, module, x)

    def attn_bias(self, ctx: TaskContext, layer: LayerInfo) -> Optional[Tensor]:
        """Extra attention logits ``(T', heads, N, N)`` added in every window, or None."""
        return None

    def layer_prompts(self, ctx: TaskContext, layer: LayerInfo, carried: Optional[Tensor],
                      batch_size: int) -> Optional[Tensor]:
        """Prompt tokens ``(batch_size, P, dim)`` that join every window of the layer.

        ``carried`` is the previous layer's prompt output in the same stage (only when
        :attr:`carries_prompts`), or at a stage's first layer what :meth:`stage_prompts`
        gave (by default nothing crosses a patch merging).
        """
        return None

    def stage_prompts(self, ctx: TaskContext, stage: int, previous: Optional[Tensor],
                      batch_size: int) -> Optional[Tensor]:
        """Prompts ``(batch_size, P, dim)`` carried into the first layer of ``stage``, given
        ``previous`` (what the last layer of the stage before carried out, None for stage 0).
        Default None: nothing crosses a patch merging (VPT-shallow)."""
        return None

    def prompt_update(self, ctx: TaskContext, layer: LayerInfo, prompts: Tensor,
                      p_attn: Tensor, mlp: Callable[[Tensor], Tensor]) -> Tensor:
        """The prompts a layer carries on (:attr:`carries_prompts`), from its input
        ``prompts``, their attention output ``p_attn`` and ``mlp`` (the layer's residual MLP
        branch: norm2, MLP through :meth:`prompt_linear`, drop path). Default: the tokens'
        rule, ``p = prompts + p_attn; p + mlp(p)``."""
        prompts = prompts + p_attn
        return prompts + mlp(prompts)

    def attn_branch(self, ctx: TaskContext, layer: LayerInfo, x: Tensor,
                    attn_out: Tensor) -> Tensor:
        """The attention sub-block's contribution to the residual stream ``x``."""
        return attn_out

    def mlp_branch(self, ctx: TaskContext, layer: LayerInfo, x: Tensor,
                   mlp_out: Tensor) -> Tensor:
        """The MLP sub-block's contribution to the residual stream ``x``."""
        return mlp_out

    def layer_output(self, ctx: TaskContext, layer: LayerInfo, x: Tensor,
                     side: Optional[Tensor]) -> Tensor:
        """The layer's output tokens from its residual stream ``x`` and the side output of
        its 'proj' (:meth:`linear_at`; None when there is none). Default: ``x``."""
        return x


class _Binding:
    """``with tuner.bind(ctx):`` (a class, not a generator: it runs once per checkpointed
    layer)."""
    __slots__ = ('tuner', 'ctx', 'previous')

    def __init__(self, tuner: BaseTuner, ctx: TaskContext):
        self.tuner, self.ctx = tuner, ctx

    def __enter__(self) -> TaskContext:
        self.previous = self.tuner._bound
        object.__setattr__(self.tuner, '_bound', self.ctx)
        return self.ctx

    def __exit__(self, *exc) -> None:
        object.__setattr__(self.tuner, '_bound', self.previous)


@MODELS.register_module()
class FullFineTuning(BaseTuner):
    """Full fine-tuning: every backbone parameter is trained; no extra modules.

    One backbone shared by all tasks (multi-task full fine-tuning). Single-task full
    fine-tuning builds one backbone per task instead (``backbone_per_task=True`` in
    :class:`MultiTaskEncoderDecoder`).
    """
    trains_backbone = True


def new_task_param(num_tasks: int, *shape: int, std: float = 0.0) -> nn.Parameter:
    """A ``(T, *shape)`` parameter, zeros or normal(0, std)."""
    data = torch.zeros(num_tasks, *shape)
    if std > 0:
        data.normal_(0, std)
    return nn.Parameter(data)
