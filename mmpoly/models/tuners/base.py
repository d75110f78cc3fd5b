"""The interface between a backbone and a tuning method.

A backbone describes its transformer layers as a list of :class:`LayerInfo` and builds its
tuner with that list and the task names. While it runs it calls the tuner's hooks at fixed
points of every layer; a tuner overrides only the hooks its method needs. The backbone never
knows which method is active, and a tuner never copies the backbone.

Task-specific tuners see a task-stacked batch: every tensor a hook receives has the task axis
outermost (``T' * M`` rows, ``T'`` the number of tasks in this pass: all of them for the
stacked pass, one for the per-task loop). :meth:`BaseTuner.per_task` views such a tensor as
``(T', M, ...)`` and :meth:`BaseTuner.active` picks the rows of a ``(T, ...)`` parameter for
the tasks in the pass, so every hook is one batched op over the task axis.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

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

    def __init__(self,
                 layers: Sequence[LayerInfo] = (),
                 tasks: Sequence[str] = ('semseg', ),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.layers = tuple(layers)
        self.tasks = check_tasks(tasks, where=f'{type(self).__name__}.tasks')
        self._active: Optional[int] = None  # None: all tasks (stacked pass)

    # ----------------------------------------------------------------- task axis
    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_active(self) -> int:
        """Tasks in the current pass: all of them, or one in the per-task loop."""
        if not self.task_specific:
            return 1
        return self.num_tasks if self._active is None else 1

    def set_active_task(self, task_index: Optional[int]) -> None:
        """Called by the backbone: ``None`` for the stacked pass, else one task's index."""
        self._active = task_index

    def active(self, param: Tensor) -> Tensor:
        """Rows of a ``(T, ...)`` tensor for the tasks of this pass (no copy when stacked)."""
        if self._active is None:
            return param
        return param[self._active:self._active + 1]

    def per_task(self, x: Tensor) -> Tensor:
        """View a task-stacked tensor ``(T' * M, ..., C)`` as ``(T', M * ..., C)``."""
        return x.reshape(self.num_active, -1, x.shape[-1])

    # ------------------------------------------------------------ backbone hooks
    def attach(self, backbone: nn.Module) -> None:
        """Called once after the backbone is built (e.g. to register forward hooks)."""

    def before_forward(self) -> None:
        """Called at the start of every backbone forward (e.g. generate adapter weights)."""

    def linear(self, layer: LayerInfo, name: str, module: nn.Linear, x: Tensor) -> Tensor:
        """A frozen linear projection of the layer, by ``name``: PolyhistorSwin 'qkv'
        (fused), 'proj'; PolyhistorPVT 'q' (every token), 'kv' (the spatially reduced
        tokens), 'proj'."""
        return module(x)

    def attn_bias(self, layer: LayerInfo) -> Optional[Tensor]:
        """Extra attention logits ``(T', heads, N, N)`` added in every window, or None."""
        return None

    def layer_prompts(self, layer: LayerInfo, carried: Optional[Tensor],
                      batch_size: int) -> Optional[Tensor]:
        """Prompt tokens ``(batch_size, P, dim)`` that join every window of the layer.

        ``carried`` is the previous layer's prompt output in the same stage (only when
        :attr:`carries_prompts`); nothing crosses a patch merging.
        """
        return None

    def attn_branch(self, layer: LayerInfo, x: Tensor, attn_out: Tensor) -> Tensor:
        """The attention sub-block's contribution to the residual stream ``x``."""
        return attn_out

    def mlp_branch(self, layer: LayerInfo, x: Tensor, mlp_out: Tensor) -> Tensor:
        """The MLP sub-block's contribution to the residual stream ``x``."""
        return mlp_out


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
