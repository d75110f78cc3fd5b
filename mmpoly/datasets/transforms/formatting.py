import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData
from mmseg.registry import TRANSFORMS
from mmseg.structures import SegDataSample

from mmpoly.tasks import task_spec_of


@TRANSFORMS.register_module()
class PackMultiTaskInputs(BaseTransform):
    """Pack the image and every task label for the model.

    Args:
        meta_keys (tuple[str]): keys of ``results`` copied to the data sample's metainfo
            when present. ``tasks`` (the tasks that have a label) is always added.

    Returns:
        dict: ``inputs``, the image as a CHW uint8 tensor (BGR, as loaded); and
        ``data_samples``, a ``SegDataSample`` with one ``PixelData`` field ``gt_<task>`` per
        label: (1, H, W) int64 for class and binary maps, (3, H, W) float32 for normals,
        (C, H, W) float32 for regression maps (depth: C = 1).
    """

    def __init__(self,
                 meta_keys=('img_path', 'img_id', 'ori_shape', 'img_shape', 'pad_shape',
                            'scale_factor', 'flip', 'flip_direction', 'rotate_degree')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        packed = dict()
        if 'img' in results:
            img = results['img']
            if img.ndim == 2:
                img = img[..., None]
            packed['inputs'] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

        data_sample = SegDataSample()
        tasks = []
        for key in results.get('task_fields', []):
            task = key[len('gt_'):]
            label = results[key]
            data = task_spec_of(results, task).task_kind.pack_label(label)
            data_sample.set_data({key: PixelData(data=torch.from_numpy(data))})
            tasks.append(task)

        metainfo = {k: results[k] for k in self.meta_keys if k in results}
        metainfo['tasks'] = tuple(tasks)
        data_sample.set_metainfo(metainfo)
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self):
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
