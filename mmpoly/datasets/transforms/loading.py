"""Reading the PASCAL_MT task labels (formats: shared/spec/benchmark.md).

Every reader checks what it reads and raises ``ValueError`` / ``FileNotFoundError`` naming
the file, so a corrupt dataset fails loudly instead of training on wrong labels.
"""
import os.path as osp
import warnings
from functools import lru_cache
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
import scipy.io as sio
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS
from PIL import Image

from mmpoly.tasks import TaskSpec, task_spec_of
from mmpoly.evaluation.metrics.functional import normalize_normals
from .geometric import resize_warp, warp_label

# VOC class id of 'person' in the Pascal-Part annotations (human_parts/<id>.mat).
PERSON_CLASS = 15

# The 24 Pascal-Part person part names -> our 7 classes (0 = background).
PART_NAME_TO_CLASS = {
    **dict.fromkeys(('hair', 'head', 'lear', 'lebrow', 'leye', 'mouth', 'nose', 'rear',
                     'rebrow', 'reye'), 1),
    **dict.fromkeys(('neck', 'torso'), 2),
    **dict.fromkeys(('luarm', 'ruarm'), 3),
    **dict.fromkeys(('llarm', 'rlarm', 'lhand', 'rhand'), 4),
    **dict.fromkeys(('luleg', 'ruleg'), 5),
    **dict.fromkeys(('llleg', 'rlleg', 'lfoot', 'rfoot'), 6),
}

NORMALS_VALID_IDS_FILE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'data',
    'nyu_context_classes.txt')


@lru_cache()
def normals_valid_ids() -> np.ndarray:
    """The PASCAL-Context ``LabelMap`` ids whose normals are valid (see the data file)."""
    with open(NORMALS_VALID_IDS_FILE) as f:
        return np.array([int(line) for line in f if line.strip() and line[0] != '#'])


def _check_exists(path: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f'label file not found: {path}')


def read_png(path: str) -> np.ndarray:
    """Read a PNG as stored: palette indices stay indices, RGB stays in RGB order."""
    _check_exists(path)
    try:
        with Image.open(path) as img:
            return np.array(img)
    except (OSError, ValueError) as e:
        raise ValueError(f'cannot read image file {path}: {e}') from e


def read_mat(path: str, key: str) -> np.ndarray:
    """Read the variable ``key`` of a MATLAB file."""
    _check_exists(path)
    try:
        mat = sio.loadmat(path)
    except Exception as e:  # scipy raises several types for a corrupt file
        raise ValueError(f'cannot read MATLAB file {path}: {e}') from e
    if key not in mat:
        raise ValueError(f'MATLAB file {path} has no variable {key!r}')
    return mat[key]


def load_class_map(path: str, num_classes: int) -> np.ndarray:
    """A uint8 HxW class map with values in ``0..num_classes-1`` or 255 (ignore)."""
    label = read_png(path)
    if label.ndim != 2:
        raise ValueError(f'class map {path} must be single-channel, got shape {label.shape}')
    bad = np.unique(label[(label >= num_classes) & (label != 255)])
    if bad.size:
        raise ValueError(f'class map {path} has values {bad.tolist()} outside '
                         f'0..{num_classes - 1} and 255')
    return label.astype(np.uint8)


def load_saliency(path: str) -> np.ndarray:
    """A uint8 HxW map: 1 where the gray value v has v / 255 > 0.5, else 0."""
    sal = read_png(path)
    if sal.ndim != 2 or sal.dtype != np.uint8:
        raise ValueError(f'saliency map {path} must be 8-bit gray, got {sal.dtype} '
                         f'of shape {sal.shape}')
    if sal.max(initial=0) == 1:  # values only {0, 1}: a 0/1 map where 0/255 is expected
        raise ValueError(f'saliency map {path} holds only the values 0 and 1, but saliency '
                         'maps are stored as 0..255 (salient > 127): read as it is, every '
                         'pixel would be background. Save it as 0/255 (multiply by 255)')
    return (sal > 127).astype(np.uint8)


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


def check_binary_edges(edge: np.ndarray, path: str) -> np.ndarray:
    """An edge map as uint8 0/1: only the values 0 and 1 are accepted (and 255 = ignore)."""
    if edge.ndim == 3 and edge.shape[2] == 1:
        edge = edge[..., 0]
    if edge.ndim != 2:
        raise ValueError(f'edge map {path} must be HxW, got shape {edge.shape}')
    values = np.unique(edge)
    bad = values[~np.isin(values, (0, 1, 255))]
    if bad.size:
        raise ValueError(f'edge map {path} is not binary: it holds the values '
                         f'{bad[:5].tolist()} besides 0 and 1 (edges are stored as 0 = no '
                         'edge, 1 = edge)')
    return edge.astype(np.uint8)


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


_RESIZED_WARNED = set()


def _warn_resized(path: str, label_shape, image_shape) -> None:
    """Warn once per file (per process) that a label map is resized to its image."""
    if path in _RESIZED_WARNED:
        return
    _RESIZED_WARNED.add(path)
    warnings.warn(f'label map {path} is {label_shape[0]}x{label_shape[1]}, its image '
                  f'{image_shape[0]}x{image_shape[1]}: resized to the image (as the reference '
                  'loader does); check the file if this is unexpected', stacklevel=2)


@TRANSFORMS.register_module()
class LoadMultiTaskAnnotations(BaseTransform):
    """Load the label of every task of a sample.

    Labels are loaded at the size of the original image (``ori_shape``); a label stored at
    another size is resized to it, as the reference loader does (nearest for class maps
    and saliency, bilinear and re-normalisation for normals).

    Required keys: ``tasks``, ``label_paths`` (task -> path), ``ori_shape``,
    ``context_label_path`` (normals), ``has_human_parts`` (optional: False skips reading a
    human-parts file known to hold no person).

    Added keys: ``gt_<task>`` for every task (semseg, human_parts: uint8 class maps with
    255 = ignore; sal: uint8 0/1; normals: float32 HxWx3 unit vectors, zero = invalid) and
    ``task_fields`` (the list of those keys).
    """

    def transform(self, results: dict) -> dict:
        shape = tuple(results['ori_shape'][:2])
        results['task_fields'] = []
        for task in results['tasks']:
            key = f'gt_{task}'
            label = self._load(task, results, shape)
            if label.shape[:2] != shape:
                _warn_resized(results['label_paths'][task], label.shape[:2], shape)
                label = warp_label(label, key, resize_warp(shape), task_spec_of(results, task))
            results[key] = label
            results['task_fields'].append(key)
        return results

    @staticmethod
    def _load(task: str, results: dict, shape: Tuple[int, int]) -> np.ndarray:
        spec = task_spec_of(results, task)
        reader = LABEL_READERS.get(spec.label_format)
        if reader is None:
            raise ValueError(f'no label reader {spec.label_format!r} for task {task!r}; '
                             f'known: {sorted(LABEL_READERS)} (register_label_reader)')
        return reader(results['label_paths'][task], results, spec, shape)


# label_format -> reader(path, results, spec, shape) -> label array at its stored size
LabelReader = Callable[[str, dict, TaskSpec, Tuple[int, int]], np.ndarray]
LABEL_READERS: Dict[str, LabelReader] = {}


def register_label_reader(name: str):
    """Register a label reader under ``name`` (a ``TaskSpec.label_format``)."""

    def register(fn: LabelReader) -> LabelReader:
        LABEL_READERS[name] = fn
        return fn

    return register


@register_label_reader('class_png')
def _read_class_png(path, results, spec, shape):
    return load_class_map(path, spec.num_outputs)


@register_label_reader('human_parts_mat')
def _read_human_parts(path, results, spec, shape):
    if not results.get('has_human_parts', True):
        return np.full(shape, spec.ignore_index, dtype=np.uint8)
    return load_human_parts(path, shape)


@register_label_reader('binary_png')
def _read_binary_png(path, results, spec, shape):
    return load_saliency(path)


@register_label_reader('normals_png')
def _read_normals_png(path, results, spec, shape):
    return load_normals(path, results['context_label_path'])


@register_label_reader('edge_label_map_mat')
def _read_context_edges(path, results, spec, shape):
    return load_context_edges(path)


def load_npy(path: str) -> np.ndarray:
    """A ``.npy`` array (never a pickle)."""
    _check_exists(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f'cannot read numpy file {path}: {e}') from e


@register_label_reader('npy')
def _read_npy(path, results, spec, shape):
    """A ``.npy`` array: HxW (one channel) or HxWxC, as its kind's ``label_dtype`` (float32
    for regression and normals, else uint8)."""
    return load_npy(path).astype(spec.task_kind.label_dtype)
