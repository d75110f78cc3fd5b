"""What every multi-task head shares: the task specs, one decoder per task, the loss of each
task from its decoder's ``loss_decode``, and the prediction resize to every image's size."""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmseg.models.utils import resize
from ...tasks import resolve_task_specs
from ..profiling import profile_range


class ChannelLayerNorms(nn.ModuleList):
    """LayerNorm over the channels of each NCHW feature level (Swin's output norms)."""

    def __init__(self, channels: Sequence[int]):
        super().__init__(nn.LayerNorm(c) for c in channels)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        return [norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for norm, x in zip(self, feats)]


class BaseMultiTaskHead(BaseModule):
    """Task t: its output norms (optional), then ``self.decoders[t]``, on its own pyramid;
    losses and predictions per task.

    A subclass builds ``self.decoders[task]``: an mmseg decode head (whose ``loss_decode``
    is the task's loss, see ``task_loss``).

    Args:
        tasks, task_specs: as in ``MultiTaskEncoderDecoder`` (resolved here).
        align_corners: of the resizes of the logits to the input and original sizes.
        where: the config key named by errors about ``tasks``.
        in_channels: widths of the backbone levels.
        output_norms: per-task LayerNorms on the backbone outputs (Swin's output norms,
            which mmpoly's backbones leave to the decoders).
    """

    def __init__(self,
                 tasks: Sequence[str],
                 task_specs: Optional[Mapping[str, Any]],
                 align_corners: bool,
                 where: str,
                 in_channels: Sequence[int],
                 output_norms: bool,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if tasks is None or task_specs is None:
            raise ValueError(f'{where.split(".")[0]}: tasks and task_specs are required (the '
                             'segmentor, MultiTaskEncoderDecoder, fills them in)')
        self.task_specs = resolve_task_specs(tasks, task_specs, where=where)
        self.tasks = tuple(self.task_specs)
        self.align_corners = align_corners
        self.norms = nn.ModuleDict(
            {t: ChannelLayerNorms(in_channels) for t in self.tasks} if output_norms else {})

    def forward_task(self, task: str, feats: List[Tensor]) -> Tensor:
        """One task's pyramid -> its logits (at the decoder's output resolution)."""
        if task in self.norms:
            feats = self.norms[task](feats)
        else:  # a Swin's levels are NCHW views of NHWC tokens: decoders get NCHW as ever
            feats = [x.contiguous() for x in feats]
        return self.decoders[task](feats)

    def forward(self, feats: Dict[str, List[Tensor]]) -> Dict[str, Tensor]:
        """task -> that task's feature pyramid  =>  task -> logits."""
        with profile_range('decoders'):
            return {task: self.forward_task(task, feats[task]) for task in self.tasks}

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


def task_loss(default: dict, given: Optional[dict]) -> dict:
    """A task's loss config: ``given`` when it names a type, else ``default`` with the
    fields of ``given`` (e.g. only a ``loss_weight``)."""
    if not given:
        return default
    if 'type' in given:
        return dict(given)
    return dict(default, **given)
