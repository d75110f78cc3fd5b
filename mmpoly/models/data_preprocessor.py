"""Normalise a batch of images and pad them, with every task map padded by its own value."""
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor

from mmseg.registry import MODELS
from ..tasks import resolve_task_specs


@MODELS.register_module()
class MultiTaskDataPreProcessor(BaseDataPreprocessor):
    """Like mmseg's ``SegDataPreProcessor``, for one ``gt_<task>`` field per task.

    Args:
        mean, std: per-channel normalisation (after the BGR -> RGB swap).
        bgr_to_rgb: swap channels (images are loaded BGR, weights expect RGB).
        size: pad every image (and label) to this (h, w), bottom/right; or None.
        size_divisor: pad to a multiple of this; or None (same size within the batch).
        pad_val: image padding value.
        tasks, task_specs: the tasks (filled in by ``MultiTaskEncoderDecoder``); each
            ``gt_<task>`` map is padded with its spec's ``pad_value``.
    """

    def __init__(self,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 bgr_to_rgb: bool = True,
                 size: Optional[Tuple[int, int]] = None,
                 size_divisor: Optional[int] = None,
                 pad_val: float = 0,
                 tasks: Optional[Sequence[str]] = None,
                 task_specs: Optional[Mapping[str, Any]] = None):
        super().__init__()
        if task_specs is None:
            raise ValueError('MultiTaskDataPreProcessor: task_specs are required (the segmentor, '
                             'MultiTaskEncoderDecoder, fills them in)')
        if tasks is None:
            tasks = tuple(task_specs)
        specs = resolve_task_specs(tasks, task_specs, where='data_preprocessor.tasks')
        self.label_pad_values = {f'gt_{t}': s.pad_value for t, s in specs.items()}
        self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)
        self.bgr_to_rgb = bgr_to_rgb
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor
        self.pad_val = pad_val

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        data = self.cast_data(data)
        inputs = [img.float() for img in data['inputs']]
        if self.bgr_to_rgb:
            inputs = [img[[2, 1, 0]] for img in inputs]
        inputs = [(img - self.mean) / self.std for img in inputs]
        data_samples = data.get('data_samples')

        h = max(img.shape[1] for img in inputs)
        w = max(img.shape[2] for img in inputs)
        if self.size is not None:
            h, w = max(h, self.size[0]), max(w, self.size[1])
        if self.size_divisor:
            d = self.size_divisor
            h, w = -(-h // d) * d, -(-w // d) * d

        padded = []
        for i, img in enumerate(inputs):
            pad = (0, w - img.shape[2], 0, h - img.shape[1])
            padded.append(F.pad(img, pad, value=self.pad_val))
            if data_samples is None:
                continue
            sample = data_samples[i]
            for field, pad_value in self.label_pad_values.items():
                if field in sample:
                    gt = getattr(sample, field)
                    label = gt.data
                    del gt.data  # PixelData refuses a field of another size
                    gt.data = F.pad(label, pad, value=pad_value)
            sample.set_metainfo(dict(pad_shape=(h, w), batch_input_shape=(h, w)))
        return dict(inputs=torch.stack(padded), data_samples=data_samples)
