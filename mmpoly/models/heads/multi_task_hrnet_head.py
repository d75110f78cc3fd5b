"""One HRNet-style fusion head per task: MTLoRA's decoder (scale-lab/MTLoRA, ``models/
seg_hrnet.py`` ``HighResolutionHead`` behind ``models/swin_mtl.py``'s per-task ``Downsampler``).

Per task, as the reference builds it:
  1. a bias-free 1x1 conv per level to ``level_channels`` (the reference's
     ``MODEL.DECODER_CHANNELS`` = [18, 36, 72, 144], HRNet-W18's widths);
  2. every level resized (bilinear, align_corners=False) to the finest level, concatenated;
  3. 1x1 conv (with bias) to ``fuse_ratio`` (4) x the concatenated width, BN, ReLU;
  4. 1x1 conv (with bias) to the task's outputs.
The reference takes the stage outputs after each patch merging (widths 2C, 4C, 8C, 8C at
strides 8, 16, 32, 32 for Swin); mmpoly's backbones give the four stage outputs (C .. 8C
at strides 4 .. 32), so ``in_channels`` differs, the layers do not.
"""
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from .base_multi_task_head import BaseMultiTaskHead, task_loss
from .level_resize import resize_level


@MODELS.register_module()
class HRNetFuseHead(BaseDecodeHead):
    """Project each level, upsample all to the finest, concatenate, 1x1 conv-BN-ReLU, classify.

    Args:
        in_channels: widths of the input levels (finest first).
        level_channels: width of each level's bias-free 1x1 projection; None: no projection.
        fuse_ratio: the fusion conv's width over the concatenated width (4 in MTLoRA;
            ``channels`` is derived from it).
        **kwargs: as in ``BaseDecodeHead`` (num_classes, norm_cfg, loss_decode, ...).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 level_channels: Optional[Sequence[int]] = (18, 36, 72, 144),
                 fuse_ratio: int = 4,
                 dropout_ratio: float = 0.0,
                 **kwargs):
        if level_channels is not None and len(level_channels) != len(in_channels):
            raise ValueError(f'HRNetFuseHead: level_channels {list(level_channels)} needs one '
                             f'width per input level {list(in_channels)}')
        widths = list(level_channels if level_channels is not None else in_channels)
        super().__init__(
            in_channels=list(in_channels),
            channels=fuse_ratio * sum(widths),
            in_index=list(range(len(in_channels))),
            input_transform='multiple_select',
            dropout_ratio=dropout_ratio,
            **kwargs)
        self.projections = None if level_channels is None else nn.ModuleList(
            nn.Conv2d(c_in, c_out, 1, bias=False)
            for c_in, c_out in zip(in_channels, level_channels))
        with warnings.catch_warnings():  # the bias before BN is the reference's
            warnings.filterwarnings('ignore', 'Unnecessary conv bias')
            self.fuse = ConvModule(sum(widths), self.channels, 1, bias=True,
                                   norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        feats = self._transform_inputs(inputs)
        if self.projections is not None:
            feats = [proj(x) for proj, x in zip(self.projections, feats)]
        size = feats[0].shape[2:]
        feats = [feats[0]] + [resize_level(x, size, self.align_corners) for x in feats[1:]]
        return self.cls_seg(self.fuse(torch.cat(feats, dim=1)))


@MODELS.register_module()
class MultiTaskHRNetHead(BaseMultiTaskHead):
    """Task t: output LayerNorms (optional) on its own pyramid, then an ``HRNetFuseHead``.

    Args:
        in_channels: widths of the four backbone stages.
        level_channels, fuse_ratio: of every task's ``HRNetFuseHead`` (MTLoRA's defaults).
        tasks, task_specs, losses: as in ``MultiTaskSegformerHead``.
        output_norms: per-task LayerNorms on the backbone outputs (Swin's output norms,
            which mmpoly's backbones leave to the decoders; the reference has none, its
            taps come after the patch mergings' norm and reduction).
        dropout_ratio, norm_cfg, act_cfg, align_corners: as in ``BaseDecodeHead`` (the
            reference: no dropout, BatchNorm, ReLU, align_corners=False).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (96, 192, 384, 768),
                 level_channels: Optional[Sequence[int]] = (18, 36, 72, 144),
                 fuse_ratio: int = 4,
                 tasks: Optional[Sequence[str]] = None,
                 losses: Optional[Dict[str, dict]] = None,
                 task_specs: Optional[Mapping[str, Any]] = None,
                 output_norms: bool = True,
                 dropout_ratio: float = 0.0,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 align_corners: bool = False,
                 init_cfg=None):
        super().__init__(tasks, task_specs, align_corners, where='MultiTaskHRNetHead.tasks',
                         in_channels=in_channels, output_norms=output_norms,
                         init_cfg=init_cfg)
        losses = losses or {}
        self.decoders = nn.ModuleDict({
            task: HRNetFuseHead(
                in_channels=in_channels,
                level_channels=level_channels,
                fuse_ratio=fuse_ratio,
                num_classes=self.task_specs[task].num_outputs,
                threshold=0.5,  # unused; silences mmseg's one-channel warning
                dropout_ratio=dropout_ratio,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                align_corners=align_corners,
                loss_decode=task_loss(self.task_specs[task].default_loss, losses.get(task)))
            for task in self.tasks
        })
