"""PASCAL-Context multi-task (PASCAL_MT): the dataset, and the readers of its labels that no
other dataset shares (human parts from Pascal-Part annotations, normals masked by the
PASCAL-Context LabelMap, edges of the LabelMap), registered as ``label_format`` names."""
import json
import logging
import os
import os.path as osp
import tempfile
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from mmpoly.evaluation.metrics.functional import normalize_normals
from .base_multi_task import MultiTaskDataset
from .pascal_context_classes import (HUMAN_PARTS_CLASSES, HUMAN_PARTS_PALETTE,
                                     PART_NAME_TO_CLASS, PERSON_CLASS, VOC_CLASSES,
                                     VOC_PALETTE)
from .synthetic import make_synthetic_pascal_mt, prepare_synthetic_root
from .transforms.loading import read_mat, read_png, register_label_reader

# The four tasks of the paper, the dataset's default
PASCAL_TASKS = ('semseg', 'human_parts', 'sal', 'normals')
# Their specs and 'edge' (``mmpoly.tasks.TaskSpec`` fields). The losses are the reference's
# weights.
PASCAL_TASK_SPECS = dict(
    semseg=dict(kind='class', num_outputs=21, label_format='class_png', ignore_index=255,
                classes=VOC_CLASSES, palette=VOC_PALETTE,
                loss=dict(type='PixelCrossEntropyLoss', loss_weight=1.0)),
    human_parts=dict(kind='class', num_outputs=7, label_format='human_parts_mat',
                     ignore_index=255, classes=HUMAN_PARTS_CLASSES,
                     palette=HUMAN_PARTS_PALETTE,
                     skip_single_value_labels=True,
                     loss=dict(type='PixelCrossEntropyLoss', loss_weight=2.0)),
    sal=dict(kind='binary', num_outputs=1, label_format='binary_png', ignore_index=255,
             loss=dict(type='BalancedBCELoss', loss_weight=5.0)),
    # Normals use the zero vector for "no label": it is never a valid unit normal.
    normals=dict(kind='normal', num_outputs=3, label_format='normals_png', ignore_index=0,
                 loss=dict(type='NormalL1Loss', loss_weight=10.0)),
    # The fifth task, not in the default four (``tasks`` / ``model.tasks`` pick it): edges of
    # the PASCAL-Context LabelMap (the reference's ``_load_edge``), its loss as there
    # (balanced BCE, positive weight 0.95, task weight 50).
    edge=dict(kind='edge', num_outputs=1, label_format='edge_label_map_mat', ignore_index=255,
              loss=dict(type='BalancedBCELoss', pos_weight=0.95, loss_weight=50.0)),
)


# ---------------------------------------------------------------- label readers
NORMALS_VALID_IDS_FILE = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'nyu_context_classes.txt')


@lru_cache()
def normals_valid_ids() -> np.ndarray:
    """The PASCAL-Context ``LabelMap`` ids whose normals are valid (see the data file)."""
    with open(NORMALS_VALID_IDS_FILE) as f:
        return np.array([int(line) for line in f if line.strip() and line[0] != '#'])


def load_normals(path: str, context_label_path: str) -> np.ndarray:
    """Float32 HxWx3 unit normals, zero where the PASCAL-Context class has no valid normal.

    The PNG stores ``255 * (n + 1) / 2`` with (x, y, z) in its (R, G, B) channels; PIL keeps
    that order (cv2 would give BGR). The 8-bit encoding is not exactly unit length, so the
    vectors are re-normalised.
    """
    encoded = read_png(path)
    if encoded.ndim != 3 or encoded.shape[2] != 3 or encoded.dtype != np.uint8:
        raise ValueError(f'normals map {path} must be a 3-channel 8-bit PNG, got '
                         f'{encoded.dtype} of shape {encoded.shape}')
    label_map = read_mat(context_label_path, 'LabelMap')
    if label_map.shape != encoded.shape[:2]:
        raise ValueError(f'LabelMap of {context_label_path} has shape {label_map.shape}, '
                         f'the normals {path} have {encoded.shape[:2]}')
    normals = 2.0 * encoded.astype(np.float32) / 255.0 - 1.0
    return normalize_normals(normals, axis=2, valid=np.isin(label_map, normals_valid_ids()),
                             eps=1e-6)


def edges_of_label_map(label_map: np.ndarray) -> np.ndarray:
    """The reference's PASCAL-Context edge rule: where the 3x3 Laplacian of the LabelMap is
    non-zero (a pixel whose 4-neighbours are not all of its class, borders reflected as
    cv2 does), thinned to one pixel (``skimage.morphology.thin``): uint8 0/1."""
    from skimage.morphology import thin  # only the edge task needs scikit-image
    laplacian = cv2.Laplacian(label_map.astype(np.float64), cv2.CV_64F)
    return thin(np.abs(laplacian) > 0).astype(np.uint8)


def load_context_edges(path: str) -> np.ndarray:
    """PASCAL-Context edges (uint8 0/1) from the ``LabelMap`` of ``pascal-context/trainval``."""
    label_map = read_mat(path, 'LabelMap')
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f'LabelMap of {path} must be a 2-D integer map, got '
                         f'{label_map.dtype} of shape {label_map.shape}')
    return edges_of_label_map(label_map)


def _part_objects(path: str) -> np.ndarray:
    """The object list ``anno[0][0][1][0]`` of a Pascal-Part annotation."""
    anno = read_mat(path, 'anno')
    try:
        return anno[0][0][1][0]
    except (IndexError, TypeError) as e:
        raise ValueError(f'human parts file {path} does not have the Pascal-Part '
                         f'layout anno[0][0][1][0]: {e}') from e


def read_object_classes(path: str) -> List[int]:
    """The class id of every object of a Pascal-Part annotation, -1 for an empty mask.

    This is one entry of the ``ImageSets/Parts/<split>.txt`` cache (as in the reference,
    whose area threshold is 0).
    """
    return [int(obj[1][0][0]) if np.any(obj[2]) else -1 for obj in _part_objects(path)]


def load_human_parts(path: str, shape: Tuple[int, int]) -> np.ndarray:
    """A uint8 HxW part map painting the parts of every person into one map.

    An image without a person with parts (or whose parts cover no pixel) has no
    human-parts label: the map is all 255 (of ``shape``), ignored by loss and metric.
    """
    target = None
    for obj in _part_objects(path):
        parts = obj[3]
        if int(obj[1][0][0]) != PERSON_CLASS or len(parts) == 0:
            continue
        if target is None:
            target = np.zeros(obj[2].shape, dtype=np.uint8)
        for part in parts[0]:
            name = str(part[0][0])
            if name not in PART_NAME_TO_CLASS:
                raise ValueError(f'human parts file {path}: unknown part name {name!r}')
            mask = part[1].astype(bool)
            if mask.shape != target.shape:
                raise ValueError(f'human parts file {path}: part {name!r} has shape '
                                 f'{mask.shape}, the person mask {target.shape}')
            target[mask] = PART_NAME_TO_CLASS[name]
    if target is None or not target.any():
        return np.full(shape, 255, dtype=np.uint8)
    return target


@register_label_reader('human_parts_mat')
def _read_human_parts(path, results, spec, shape):
    if not results.get('has_human_parts', True):
        return np.full(shape, spec.ignore_index, dtype=np.uint8)
    return load_human_parts(path, shape)


@register_label_reader('normals_png')
def _read_normals_png(path, results, spec, shape):
    return load_normals(path, results['context_label_path'])


@register_label_reader('edge_label_map_mat')
def _read_context_edges(path, results, spec, shape):
    return load_context_edges(path)


# ---------------------------------------------------------------- the dataset
def _require(path: str, what: str) -> str:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    return path


@DATASETS.register_module()
class PascalContextMTDataset(MultiTaskDataset):
    """PASCAL-Context multi-task (PASCAL_MT): semseg, human parts, saliency, normals, and
    on request (``tasks``) edges.

    Reads the layout of shared/spec/benchmark.md. Every file a sample needs is checked when
    the data list is built; a missing one raises ``FileNotFoundError`` naming it.

    Human parts follow the reference: the ``ImageSets/Parts/<split>.txt`` cache (image id ->
    class ids of the annotated objects, -1 for an empty mask) says which images contain a
    person; it is built from ``human_parts/`` when missing or stale (written if the
    directory is writable, else kept in memory). An image without a person with parts has
    an all-255 human-parts label (ignored by the loss, skipped by the metric); unlike the
    reference it is kept even when human_parts is the only task, since batching works.

    Args:
        data_root (str): the ``PASCAL_MT`` directory.
        split (str): reads ``ImageSets/Context/{split}.txt``. Default: 'train'.
        tasks (Sequence[str]): any subset of ``PASCAL_TASKS`` and 'edge' (the LabelMap's
            edges, as the reference's ``_load_edge``). Default: the four of
            ``PASCAL_TASKS``.
        pipeline (list): data transforms. Default: [].
        test_mode (bool): as in ``BaseDataset``. Default: False.
        auto_generate (dict, optional): when given and ``data_root`` does not exist, first
            generate a synthetic dataset there with
            ``make_synthetic_pascal_mt(data_root, **auto_generate)``; with a ``root`` key
            (the synthetic configs give their default root), only when ``data_root`` is that
            root, so a mistyped path is an error, not a new dataset. Default: None.
        metainfo (dict, optional): entries that override ``METAINFO``.
        **kwargs: the other ``BaseDataset`` arguments (``lazy_init``, ``serialize_data``,
            ``indices``, ``max_refetch``, ...).

    Each data info has ``img_path``, ``img_id``, ``tasks``, ``label_paths`` (task -> path),
    and, with those tasks, ``context_label_path`` (the LabelMap of the normals' validity
    mask) and ``has_human_parts`` (the image contains a person, per the Parts cache).
    """

    METAINFO = dict(
        tasks=PASCAL_TASKS,
        task_specs=PASCAL_TASK_SPECS,
        semseg_classes=VOC_CLASSES,
        semseg_palette=VOC_PALETTE,
        human_parts_classes=HUMAN_PARTS_CLASSES,
        human_parts_palette=HUMAN_PARTS_PALETTE,
        # mmseg's visualizer reads 'classes' and 'palette': the semseg ones.
        classes=VOC_CLASSES,
        palette=VOC_PALETTE)

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 tasks: Sequence[str] = PASCAL_TASKS,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 auto_generate: Optional[dict] = None,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        self.split = split
        if auto_generate is not None:
            prepare_synthetic_root(data_root, auto_generate, make_synthetic_pascal_mt,
                                   'PASCAL_MT')
        super().__init__(
            tasks=tasks,
            data_root=data_root,
            metainfo=metainfo,
            pipeline=list(pipeline),
            test_mode=test_mode,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        img_ids = self.read_split(
            osp.join(self.data_root, 'ImageSets', 'Context', f'{self.split}.txt'),
            'tools/prepare_data.py pascal_mt fetches PASCAL_MT; auto_generate=dict() '
            'generates a synthetic one there')
        data_list = [self._data_info(img_id) for img_id in img_ids]
        if 'human_parts' in self.tasks:
            objects = self._parts_cache(data_list)
            for info in data_list:
                info['has_human_parts'] = PERSON_CLASS in objects[info['img_id']]
        return data_list

    def _data_info(self, img_id: str) -> dict:
        root = self.data_root
        info = dict(
            img_path=_require(osp.join(root, 'JPEGImages', f'{img_id}.jpg'), 'image'),
            img_id=img_id,
            tasks=self.tasks,
            label_paths={})
        paths = info['label_paths']
        if 'semseg' in self.tasks:
            voc = osp.join(root, 'semseg', 'VOC12', f'{img_id}.png')
            context = osp.join(root, 'semseg', 'pascal-context', f'{img_id}.png')
            if not osp.isfile(voc) and not osp.isfile(context):
                raise FileNotFoundError(
                    f'semseg label of {img_id} not found: neither {voc} nor {context}')
            paths['semseg'] = voc if osp.isfile(voc) else context
        if 'human_parts' in self.tasks:
            paths['human_parts'] = _require(
                osp.join(root, 'human_parts', f'{img_id}.mat'), 'human_parts label')
        if 'sal' in self.tasks:
            paths['sal'] = _require(
                osp.join(root, 'sal_distill', f'{img_id}.png'), 'sal label')
        if 'edge' in self.tasks:
            paths['edge'] = _require(
                osp.join(root, 'pascal-context', 'trainval', f'{img_id}.mat'),
                'PASCAL-Context LabelMap (edge label)')
        if 'normals' in self.tasks:
            paths['normals'] = _require(
                osp.join(root, 'normals_distill', f'{img_id}.png'), 'normals label')
            info['context_label_path'] = _require(
                osp.join(root, 'pascal-context', 'trainval', f'{img_id}.mat'),
                'PASCAL-Context LabelMap (normals validity)')
        return info

    def _parts_cache(self, data_list: List[dict]) -> Dict[str, List[int]]:
        """Image id -> object class ids, read from or written to the Parts cache."""
        cache_file = osp.join(self.data_root, 'ImageSets', 'Parts', f'{self.split}.txt')
        img_ids = [info['img_id'] for info in data_list]
        if osp.isfile(cache_file):
            try:
                with open(cache_file) as f:
                    objects = json.load(f)
                if set(img_ids) <= set(objects):
                    return objects
            except ValueError:
                pass
            print_log(f'{cache_file} is stale or corrupt; rebuilding it', 'current',
                      level=logging.WARNING)
        print_log(f'building the human-parts cache of {len(img_ids)} images (only once)',
                  'current')
        objects = {
            info['img_id']: read_object_classes(info['label_paths']['human_parts'])
            for info in data_list
        }
        # Write a temporary file and rename it, so concurrent ranks never read half a file.
        try:
            os.makedirs(osp.dirname(cache_file), exist_ok=True)
            with tempfile.NamedTemporaryFile(
                    'w', dir=osp.dirname(cache_file), suffix='.tmp', delete=False) as f:
                json.dump(objects, f)
            os.chmod(f.name, 0o644)  # NamedTemporaryFile makes it private
            os.replace(f.name, cache_file)
        except OSError as e:
            print_log(f'cannot write {cache_file} ({e}); keeping the cache in memory',
                      'current', level=logging.WARNING)
        return objects
