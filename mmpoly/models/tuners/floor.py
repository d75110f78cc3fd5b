"""The floor of a task-specific method's cost: the frozen backbone run once per task.

A method with task-specific parts in every layer runs the frozen backbone on T x B images (a
task-stacked batch, or T passes with ``task_batching='loop'``), and its backward goes through
every frozen layer for the input gradients (the tuner's parameters in layer 1 need them).
:class:`FrozenTaskStacked` does exactly that with nothing added: no parameters, every hook
the identity, except that while training it marks the first layer's attention input as
requiring a gradient (``input_grad``), so the backward crosses every frozen layer as it
does for any tuner with parameters in every layer. Its outputs equal the frozen backbone's
(``NoTuner``) repeated for every task, so a model with it computes what decoder-only
fine-tuning computes, at the price of a PEFT method's backbone passes: the lower bound of
the step time and memory of any tuner that must run the backbone per task
(``configs/floor_swin-t.py``; ``tools/benchmark.py`` compares methods with it).

:class:`FrozenSharedPass` is the same on one shared pass of B images: the time part of the
floor of a method that runs the backbone once for all tasks (MTLoRA, DiTASK, Free
Sinewich). Such a method adds arithmetic of its own (its low-rank branches, the task
streams of its forked blocks), which the benchmark counts (``tools/benchmark.py --flops``):
its floor is its arithmetic at this pass's rate (``configs/floor_single-pass_swin-t.py``).
"""
from torch import Tensor, nn

from mmseg.registry import MODELS
from .base import BaseTuner, LayerInfo, TaskContext


@MODELS.register_module()
class FrozenTaskStacked(BaseTuner):
    """Frozen backbone on the task-stacked batch (T x B images), no tuner parameters.

    Args:
        input_grad: while training, backpropagate through every frozen layer (input
            gradients only), as a tuner with parameters in every layer makes autograd do;
            False: no backward through the backbone at all (decoder-only cost, T passes).
        layers, tasks, init_cfg: see :class:`BaseTuner`.
    """
    task_specific = True

    def __init__(self, input_grad: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.input_grad = input_grad

    def linear(self, ctx: TaskContext, layer: LayerInfo, name: str, module: nn.Linear,
               x: Tensor) -> Tensor:
        if (self.input_grad and layer.index == 0 and self.training and x.grad_fn is None
                and not x.requires_grad and x.is_floating_point()):
            x = x.detach().requires_grad_()  # a leaf: the backward now reaches layer 1
        return module(x)


@MODELS.register_module()
class FrozenSharedPass(FrozenTaskStacked):
    """Frozen backbone on one shared batch (B images for every task), no tuner parameters,
    backpropagated through every frozen layer while training (``input_grad``)."""
    task_specific = False
