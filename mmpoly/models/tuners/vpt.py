"""Visual prompt tuning (Jia et al. 2022) on a hierarchical backbone, one prompt set per task.

method.md section 6. P learnable tokens join the token sequence of a layer: on Swin they are
not part of the window partition but are prepended to every window (no relative position bias,
no shift mask; the backbone does this), and dropped after the layer.

- VPT-shallow: prompts at the input of the first layer; their outputs are carried through the
  following layers of the first stage and dropped at the first patch merging.
- VPT-deep: fresh prompts at the input of every layer, dropped after it, so nothing crosses a
  patch merging.

Prompts of task t are a (P, d_l) slice of a (T, P, d_l) parameter, expanded to the
task-stacked batch (task-major).
"""
import math
from functools import partial
from typing import Optional

from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext, new_task_param


def expand_to_batch(param: Tensor, batch_size: int) -> Tensor:
    """(T', ...) per-task tensor -> (batch_size, ...) task-major rows (T' divides it)."""
    groups = param.shape[0]
    rows = param.unsqueeze(1).expand(groups, batch_size // groups, *param.shape[1:])
    return rows.reshape(batch_size, *param.shape[1:])


@MODELS.register_module()
class VPT(BaseTuner):
    """VPT-shallow / VPT-deep with task-specific prompts.

    Layer l's input of task t becomes ``[P_l^t ; x]`` with P_l^t in R^(num_tokens x d_l) (the
    VPT-Shallow / VPT-Deep equations of VPT section 3.2; method.md section 6); the prompts'
    outputs are discarded after the layer (deep) or fed to the next layer of the first stage
    (shallow).
    Swin-T, 4 tasks: shallow 4 x 50 x 96 = 19,200; deep 4 x 50 x sum_l d_l = 883,200.

    Args:
        num_tokens: prompt tokens per layer (P).
        deep: fresh prompts at every layer (VPT-deep) instead of at the first only (shallow).
        patch_size: the backbone's patch size p; prompts start uniform in [-v, v] with
            v = sqrt(6 / (3 p^2 + d)) as VPT (xavier-uniform over the patch embedding).
        layers, tasks, init_cfg: see :class:`BaseTuner` (given by the backbone).
    """
    task_specific = True

    def __init__(self, num_tokens: int = 50, deep: bool = False, patch_size: int = 4,
                 **kwargs):
        super().__init__(**kwargs)
        if num_tokens < 1:
            raise ValueError(f'VPT.num_tokens must be >= 1, got {num_tokens}')
        self.num_tokens = num_tokens
        self.deep = deep
        self.patch_size = patch_size
        # shallow prompts run on through stage 0 (the backbone drops them at the merge)
        self.carries_prompts = not deep
        prompted = self.layers if deep else self.layers[:1]
        self.prompts = nn.ParameterList(
            [new_task_param(self.num_tasks, num_tokens, layer.dim) for layer in prompted])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for prompt in self.prompts:
            val = math.sqrt(6. / float(3 * self.patch_size**2 + prompt.shape[-1]))
            nn.init.uniform_(prompt, -val, val)

    def layer_prompts(self, ctx: TaskContext, layer: LayerInfo, carried: Optional[Tensor],
                      batch_size: int) -> Optional[Tensor]:
        if self.deep or layer.index == 0:
            prompts = self.prompts[layer.index if self.deep else 0]
            return expand_to_batch(ctx.select(prompts), batch_size)
        return carried  # shallow: the previous layer's prompts; None after a merge


# the two rows of the paper's table, as names a config can use
MODELS.register_module(name='VPTShallow', module=partial(VPT, deep=False))
MODELS.register_module(name='VPTDeep', module=partial(VPT, deep=True))
