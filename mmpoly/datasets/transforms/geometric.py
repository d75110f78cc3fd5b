"""Geometric transforms that move the image and every task label together.

Each transform acts on ``results['img']`` (when present) and on every key listed in
``results['task_fields']`` (``gt_<task>``). How a label is moved depends on its task
kind (``results['task_specs']``; ``warp_label``, ``flip_label``, ``rotate_label`` of
``mmpoly.task_kinds``):

- class maps, binary maps, edge maps and regression maps (depth): nearest interpolation
  (every kind but 'normal'), the task's ``pad_value`` outside the image;
- normals: bilinear interpolation, then re-normalisation; a validity mask moved with nearest
  interpolation keeps invalid (zero) pixels invalid. The vectors are turned with the geometry:
  a horizontal flip negates x, a rotation turns (x, y) by the same angle.

Normals convention (as the reference, Multi-Task-Learning-PyTorch / ASTMT): channels (x, y, z)
with x pointing right and y pointing down in the image.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from mmpoly.task_kinds import Warp  # warp(array, cv2 interpolation flag, fill value)
from mmpoly.tasks import TaskSpec, task_spec_of


def _task_fields(results: dict) -> list:
    """The label keys of ``results`` that are present (a test pipeline may lack them)."""
    return [key for key in results.get('task_fields', []) if key in results]


def _spec(results: dict, key: str) -> TaskSpec:
    return task_spec_of(results, key[len('gt_'):])


def warp_label(label: np.ndarray, key: str, warp: Warp, spec: TaskSpec) -> np.ndarray:
    """Move one task label with ``warp`` using the interpolation its task's kind needs
    (``TaskKind.warp_label``)."""
    return spec.task_kind.warp_label(label, warp, spec)


def resize_warp(size_hw: Tuple[int, int]) -> Warp:
    """A warp that resizes to ``size_hw`` (fill values are unused by a resize)."""
    h, w = size_hw
    return lambda arr, interp, fill: cv2.resize(arr, (w, h), interpolation=interp)


def _affine_warp(matrix: np.ndarray, size_hw: Tuple[int, int]) -> Warp:
    h, w = size_hw

    def warp(arr, interp, fill):
        return cv2.warpAffine(
            arr, matrix, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT,
            borderValue=fill)

    return warp


def _apply(results: dict, warp: Warp) -> None:
    """Move the image (bilinear, filled with 0) and every label present with ``warp``."""
    if 'img' in results:
        results['img'] = warp(results['img'], cv2.INTER_LINEAR, 0)
        results['img_shape'] = results['img'].shape[:2]
    for key in _task_fields(results):
        results[key] = warp_label(results[key], key, warp, _spec(results, key))


def _update_scale_factor(results: dict, w_scale: float, h_scale: float) -> None:
    # scale_factor (w, h), as mmcv: the content's scale relative to the loaded image,
    # accumulated over every transform that scales it.
    w0, h0 = results.get('scale_factor', (1.0, 1.0))
    results['scale_factor'] = (w0 * w_scale, h0 * h_scale)


def _current_shape(results: dict) -> Tuple[int, int]:
    if 'img' in results:
        return results['img'].shape[:2]
    return results[_task_fields(results)[0]].shape[:2]


@TRANSFORMS.register_module()
class MTRandomFlip(BaseTransform):
    """Flip the image and all task labels horizontally with probability ``prob``.

    The normal's x component is negated, as the surface now faces the other way.

    Args:
        prob (float): flip probability. Default: 0.5.

    Added keys: ``flip`` (bool), ``flip_direction`` ('horizontal' or None).
    """

    def __init__(self, prob: float = 0.5):
        assert 0 <= prob <= 1
        self.prob = prob

    def transform(self, results: dict) -> dict:
        flip = bool(np.random.rand() < self.prob)
        if flip:
            if 'img' in results:
                results['img'] = np.ascontiguousarray(results['img'][:, ::-1])
            for key in _task_fields(results):
                label = np.ascontiguousarray(results[key][:, ::-1])
                results[key] = _spec(results, key).task_kind.flip_label(label)
        results['flip'] = flip
        results['flip_direction'] = 'horizontal' if flip else None
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class MTRandomScale(BaseTransform):
    """Scale the image and all task labels by a random factor.

    With ``keep_size=True`` (the reference's ScaleNRotate) the content is zoomed about the
    image centre and the canvas keeps its size: zooming out leaves a border (image 0, labels
    their pad value); this is what a following fixed-size ``MTResize`` does not undo. With
    ``keep_size=False`` the canvas itself is resized (for crop-based pipelines).

    Args:
        scale_range (tuple[float, float]): the factor is drawn uniformly from it.
            Default: (0.75, 1.25).
        keep_size (bool): zoom within the canvas instead of resizing it. Default: True.
        scale_choices (Sequence[float], optional): draw the factor from these values
            (equal odds) instead of ``scale_range`` (the reference's NYUD recipe: 1.0, 1.2,
            1.5). Default: None.
        divide_by_scale (Sequence[str]): tasks whose label values are divided by the factor
            (depth: zooming in by s brings the scene s times closer, as the reference's
            ScaleNRotate does; invalid zeros stay zero). Default: ().

    Added keys: ``scale_factor`` (w, h; accumulated), ``img_shape``.
    """

    def __init__(self,
                 scale_range: Tuple[float, float] = (0.75, 1.25),
                 keep_size: bool = True,
                 scale_choices: Optional[Sequence[float]] = None,
                 divide_by_scale: Sequence[str] = ()):
        assert 0 < scale_range[0] <= scale_range[1]
        self.scale_range = tuple(scale_range)
        self.keep_size = keep_size
        if scale_choices is not None:
            scale_choices = tuple(float(s) for s in scale_choices)
            if not scale_choices or min(scale_choices) <= 0:
                raise ValueError(f'MTRandomScale: scale_choices must be positive numbers, '
                                 f'got {scale_choices}')
        self.scale_choices = scale_choices
        self.divide_by_scale = tuple(divide_by_scale)

    def transform(self, results: dict) -> dict:
        if self.scale_choices is not None:
            scale = self.scale_choices[np.random.randint(len(self.scale_choices))]
        else:
            scale = float(np.random.uniform(*self.scale_range))
        h, w = _current_shape(results)
        if self.keep_size:
            # (w - 1) / 2 is the centre of the pixel grid: the zoom is symmetric.
            matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0, scale)
            _apply(results, _affine_warp(matrix, (h, w)))
            _update_scale_factor(results, scale, scale)
        else:
            new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
            _apply(results, resize_warp((new_h, new_w)))
            _update_scale_factor(results, new_w / w, new_h / h)
        for task in self.divide_by_scale:
            key = f'gt_{task}'
            if key in results:
                results[key] = (results[key] / scale).astype(results[key].dtype)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(scale_range={self.scale_range}, '
                f'keep_size={self.keep_size}, scale_choices={self.scale_choices}, '
                f'divide_by_scale={self.divide_by_scale})')


@TRANSFORMS.register_module()
class MTRandomRotate(BaseTransform):
    """Rotate the image and all task labels about the image centre by a random angle.

    A positive angle turns the content counter-clockwise on screen (cv2's convention). The
    normal's in-plane components turn with it, as the reference's ScaleNRotate does:
    ``x' = x cos(a) + y sin(a)``, ``y' = -x sin(a) + y cos(a)`` (x right, y down), so a
    normal pointing right points up after a 90-degree rotation. The canvas keeps its size;
    corners are filled with 0 (image) and the labels' pad values.

    Args:
        max_degree (float | tuple[float, float]): the angle is drawn uniformly from
            ``(-max_degree, max_degree)``, or from ``(min, max)`` when a tuple. Default: 20.

    Added keys: ``rotate_degree``, ``img_shape``.
    """

    def __init__(self, max_degree: Union[float, Tuple[float, float]] = 20):
        if isinstance(max_degree, (int, float)):
            assert max_degree >= 0
            self.degree_range = (-float(max_degree), float(max_degree))
        else:
            assert max_degree[0] <= max_degree[1]
            self.degree_range = tuple(map(float, max_degree))

    def transform(self, results: dict) -> dict:
        degree = float(np.random.uniform(*self.degree_range))
        h, w = _current_shape(results)
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degree, 1.0)
        _apply(results, _affine_warp(matrix, (h, w)))
        cos, sin = math.cos(math.radians(degree)), math.sin(math.radians(degree))
        for key in _task_fields(results):
            _spec(results, key).task_kind.rotate_label(results[key], cos, sin)
        results['rotate_degree'] = degree
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(degree_range={self.degree_range})'


@TRANSFORMS.register_module()
class MTResize(BaseTransform):
    """Resize the image and the task labels present to an exact size.

    Only the keys present are resized, so a test pipeline can resize the image before
    loading the labels and keep the labels at the original size (as mmseg does). The
    normals are re-normalised but not re-oriented by an aspect-ratio change, as in the
    reference.

    Args:
        scale (tuple[int, int]): output (width, height), mmcv's ``Resize`` order.
            Default: (512, 512).

    Added keys: ``img_shape``, ``scale_factor`` (w, h; accumulated).
    """

    def __init__(self, scale: Tuple[int, int] = (512, 512)):
        self.scale = tuple(scale)

    def transform(self, results: dict) -> dict:
        w, h = self.scale
        old_h, old_w = _current_shape(results)
        _apply(results, resize_warp((h, w)))
        _update_scale_factor(results, w / old_w, h / old_h)
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(scale={self.scale})'


@TRANSFORMS.register_module()
class MTRandomCrop(BaseTransform):
    """Crop a random window from the image and all task labels.

    Args:
        crop_size (tuple[int, int]): (height, width), mmseg's ``RandomCrop`` order. A side
            shorter than the crop is kept whole (pad afterwards with ``MTPad``).

    Added keys: ``img_shape``, ``crop_bbox`` (x1, y1, x2, y2).
    """

    def __init__(self, crop_size: Tuple[int, int]):
        assert crop_size[0] > 0 and crop_size[1] > 0
        self.crop_size = tuple(crop_size)

    def transform(self, results: dict) -> dict:
        h, w = _current_shape(results)
        crop_h, crop_w = min(h, self.crop_size[0]), min(w, self.crop_size[1])
        y1 = np.random.randint(0, h - crop_h + 1)
        x1 = np.random.randint(0, w - crop_w + 1)
        window = (slice(y1, y1 + crop_h), slice(x1, x1 + crop_w))
        if 'img' in results:
            results['img'] = results['img'][window]
            results['img_shape'] = results['img'].shape[:2]
        for key in _task_fields(results):
            results[key] = results[key][window]
        results['crop_bbox'] = (x1, y1, x1 + crop_w, y1 + crop_h)
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(crop_size={self.crop_size})'


@TRANSFORMS.register_module()
class MTPad(BaseTransform):
    """Pad the image (with 0) and every task label (with its pad value) at the bottom
    and right to a fixed size.

    Args:
        size (tuple[int, int]): (height, width), the order of ``crop_size``.

    Added keys: ``pad_shape``. ``img_shape`` keeps the unpadded size, as in mmcv.
    """

    def __init__(self, size: Tuple[int, int]):
        self.size = tuple(size)

    def transform(self, results: dict) -> dict:
        h, w = _current_shape(results)
        if h > self.size[0] or w > self.size[1]:
            raise ValueError(f'MTPad: image of size {(h, w)} is larger than the pad size '
                             f'{self.size}; crop it first')
        pad = ((0, self.size[0] - h), (0, self.size[1] - w))
        if 'img' in results:
            img = results['img']
            results['img'] = np.pad(img, pad + ((0, 0), ) * (img.ndim - 2))
        for key in _task_fields(results):
            label = results[key]
            results[key] = np.pad(label, pad + ((0, 0), ) * (label.ndim - 2),
                                  constant_values=_spec(results, key).pad_value)
        results['pad_shape'] = self.size
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(size={self.size})'
