"""One SegFormer All-MLP decoder per task, each with its own output norms and loss."""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from mmseg.models.decode_heads import SegformerHead
from mmseg.registry import MODELS
from .base_multi_task_head import BaseMultiTaskHead, task_loss
from .level_resize import resize_level


class SegformerDecoder(SegformerHead):
    """mmseg's ``SegformerHead`` (bilinear), its levels resized by :func:`resize_level`:
    the same outputs and gradients, without the CPU backward's transposes."""

    def forward(self, inputs: List[Tensor]) -> Tensor:
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        levels = [resize_level(conv(x), size, self.align_corners)
                  for conv, x in zip(self.convs, inputs)]
        return self.cls_seg(self.fusion_conv(torch.cat(levels, dim=1)))


@MODELS.register_module()
class MultiTaskSegformerHead(BaseMultiTaskHead):
    """Task t: output LayerNorms on its own feature pyramid, then mmseg's ``SegformerHead``
    (as :class:`SegformerDecoder`).

    Args:
        in_channels: widths of the four backbone stages.
        channels: decoder width (256 in the paper).
        tasks: task names; each gets its spec's ``num_outputs`` outputs.
        task_specs: task -> ``TaskSpec`` fields (filled in by the segmentor from
            ``model.tasks`` / the dataset's metainfo); default: the default dataset's.
        losses: task -> loss config (with its ``loss_weight``) or fields overriding the
            spec's loss (``TaskSpec.loss``, else the kind's default loss); entries of tasks
            the head does not have are ignored (the tools' build check reports them).
        output_norms: add per-task LayerNorms on the backbone outputs.
        dropout_ratio, norm_cfg, act_cfg, align_corners: as in ``SegformerHead``.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (96, 192, 384, 768),
                 channels: int = 256,
                 tasks: Optional[Sequence[str]] = None,
                 losses: Optional[Dict[str, dict]] = None,
                 task_specs: Optional[Mapping[str, Any]] = None,
                 output_norms: bool = True,
                 dropout_ratio: float = 0.1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 align_corners: bool = False,
                 init_cfg=None):
        super().__init__(tasks, task_specs, align_corners, where='MultiTaskSegformerHead.tasks',
                         in_channels=in_channels, output_norms=output_norms,
                         init_cfg=init_cfg)
        losses = losses or {}
        self.decoders = nn.ModuleDict()
        for task in self.tasks:
            self.decoders[task] = SegformerDecoder(
                in_channels=list(in_channels),
                in_index=list(range(len(in_channels))),
                channels=channels,
                num_classes=self.task_specs[task].num_outputs,
                threshold=0.5,  # unused; silences mmseg's one-channel warning
                dropout_ratio=dropout_ratio,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                align_corners=align_corners,
                loss_decode=task_loss(self.task_specs[task].default_loss, losses.get(task)))
