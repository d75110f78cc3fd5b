"""What every backbone with a tuner shares: building and checking its tuner, freezing, the
task-stacked (or per-task loop) forward with its task contexts, per-layer activation
checkpointing, and strict loading of pretrained weights."""
import os
from collections import OrderedDict
from typing import Callable, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from torch import Tensor, nn

from mmseg.registry import MODELS
from ...utils.pretrained_url import fetch_checkpoint, is_url
from ...utils.state_dict import TUNER_PREFIX
from ..tuners.base import BaseTuner, LayerInfo, Site, TaskContext


class BlockParts(NamedTuple):
    """The upstream modules of one pre-norm transformer layer that :meth:`TunedBackboneMixin.
    _layer` runs: the two norms, the MLP's pieces (fc1 and fc2 go through the tuner's
    ``linear`` hook) and what each residual branch applies to its output before the tuner's
    branch hook (drop path, layer scale; the identity where the attention applies its own)."""
    norm1: nn.Module
    norm2: nn.Module
    fc1: nn.Module
    act: nn.Module
    drop1: nn.Module
    fc2: nn.Module
    drop2: nn.Module
    attn_out: Callable[[Tensor], Tensor]
    mlp_out: Callable[[Tensor], Tensor]


class TunedBackboneMixin:
    """Mixed into a backbone class before its upstream base.

    The backbone describes its layers, calls :meth:`_setup_tuner` at the end of its
    ``__init__``, implements ``_forward_once(ctx, x)`` (one pass over a batch, running every
    layer through :meth:`_run_layer`), ``_parts(block)`` (the layer's :class:`BlockParts`) and
    ``_attention(ctx, layer, block, x, hw_shape, prompts)`` (its attention, calling the
    tuner's attention hooks), and may call :meth:`_load_pretrained_weights` from
    ``init_weights``. The layer itself (:meth:`_layer`: prompts -> attention -> attention
    branch -> MLP -> MLP branch -> carried prompts) is written once, here, for every backbone.

    Task contexts: :meth:`forward` asks the tuner for what it prepares once per forward
    (``before_forward``, e.g. generated weights) and makes one :class:`TaskContext` per pass
    carrying it; every hook of the pass gets that context. A checkpointed layer is recomputed
    from the same context (the checkpointed function takes it as an argument), so the
    recomputation sees exactly what the forward saw, in the stacked pass and in the loop.
    """
    #: features a tuner may declare in ``BaseTuner.needs`` that this backbone has
    provides: FrozenSet[str] = frozenset()

    def _setup_tuner(self, tasks: Optional[Sequence[str]], tuner: Optional[dict],
                     task_batching: str, layer_infos: List[LayerInfo]) -> None:
        name = type(self).__name__
        if task_batching not in ('stacked', 'loop'):
            raise ValueError(f"{name}.task_batching must be 'stacked' or 'loop', "
                             f'got {task_batching!r}')
        self.task_batching = task_batching
        self.layer_infos = layer_infos
        tuner = dict(type='NoTuner') if tuner is None else tuner
        self._check_needs(_registered_class(tuner['type']))  # before the tuner's own checks
        self.tuner: BaseTuner = MODELS.build(
            tuner, default_args=dict(layers=layer_infos, tasks=tuple(tasks or ('task', ))))
        if tasks is None and self.tuner.per_task_features:
            raise ValueError(f'{name}: {type(self.tuner).__name__} keeps per-task parts: give '
                             'the backbone its tasks (the segmentor fills them in)')
        self.tuner.attach(self)
        self._check_fork_layers()
        self._freeze()

    def _setup_checkpointing(self, with_cp: Union[bool, Sequence[int]],
                             num_stages: int) -> None:
        """``with_cp``: True checkpoints every layer, False none, a list of stage indices the
        layers of those stages only. The early, high-resolution stages hold most of the
        activations for a small share of the compute, so checkpointing them buys most of the
        memory for a fraction of the recomputation."""
        name = type(self).__name__
        if isinstance(with_cp, bool):
            stages = range(num_stages) if with_cp else ()
        elif isinstance(with_cp, (list, tuple)) and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_stages
                for i in with_cp):
            stages = with_cp
        else:
            raise ValueError(f'{name}.with_cp must be True, False or a list of stage indices '
                             f'in [0, {num_stages}), got {with_cp!r}')
        self.checkpointed_stages = frozenset(stages)

    def _checkpoints(self, layer: LayerInfo) -> bool:
        """Whether this layer's forward is recomputed in the backward."""
        return (layer.stage in self.checkpointed_stages and self.training
                and torch.is_grad_enabled())

    def _check_needs(self, tuner_cls) -> None:
        for need in getattr(tuner_cls, 'needs', ()):
            if need not in self.provides:
                raise ValueError(f'{tuner_cls.__name__} needs {need}, which '
                                 f'{type(self).__name__} does not have (it has '
                                 f'{sorted(self.provides)})')

    def _check_fork_layers(self) -> None:
        """A fork's task rows are its stage's per-task output: only a stage's last layer
        may fork, in a backbone whose stages run their layers through ``_run_stage_layer``
        ('task_forks' in :attr:`provides`)."""
        if self.tuner.fork_layers and 'task_forks' not in self.provides:
            raise ValueError(f'{type(self.tuner).__name__} forks its pass into task streams '
                             f'(fork_layers), which {type(self).__name__} does not support')
        last = {}
        for layer in self.layer_infos:
            last[layer.stage] = layer.index
        wrong = sorted(set(self.tuner.fork_layers) - set(last.values()))
        if wrong:
            raise ValueError(f'{type(self.tuner).__name__}.fork_layers: layers {wrong} are not '
                             f'the last layer of their stage in {type(self).__name__} (the '
                             f'last layers are {sorted(last.values())})')

    def _freeze(self) -> None:
        """The one place that decides what is trained in the encoder: the tuner's own
        parameters, and the backbone parameters the tuner says it trains (all of them for
        full fine-tuning, MTLoRA's norms and patch embedding, ...)."""
        for name, param in self.named_parameters():
            if not name.startswith(TUNER_PREFIX):
                param.requires_grad_(self.tuner.trains_backbone_param(name))

    @property
    def task_specific(self) -> bool:
        """The backbone runs once per task (on a task-stacked batch)."""
        return self.tuner.task_specific

    @property
    def per_task_features(self) -> bool:
        """The outputs hold ``T * B`` rows (task-major), one feature map per task: the
        backbone runs once per task, or its one shared pass forks (``fork_layers``)."""
        return self.tuner.per_task_features

    def forward(self, x: Tensor) -> List[Tensor]:
        """Stage outputs; ``T * B`` rows (task-major) when :attr:`per_task_features`.

        A tuner whose shared pass forks (MTLoRA) runs one shared pass whatever
        ``task_batching`` says: its task streams are computed together with the shared
        stream inside each forked layer, so there is nothing to loop over."""
        tuner = self.tuner
        T = tuner.num_tasks
        prepared = tuner.before_forward()
        if not tuner.task_specific:
            return self._pass(TaskContext.shared_batch(T, prepared), x)
        if self.task_batching == 'stacked':
            return self._pass(TaskContext.all_tasks(T, prepared), x.repeat(T, 1, 1, 1))
        per_task = [self._pass(TaskContext.one_task(t, T, prepared), x) for t in range(T)]
        return [torch.cat(level, dim=0) for level in zip(*per_task)]

    def _pass(self, ctx: TaskContext, x: Tensor) -> List[Tensor]:
        with self.tuner.bind(ctx):  # for the tuner's forward hooks on backbone modules
            return self._forward_once(ctx, x)

    def _forward_once(self, ctx: TaskContext, x: Tensor) -> List[Tensor]:
        raise NotImplementedError

    def _parts(self, block) -> BlockParts:
        raise NotImplementedError

    def _attention(self, ctx: TaskContext, layer: LayerInfo, block, x: Tensor,
                   hw_shape: Tuple[int, int], prompts: Optional[Tensor]):
        """The block's attention on normed tokens ``x`` (and normed ``prompts`` joining it)
        with the tuner's hooks -> (token output, prompt output or None, side output of the
        tuner's 'proj' in token order or None, see ``BaseTuner.linear_at``)."""
        raise NotImplementedError

    def _layer(self, ctx: TaskContext, layer: LayerInfo, block, x: Tensor,
               hw_shape: Tuple[int, int],
               carried: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """One pre-norm layer with the tuner's hooks -> (tokens, prompts to carry or None).

        The prompts' residual outputs go through ``attn_out`` / ``mlp_out`` after the
        tokens' (so random drop paths draw in the order tokens, then prompts)."""
        tuner = self.tuner
        parts = self._parts(block)
        prompts = tuner.layer_prompts(ctx, layer, carried, x.shape[0])
        p = None if prompts is None else parts.norm1(prompts)
        attn_out, p_attn, side = self._attention(ctx, layer, block, parts.norm1(x), hw_shape,
                                                 p)
        attn_out = parts.attn_out(attn_out)
        x = self._widen(x, attn_out)  # a fork in the attention (MTLoRA: at 'proj')
        x = x + tuner.attn_branch(ctx, layer, x, attn_out)

        site = Site(hw_shape)
        mlp_out = parts.mlp_out(self._mlp(ctx, layer, parts, parts.norm2(x), site))
        x = self._widen(x, mlp_out)  # a fork in the MLP
        x = x + tuner.mlp_branch(ctx, layer, x, mlp_out)
        x = tuner.layer_output(ctx, layer, x, side)  # TADFormer: its stage gate

        if prompts is None or not tuner.carries_prompts:
            return x, None
        # prompts carry on in the shared stream: a fork's task streams end with the stage
        p_attn = parts.attn_out(p_attn[:prompts.shape[0]])

        def mlp(p: Tensor) -> Tensor:
            return parts.mlp_out(self._mlp(ctx, layer, parts, parts.norm2(p), None))

        return x, tuner.prompt_update(ctx, layer, prompts, p_attn, mlp)

    def _mlp(self, ctx: TaskContext, layer: LayerInfo, parts: BlockParts, x: Tensor,
             site: Optional[Site]) -> Tensor:
        """fc1, activation, dropout, fc2, dropout, with fc1 and fc2 ('fc1', 'fc2') through
        the tuner's ``linear_at`` hook on the tokens at ``site``, its ``prompt_linear`` hook
        on prompts (``site`` None)."""
        tuner = self.tuner

        def linear(name, module, x):
            if site is None:
                return tuner.prompt_linear(ctx, layer, name, module, x)
            return tuner.linear_at(ctx, layer, name, module, x, site)

        h = parts.drop1(parts.act(linear('fc1', parts.fc1, x)))
        return parts.drop2(linear('fc2', parts.fc2, h))

    def _run_stage_layer(self, ctx: TaskContext, layer: LayerInfo, block, x: Tensor,
                         hw_shape: Tuple[int, int], prompts: Optional[Tensor]):
        """One layer of a pass -> (tokens, carried prompts or None, task rows or None).

        At a fork layer of a shared pass the layer starts on the shared rows with a forked
        context; where the tuner forks them (a ``linear`` hook returns the rows of the
        shared stream and of one stream per task, ``groups`` times as many), the layer goes
        on with every stream (``_layer`` widens its residual to match). The
        ``len(ctx.tasks) * B`` task rows (task-major) are the stage's output, the shared
        rows go on. So what every stream shares before the fork (Swin: the attention) is
        computed once."""
        if not (ctx.shared and layer.index in self.tuner.fork_layers):
            x, prompts = self._run_layer(ctx, layer, block, x, hw_shape, prompts)
            return x, prompts, None
        forked = ctx.fork()
        # prompts go through it as the shared stream's (TADFormer carries them across stages)
        out, prompts = self._run_layer(forked, layer, block, x, hw_shape, prompts)
        B = x.shape[0]
        if out.shape[0] == B:  # the tuner did not fork here: every stream is the shared one
            out = out.repeat(forked.groups, *([1] * (out.dim() - 1)))
        shared, tasks = out.split([B, out.shape[0] - B])  # (no zero-filled backward)
        return shared, prompts, tasks

    @staticmethod
    def _widen(x: Tensor, branch: Tensor) -> Tensor:
        """``x`` repeated to ``branch``'s rows where a tuner forked the rows of a forked
        layer in the branch (shared stream first, then one per task)."""
        if branch.shape[0] == x.shape[0]:
            return x
        return x.repeat(branch.shape[0] // x.shape[0], *([1] * (x.dim() - 1)))

    def _stage_output(self, ctx: TaskContext, x: Tensor, task_rows: Optional[Tensor]):
        """The tokens a stage gives the decoders: the fork's task rows; with a forking
        tuner but no fork in this stage, the shared rows once per task; else ``x``."""
        if task_rows is not None:
            return task_rows
        if ctx.shared and self.tuner.fork_layers:
            return x.repeat(len(ctx.tasks), *([1] * (x.dim() - 1)))
        return x

    def _run_layer(self, ctx: TaskContext, layer: LayerInfo, block, x: Tensor,
                   hw_shape: Tuple[int, int], prompts: Optional[Tensor]):
        """:meth:`_layer`, checkpointed if its stage is (``with_cp``)."""
        if self._checkpoints(layer):
            return cp.checkpoint(self._recomputable_layer, ctx, layer, block, x, hw_shape,
                                 prompts, use_reentrant=False)
        return self._layer(ctx, layer, block, x, hw_shape, prompts)

    def _recomputable_layer(self, ctx: TaskContext, layer: LayerInfo, block, x: Tensor,
                            hw_shape: Tuple[int, int], prompts: Optional[Tensor]):
        """The checkpointed function: everything it reads comes in its arguments, and it
        binds ``ctx`` itself for the tuner's module forward hooks, so its recomputation in
        the backward (after the pass, or the loop, has moved on) is the same computation."""
        with self.tuner.bind(ctx):
            return self._layer(ctx, layer, block, x, hw_shape, prompts)

    def _load_pretrained_weights(self, path: str, state_dict: Dict[str, Tensor],
                                 adapt: Callable[[str, Tensor, Tensor], Tensor]) -> None:
        """Load every backbone weight from ``state_dict`` (already converted to this
        backbone's names); ``adapt(key, value, target)`` may resize a value (position
        tables). A missing weight or a wrong shape is an error naming the file."""
        name = type(self).__name__
        own = {k: v for k, v in self.state_dict().items()
               if not k.startswith(TUNER_PREFIX) and 'relative_position_index' not in k}
        missing = sorted(set(own) - set(state_dict))
        if missing:
            raise KeyError(f'checkpoint {path} is not a checkpoint for this {name}: '
                           f'{len(missing)} weights are missing, e.g. {missing[:5]}')
        loaded = OrderedDict()
        for key, target in own.items():
            value = adapt(key, state_dict[key], target)
            if value.shape != target.shape:
                raise ValueError(f'checkpoint {path}: {key} has shape {tuple(value.shape)}, '
                                 f'the backbone expects {tuple(target.shape)}')
            loaded[key] = value
        self.load_state_dict(loaded, strict=False)
        print_log(f'{name}: loaded {len(loaded)} pretrained weights from {path}',
                  logger='current')


def check_checkpoint_path(path: str) -> None:
    """Raise FileNotFoundError naming ``path`` unless the checkpoint can be read. A URL is
    fetched into the torch hub cache, where mmengine's CheckpointLoader then reads it;
    offline, the error names the URL and where to put the file."""
    if is_url(path):
        fetch_checkpoint(path)
    elif '://' not in path and not os.path.isfile(path):
        raise FileNotFoundError(
            f'pretrained backbone checkpoint {path} not found (model.backbone.init_cfg.'
            f'checkpoint); download it, or set model.backbone.init_cfg=None to start from '
            f'random weights')


def _registered_class(type_):
    """The class a config's ``type`` names (registered partials give their function)."""
    cls = MODELS.get(type_) if isinstance(type_, str) else type_
    return getattr(cls, 'func', cls)
