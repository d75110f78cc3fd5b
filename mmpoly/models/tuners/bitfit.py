"""BitFit: tune every bias of the backbone, one copy per task (method.md section 6).

Every module of the backbone that has a bias (patch embedding conv and norm, the LayerNorms
of every layer, qkv / proj / MLP linears, the patch-merging norms; ConvNeXt-V2's GRN, whose
additive term is ``beta``) gets a task-specific delta ``db^t`` added to its output, i.e.
task t runs the frozen module with bias ``b + db^t``. A module called in either layout
(mmpretrain's LayerNorm2d and GRN: ``data_format``) gets the delta on the call's channel
axis.
Forward hooks do it, so the backbone and its state-dict keys stay as they are (torch calls
them without our arguments: they read the pass's context from ``bound_context``, which the
backbone binds for every pass and inside every checkpointed layer). Swin's
relative-position-bias tables are biases too (the paper's 0.30M counts them): they go through
the ``attn_bias`` hook with the shared :class:`TaskRelativePositionBias`. Every delta starts
at zero, so the tuned backbone starts as the frozen one.
"""
import inspect
from functools import partial
from typing import Optional

from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext, new_task_param
from .relative_bias import TaskRelativePositionBias


def add_task_bias(x: Tensor, bias: Tensor, channel_dim: int) -> Tensor:
    """``x + bias_t`` for a task-stacked ``x`` (T' * M, ...) and ``bias`` (T', C), where C is
    ``x``'s size along ``channel_dim``: one broadcast add over the task axis."""
    channel_dim = channel_dim % x.dim()
    groups = bias.shape[0]
    shape = [groups] + [1] * x.dim()
    shape[channel_dim + 1] = bias.shape[1]
    out = x.reshape(groups, -1, *x.shape[1:]) + bias.view(shape)
    return out.reshape(x.shape)


def bias_of(module: nn.Module) -> Optional[nn.Parameter]:
    """The additive term of a module's output: its ``bias``, or the ``beta`` of a module
    without one (mmpretrain's GRN in ConvNeXt-V2: ``gamma * (x * N(x)) + beta + x``)."""
    for name in ('bias', 'beta'):
        value = getattr(module, name, None)
        if isinstance(value, nn.Parameter):
            return value
    return None


def layout_default(module: nn.Module) -> Optional[str]:
    """The default ``data_format`` of a module whose forward takes one (mmpretrain's
    LayerNorm2d and GRN: 'channel_first' unless called with 'channel_last'), else None."""
    try:
        param = inspect.signature(module.forward).parameters.get('data_format')
    except (TypeError, ValueError):
        return None
    return None if param is None else param.default


@MODELS.register_module()
class BitFit(BaseTuner):
    """BitFit (Ben Zaken et al. 2022): task-specific deltas of every bias of the backbone.

    Task t's output of a module with bias ``b`` is ``f(x) + db^t`` (= the module with bias
    ``b + db^t``); ``db^t`` starts at zero. Swin-T, 4 tasks: 4 x 74,778 = 299,112 parameters
    (51,456 biases and 23,322 relative-position-table entries per task).

    Args:
        rel_pos_tables: also tune the relative-position-bias tables (as the paper counts),
            where the backbone has them (Swin, not PVT).
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = True

    def __init__(self, rel_pos_tables: bool = True, **kwargs):
        super().__init__(**kwargs)
        # a backbone without windows (PVT) has no tables: BitFit is then its biases alone
        has_tables = all(layer.window_size > 0 for layer in self.layers)
        self.rel_pos = TaskRelativePositionBias(self.layers, self.num_tasks) \
            if rel_pos_tables and has_tables else None
        #: module path in the backbone ('.' -> '_') -> (T, C) delta of its bias
        self.biases = nn.ParameterDict()

    def attach(self, backbone: nn.Module) -> None:
        """One zero (T, C) delta and one forward hook per module with a bias."""
        if self.rel_pos is not None:
            self.rel_pos.attach(backbone)
        for name, module in backbone.named_modules():
            bias = bias_of(module)
            if name.startswith('tuner') or bias is None:
                continue
            key = name.replace('.', '_')
            if key in self.biases:
                raise KeyError(f'BitFit: two modules map to the same key {key!r}')
            self.biases[key] = new_task_param(self.num_tasks, *bias.shape)
            layout = layout_default(module)
            if layout is not None:  # the channel axis depends on the call (ConvNeXt)
                module.register_forward_hook(partial(self._add_delta_in_layout, key, layout),
                                             with_kwargs=True)
                continue
            channel_dim = 1 if isinstance(module, _ConvNd) else -1
            module.register_forward_hook(partial(self._add_delta, key, channel_dim))

    def _add_delta(self, key: str, channel_dim: int, module: nn.Module, inputs,
                   output: Tensor) -> Tensor:
        ctx = self.bound_context
        return add_task_bias(output, ctx.select(self.biases[key]), channel_dim)

    def _add_delta_in_layout(self, key: str, default: str, module: nn.Module, args, kwargs,
                             output: Tensor) -> Tensor:
        layout = kwargs.get('data_format', args[1] if len(args) > 1 else default)
        channel_dim = -1 if layout == 'channel_last' else 1
        return self._add_delta(key, channel_dim, module, args, output)

    def attn_bias(self, ctx: TaskContext, layer: LayerInfo):
        return None if self.rel_pos is None else self.rel_pos(ctx, layer)
