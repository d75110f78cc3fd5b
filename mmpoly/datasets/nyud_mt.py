"""NYUD-v2 multi-task (the NYUD_MT release of ASTMT / MTI-Net): semseg, depth, normals, edge.

The layout and label rules are those of the reference loader (Multi-Task-Learning-PyTorch,
``data/nyud.py``)::

    NYUD_MT/
      gt_sets/{train,val}.txt    image ids, one a line (795 train, 654 val)
      images/<id>.jpg
      segmentation/<id>.png      40 classes as 1..40, 0 = void
      depth/<id>.npy             HxW float, metres, 0 = no measurement
      normals/<id>.npy           HxWx3 float (x right, y down, z to the camera), zero = none
      edge/<id>.npy              HxW, 1 = edge, 0 = no edge

The reference subtracts 1 from the class ids and maps void (0) to 255 (ignored); depth and
normals are used as stored (its evaluation re-normalises the normals, as our reader does).
"""
import colorsys
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmseg.registry import DATASETS

from .base_multi_task import MultiTaskDataset
from .synthetic import prepare_synthetic_root
from mmpoly.evaluation.metrics.functional import labelled_normals, normalize_normals
from .transforms.loading import (check_binary_edges, load_npy, read_png,
                                 register_label_reader)

NYUD_TASKS = ('semseg', 'depth', 'normals', 'edge')

# The 40 classes of Gupta et al. (CVPR 2013), ids 1..40 of the segmentation PNGs.
NYUD_CLASSES = ('wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door',
                'window', 'bookshelf', 'picture', 'counter', 'blinds', 'desk', 'shelves',
                'curtain', 'dresser', 'pillow', 'mirror', 'floor mat', 'clothes', 'ceiling',
                'books', 'refrigerator', 'television', 'paper', 'towel', 'shower curtain',
                'box', 'whiteboard', 'person', 'night stand', 'toilet', 'sink', 'lamp',
                'bathtub', 'bag', 'otherstructure', 'otherfurniture', 'otherprop')


def _palette(n: int) -> List[List[int]]:
    # evenly spaced hues, alternating brightness so neighbouring ids differ
    return [[round(255 * c) for c in colorsys.hsv_to_rgb(i / n, 0.75, 0.95 - 0.3 * (i % 2))]
            for i in range(n)]


NYUD_PALETTE = _palette(len(NYUD_CLASSES))

# The four tasks (``mmpoly.tasks.TaskSpec`` fields); loss weights as the reference's NYUD
# configs (semseg 1, depth 1, normals 10, edge 50 with positive weight 0.95).
NYUD_TASK_SPECS = dict(
    semseg=dict(kind='class', num_outputs=40, label_format='nyud_semseg_png',
                ignore_index=255, classes=NYUD_CLASSES, palette=NYUD_PALETTE,
                loss=dict(type='PixelCrossEntropyLoss', loss_weight=1.0)),
    # positive: scored as the reference's eval_depth (log-RMSE too); predictions written as
    # the reference's .mat files
    depth=dict(kind='regression', num_outputs=1, label_format='depth_npy', ignore_index=0,
               positive=True, prediction_format='mat',
               loss=dict(type='RegressionL1Loss', ignore_index=0, loss_weight=1.0)),
    normals=dict(kind='normal', num_outputs=3, label_format='normals_npy', ignore_index=0,
                 loss=dict(type='NormalL1Loss', loss_weight=10.0)),
    # max_dist: the NYUD edge benchmark's matching tolerance (0.011 of the diagonal)
    edge=dict(kind='edge', num_outputs=1, label_format='edge_npy', ignore_index=255,
              max_dist=0.011,
              loss=dict(type='BalancedBCELoss', pos_weight=0.95, loss_weight=50.0)),
)

# task -> (directory, file extension) of its label
LABEL_FILES = dict(semseg=('segmentation', '.png'), depth=('depth', '.npy'),
                   normals=('normals', '.npy'), edge=('edge', '.npy'))


@register_label_reader('nyud_semseg_png')
def read_nyud_semseg(path, results, spec, shape):
    """Class ids 1..K -> 0..K-1, void 0 -> 255 (the reference: ``0 -> 256``, then ``- 1``)."""
    label = read_png(path)
    if label.ndim != 2:
        raise ValueError(f'NYUD segmentation {path} must be single-channel, got shape '
                         f'{label.shape}')
    over = label > spec.num_outputs
    if over.any():
        bad = np.unique(label[over])
        raise ValueError(f'NYUD segmentation {path} has class ids {bad[:5].tolist()} above '
                         f'the {spec.num_outputs} classes (ids are 1..{spec.num_outputs}, '
                         '0 = void)')
    label = label.astype(np.int64)
    return np.where(label == 0, spec.ignore_index, label - 1).astype(np.uint8)


@register_label_reader('depth_npy')
def read_depth(path, results, spec, shape):
    """Depth in metres (float32 HxW), 0 = no measurement, at exactly its image's size."""
    depth = load_npy(path)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.shape != tuple(shape):
        raise ValueError(f'depth map {path} has shape {depth.shape}, its image is '
                         f'{tuple(shape)}: a depth map must match its image pixel for pixel')
    if not np.issubdtype(depth.dtype, np.number) or np.issubdtype(depth.dtype, np.complexfloating):
        raise ValueError(f'depth map {path} must hold real numbers, got {depth.dtype}')
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError(f'depth map {path} holds non-finite or negative values (depth is in '
                         'metres, 0 = no measurement)')
    return depth


@register_label_reader('normals_npy')
def read_normals(path, results, spec, shape):
    """Unit normals (float32 HxWx3); a stored zero vector stays zero (no label)."""
    normals = load_npy(path)
    if normals.ndim != 3 or normals.shape[2] != 3:
        raise ValueError(f'normals map {path} must be HxWx3, got shape {normals.shape}')
    normals = normals.astype(np.float32)
    if not np.isfinite(normals).all():
        raise ValueError(f'normals map {path} holds non-finite values')
    return normalize_normals(normals, axis=2, valid=labelled_normals(normals), eps=1e-6)


@register_label_reader('edge_npy')
def read_edges(path, results, spec, shape):
    """Edges (uint8 HxW): 1 = edge, 0 = no edge; any other value is an error."""
    return check_binary_edges(load_npy(path), path)


@DATASETS.register_module()
class NYUDMTDataset(MultiTaskDataset):
    """NYUD-v2 multi-task (NYUD_MT): semseg (40 classes), depth, surface normals, edges.

    Every file a sample needs is checked when the data list is built (a missing one raises
    ``FileNotFoundError`` naming it); each label file is checked when it is read (a class
    id above 40, a depth map whose shape is not its image's, an edge map with values other
    than 0 and 1: ``ValueError`` naming the file).

    Args:
        data_root (str): the ``NYUD_MT`` directory.
        split (str): reads ``gt_sets/{split}.txt``. Default: 'train'.
        tasks (Sequence[str]): any subset of ``NYUD_TASKS``. Default: all four.
        pipeline (list): data transforms. Default: [].
        test_mode (bool): as in ``BaseDataset``. Default: False.
        auto_generate (dict, optional): when given and ``data_root`` does not exist, first
            generate a synthetic NYUD_MT there with ``make_synthetic_nyud_mt(data_root,
            **auto_generate)``; a ``root`` key restricts this to that root (a mistyped path
            is an error, not a new dataset). Default: None.
        metainfo (dict, optional): entries that override ``METAINFO``.
        **kwargs: the other ``BaseDataset`` arguments.

    Each data info has ``img_path``, ``img_id``, ``tasks`` and ``label_paths``.
    """

    METAINFO = dict(
        tasks=NYUD_TASKS,
        task_specs=NYUD_TASK_SPECS,
        semseg_classes=NYUD_CLASSES,
        semseg_palette=NYUD_PALETTE,
        # mmseg's visualizer reads 'classes' and 'palette': the semseg ones.
        classes=NYUD_CLASSES,
        palette=NYUD_PALETTE)

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 tasks: Sequence[str] = NYUD_TASKS,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 auto_generate: Optional[dict] = None,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        self.split = split
        if auto_generate is not None:
            from .synthetic_nyud import make_synthetic_nyud_mt
            prepare_synthetic_root(data_root, auto_generate, make_synthetic_nyud_mt,
                                   'NYUD_MT')
        super().__init__(
            tasks=tasks,
            data_root=data_root,
            metainfo=metainfo,
            pipeline=list(pipeline),
            test_mode=test_mode,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        img_ids = self.read_split(
            osp.join(self.data_root, 'gt_sets', f'{self.split}.txt'),
            'tools/prepare_data.py nyud_mt fetches NYUD_MT; auto_generate=dict() generates a '
            'synthetic one there')
        return [self._data_info(img_id) for img_id in img_ids]

    def _data_info(self, img_id: str) -> dict:
        def require(path, what):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} of image {img_id} not found: {path}')
            return path

        root = self.data_root
        label_paths = {}
        for task in self.tasks:
            if task not in LABEL_FILES:
                raise ValueError(f'NYUDMTDataset has no label files for task {task!r}; its '
                                 f'tasks are {list(LABEL_FILES)}')
            directory, ext = LABEL_FILES[task]
            label_paths[task] = require(osp.join(root, directory, img_id + ext),
                                        f'{task} label')
        return dict(
            img_path=require(osp.join(root, 'images', f'{img_id}.jpg'), 'image'),
            img_id=img_id,
            tasks=self.tasks,
            label_paths=label_paths)
