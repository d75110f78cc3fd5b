"""Relative bias: tune only Swin's relative-position-bias tables, one copy per task.

method.md section 6. Every window attention of layer l adds ``B_l[index]`` to its logits,
where ``B_l`` is the layer's ((2w-1)^2, heads) table and ``index`` the (N, N) map from a token
pair to its relative offset. The tuner keeps a task-specific delta of every table, starting at
zero (so the tuned backbone starts as the frozen one), and returns
``delta_t[index]`` as the extra attention logits of task t (the ``attn_bias`` hook).

:class:`TaskRelativePositionBias` is the shared piece: BitFit, which tunes these tables along
with every bias of the backbone, imports it.
"""
from typing import Sequence

from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext, new_task_param


def gather_rel_pos_bias(tables: Tensor, index: Tensor) -> Tensor:
    """Swin's bias lookup for a stack of tables.

    Args:
        tables: (T, (2w-1)^2, heads) tables (or their deltas).
        index: (N, N) relative position index, N = w * w.

    Returns:
        (T, heads, N, N) attention logits.
    """
    num, _, heads = tables.shape
    n = index.shape[0]
    return tables[:, index.reshape(-1)].view(num, n, n, heads).permute(0, 3, 1, 2)


class TaskRelativePositionBias(nn.Module):
    """A zero-initialised (T, (2w-1)^2, heads) delta of every layer's relative-position table.

    Args:
        layers: the backbone's layers (windowed attention: ``window_size > 0``).
        num_tasks: T.
    """

    def __init__(self, layers: Sequence[LayerInfo], num_tasks: int):
        super().__init__()
        for layer in layers:
            if layer.window_size <= 0:
                raise ValueError(f'relative position bias needs windowed attention; layer '
                                 f'{layer.name} has window_size={layer.window_size}')
        self.tables = nn.ParameterList([
            new_task_param(num_tasks, (2 * layer.window_size - 1)**2, layer.num_heads)
            for layer in layers
        ])
        self._layer_names = [layer.name for layer in layers]

    def attach(self, backbone: nn.Module) -> None:
        """Copy each layer's ``relative_position_index`` (a non-persistent buffer, so the
        state dict holds only the deltas) and check the tables' shapes."""
        for i, name in enumerate(self._layer_names):
            wmsa = backbone.get_submodule(name).attn.w_msa
            frozen = wmsa.relative_position_bias_table
            if frozen.shape != self.tables[i].shape[1:]:
                raise ValueError(f'{name}: relative position table of shape '
                                 f'{tuple(frozen.shape)}, the tuner expects '
                                 f'{tuple(self.tables[i].shape[1:])}')
            self.register_buffer(f'index{i}', wmsa.relative_position_index.clone(),
                                 persistent=False)

    def forward(self, ctx: TaskContext, layer: LayerInfo) -> Tensor:
        """(T', heads, N, N) bias deltas of ``layer`` for the tasks of ``ctx``'s pass."""
        index = getattr(self, f'index{layer.index}', None)
        if index is None:
            raise RuntimeError('TaskRelativePositionBias: attach(backbone) was not called')
        return gather_rel_pos_bias(ctx.select(self.tables[layer.index]), index)


@MODELS.register_module()
class RelativeBias(BaseTuner):
    """Relative bias: task-specific relative-position-bias tables (method.md section 6).

    Task t's attention logits in layer l are ``q k^T / sqrt(d_h) + (B_l + dB_l^t)[index]``
    with the frozen table ``B_l`` and a trained delta ``dB_l^t``, zero at initialisation.
    Swin-T, 4 tasks: 4 x 169 x sum_l heads_l = 4 x 23,322 = 93,288 parameters.

    Args:
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = True
    needs = ('relative_position_bias', )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rel_pos = TaskRelativePositionBias(self.layers, self.num_tasks)

    def attach(self, backbone: nn.Module) -> None:
        self.rel_pos.attach(backbone)

    def attn_bias(self, ctx: TaskContext, layer: LayerInfo) -> Tensor:
        return self.rel_pos(ctx, layer)
