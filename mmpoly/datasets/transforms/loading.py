"""Loading task labels: the registry of label readers (``TaskSpec.label_format`` -> reader),
the generic readers ('class_png', 'binary_png', 'npy') and the transform that calls them. A
dataset's own formats are registered beside it (``pascal_context_mt.py``, ``nyud_mt.py``).

Every reader checks what it reads and raises ``ValueError`` / ``FileNotFoundError`` naming
the file, so a corrupt dataset fails loudly instead of training on wrong labels.
"""
import os.path as osp
import warnings
from typing import Callable, Dict, Tuple

import numpy as np
import scipy.io as sio
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS
from PIL import Image

from mmpoly.tasks import TaskSpec, task_spec_of
from .geometric import resize_warp, warp_label


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


@register_label_reader('binary_png')
def _read_binary_png(path, results, spec, shape):
    return load_saliency(path)


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
