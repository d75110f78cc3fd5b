"""One SegFormer All-MLP decoder per task, each with its own output norms and loss."""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmseg.models.decode_heads import SegformerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from ...tasks import ALL_TASKS, resolve_task_specs
from ..profiling import profile_range



class ChannelLayerNorms(nn.ModuleList):
    """LayerNorm over the channels of each NCHW feature level (Swin's output norms)."""

    def __init__(self, channels: Sequence[int]):
        super().__init__(nn.LayerNorm(c) for c in channels)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        return [norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for norm, x in zip(self, feats)]


@MODELS.register_module()
class MultiTaskSegformerHead(BaseModule):
    """Task t: output LayerNorms on its own feature pyramid, then mmseg's ``SegformerHead``.

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
                 tasks: Sequence[str] = ALL_TASKS,
                 losses: Optional[Dict[str, dict]] = None,
                 task_specs: Optional[Mapping[str, Any]] = None,
                 output_norms: bool = True,
                 dropout_ratio: float = 0.1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 align_corners: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.task_specs = resolve_task_specs(tasks, task_specs,
                                             where='MultiTaskSegformerHead.tasks')
        self.tasks = tuple(self.task_specs)
        losses = losses or {}
        self.align_corners = align_corners
        self.norms = nn.ModuleDict(
            {t: ChannelLayerNorms(in_channels) for t in self.tasks} if output_norms else {})
        self.decoders = nn.ModuleDict()
        for task in self.tasks:
            self.decoders[task] = SegformerHead(
                in_channels=list(in_channels),
                in_index=list(range(len(in_channels))),
                channels=channels,
                num_classes=self.task_specs[task].num_outputs,
                threshold=0.5,  # unused; silences mmseg's one-channel warning
                dropout_ratio=dropout_ratio,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                align_corners=align_corners,
                loss_decode=_task_loss(self.task_specs[task].default_loss, losses.get(task)))

    def forward(self, feats: Dict[str, List[Tensor]]) -> Dict[str, Tensor]:
        """task -> that task's feature pyramid  =>  task -> logits at 1/4 resolution."""
        out = {}
        with profile_range('decoders'):
            for task in self.tasks:
                x = feats[task]
                if task in self.norms:
                    x = self.norms[task](x)
                out[task] = self.decoders[task](x)
        return out

    def loss(self, feats: Dict[str, List[Tensor]], data_samples) -> Dict[str, Tensor]:
        logits = self.forward(feats)
        size = data_samples[0].metainfo['batch_input_shape']
        losses = {}
        with profile_range('losses'):
            for task, task_logits in logits.items():
                field = f'gt_{task}'
                if not all(field in s for s in data_samples):
                    raise KeyError(f'the model predicts {task!r} but a training sample has '
                                   f'no {field}; set the dataset tasks to the model tasks')
                label = torch.stack([getattr(s, field).data for s in data_samples])
                task_logits = resize(task_logits, size=size, mode='bilinear',
                                     align_corners=self.align_corners)
                loss = self.decoders[task].loss_decode
                losses[f'loss_{task}'] = loss(task_logits, label)
        return losses

    def predict(self, feats: Dict[str, List[Tensor]], batch_img_metas: List[dict]):
        """task -> logits resized to every image's original size (a list per task)."""
        logits = self.forward(feats)
        results = {}
        for task, task_logits in logits.items():
            task_logits = resize(task_logits, size=batch_img_metas[0]['batch_input_shape'],
                                 mode='bilinear', align_corners=self.align_corners)
            per_image = []
            for i, meta in enumerate(batch_img_metas):
                h, w = meta['img_shape'][:2]
                per_image.append(
                    resize(task_logits[i:i + 1, :, :h, :w], size=meta['ori_shape'][:2],
                           mode='bilinear', align_corners=self.align_corners)[0])
            results[task] = per_image
        return results


def _task_loss(default: dict, given: Optional[dict]) -> dict:
    """A task's loss config: ``given`` when it names a type, else ``default`` with the
    fields of ``given`` (e.g. only a ``loss_weight``)."""
    if not given:
        return default
    if 'type' in given:
        return dict(given)
    return dict(default, **given)
