"""A small synthetic dataset in exactly the PASCAL_MT on-disk format.

Scenes are a tilted ground plane with a few objects; every label is derived from the same
scene, so all four tasks are learnable:

- semseg: each class has its own shape and colour (VOC-style 255 band on object borders);
- human_parts: persons (class 15) are stick figures whose parts have fixed colours; some
  persons carry no part annotation and some images have no person;
- sal: the largest object, blurred like a distilled map;
- normals: from a height map (objects are bumps on the plane), stored as 255 * (n + 1) / 2;
  the LabelMap gives the sky and some object classes a class without valid normals.

Some semseg maps are written to ``semseg/pascal-context/`` to exercise the fallback path.
"""
import io
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
import scipy.io as sio
from PIL import Image

from .pascal_context_classes import PERSON_CLASS, VOC_CLASSES

# PASCAL-Context LabelMap id of each VOC class (from the reference loader).
VOC_TO_CONTEXT = (0, 2, 23, 25, 31, 34, 45, 59, 65, 72, 98, 397, 113, 207, 258, 284, 308, 347,
                  368, 416, 427)
SKY_ID, GROUND_ID = 360, 158  # 'sky' has no valid normal, 'floor' has

# Fixed colours (RGB) of the person's clothes/skin, so parts are learnable by colour too.
SKIN, SHIRT, TROUSERS = (224, 172, 140), (40, 90, 200), (60, 60, 60)

# (part names, colour, drawer) of the stick figure; coordinates are in units of the
# person's height h from its top centre (x0, y0).
PERSON_PARTS = (
    (('hair', 'head'), SKIN, ('circle', (0.0, 0.09), 0.09)),
    (('neck', ), SKIN, ('line', (0.0, 0.17), (0.0, 0.21), 0.05)),
    (('torso', ), SHIRT, ('line', (0.0, 0.24), (0.0, 0.5), 0.16)),
    (('luarm', ), SHIRT, ('line', (-0.1, 0.24), (-0.17, 0.38), 0.05)),
    (('ruarm', ), SHIRT, ('line', (0.1, 0.24), (0.17, 0.38), 0.05)),
    (('llarm', 'lhand'), SKIN, ('line', (-0.17, 0.38), (-0.2, 0.52), 0.04)),
    (('rlarm', 'rhand'), SKIN, ('line', (0.17, 0.38), (0.2, 0.52), 0.04)),
    (('luleg', ), TROUSERS, ('line', (-0.05, 0.52), (-0.07, 0.75), 0.07)),
    (('ruleg', ), TROUSERS, ('line', (0.05, 0.52), (0.07, 0.75), 0.07)),
    (('llleg', 'lfoot'), TROUSERS, ('line', (-0.07, 0.75), (-0.08, 0.98), 0.06)),
    (('rlleg', 'rfoot'), TROUSERS, ('line', (0.07, 0.75), (0.08, 0.98), 0.06)),
)


def _class_colour(cls: int) -> np.ndarray:
    """A distinct saturated RGB colour per class."""
    hsv = np.uint8([[[(cls * 37) % 180, 200, 110 + 120 * (cls % 2)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _shape_mask(cls: int, size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The mask of one object; its shape (ellipse, box, triangle, diamond) tells its class."""
    h, w = size
    mask = np.zeros(size, np.uint8)
    ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.1, 0.25) * w
    cy, cx = rng.uniform(0.35, 0.85) * h, rng.uniform(0.15, 0.85) * w
    kind = cls % 4
    if kind == 0:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, 1, -1)
    else:
        corners = {
            1: [(-rx, -ry), (rx, -ry), (rx, ry), (-rx, ry)],
            2: [(0, -ry), (rx, ry), (-rx, ry)],
            3: [(0, -ry), (rx, 0), (0, ry), (-rx, 0)],
        }[kind]
        pts = np.array([(cx + dx, cy + dy) for dx, dy in corners], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask


def _person_parts(size: Tuple[int, int], rng: np.random.Generator) -> List[tuple]:
    """(part name, colour, mask) of one stick figure; sub-part names split each limb."""
    h, w = size
    ph = rng.uniform(0.6, 0.9) * h
    x0, y0 = rng.uniform(0.2, 0.8) * w, rng.uniform(0.02, 0.1) * h

    def point(p):
        return int(round(x0 + p[0] * ph)), int(round(y0 + p[1] * ph))

    parts = []
    for names, colour, (kind, *geom) in PERSON_PARTS:
        mask = np.zeros(size, np.uint8)
        if kind == 'circle':
            cv2.circle(mask, point(geom[0]), max(1, int(geom[1] * ph)), 1, -1)
        else:
            cv2.line(mask, point(geom[0]), point(geom[1]), 1, max(1, int(geom[2] * ph)))
        if not mask.any():  # a limb outside the image
            continue
        if len(names) == 2:
            # The top third of the head is hair; the last quarter of a limb its hand / foot.
            ys = np.nonzero(mask)[0]
            top, bottom = ys.min(), ys.max()
            cut = top + (bottom - top) // 3 if names[0] == 'hair' else \
                bottom - (bottom - top) // 4
            upper = mask * (np.arange(h)[:, None] < cut).astype(np.uint8)
            parts += [(names[0], colour, upper), (names[1], colour, mask - upper)]
        else:
            parts.append((names[0], colour, mask))
    return parts


def _normals_from_height(height: np.ndarray) -> np.ndarray:
    """Unit normals (x right, y down, z to the camera) of the surface z = height(y, x)."""
    dz_dy, dz_dx = np.gradient(height)
    normals = np.stack([-dz_dx, -dz_dy, np.ones_like(height)], axis=2)
    return normals / np.linalg.norm(normals, axis=2, keepdims=True)


def _objects_struct(objects: List[dict]) -> np.ndarray:
    """The Pascal-Part ``objects`` struct array: class, class_ind, mask, parts."""
    struct = np.empty((1, len(objects)),
                      dtype=[('class', 'O'), ('class_ind', 'O'), ('mask', 'O'), ('parts', 'O')])
    for j, obj in enumerate(objects):
        if obj['parts']:
            parts = np.empty((1, len(obj['parts'])), dtype=[('part_name', 'O'), ('mask', 'O')])
            for k, (name, mask) in enumerate(obj['parts']):
                parts[0, k] = (name, mask)
        else:
            parts = np.zeros((0, 0))  # MATLAB's [] for an object without parts
        struct[0, j] = (VOC_CLASSES[obj['cls']], obj['cls'], obj['mask'], parts)
    return struct


def _make_scene(size: Tuple[int, int], num_classes: int, rng: np.random.Generator) -> dict:
    """Render one image and all of its labels."""
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = int(rng.uniform(0.2, 0.4) * h)

    # Ground plane tilted towards the camera below the horizon, sky above.
    img = np.empty((h, w, 3), np.float32)
    img[:] = rng.uniform(90, 140, 3) + 20 * (rows / h)[..., None]
    img[:horizon] = (120, 170, 230)
    height = rng.uniform(0.2, 0.5) * rows + rng.uniform(-0.2, 0.2) * cols
    semseg = np.zeros(size, np.uint8)
    label_map = np.full(size, GROUND_ID, np.uint16)
    label_map[:horizon] = SKY_ID

    # Objects and persons in painting order (later ones occlude earlier ones).
    things = [c for c in range(1, num_classes) if c != PERSON_CLASS]
    objects = [dict(cls=int(rng.choice(things)), parts=[])
               for _ in range(rng.integers(1, 4))]
    if rng.random() < 0.5:
        objects.insert(int(rng.integers(0, len(objects) + 1)),
                       dict(cls=PERSON_CLASS, parts=[], annotated=rng.random() < 0.8))
    for j, obj in enumerate(objects):
        if obj['cls'] == PERSON_CLASS:
            drawn = _person_parts(size, rng)
            mask = np.any([m for _, _, m in drawn], axis=0).astype(np.uint8)
            for _, colour, m in drawn:
                img[m > 0] = colour
            obj['drawn_parts'] = [(name, m) for name, _, m in drawn]
        else:
            mask = _shape_mask(obj['cls'], size, rng)
            img[mask > 0] = _class_colour(obj['cls']) + rng.uniform(-15, 15, 3)
        # A bump proportional to the object's size, so each object has its own normals.
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        height = np.where(mask > 0, height + 2.0 * np.sqrt(dist * max(dist.max(), 1)), height)
        semseg[mask > 0] = obj['cls']
        label_map[mask > 0] = VOC_TO_CONTEXT[obj['cls']]
        for earlier in objects[:j]:
            earlier['mask'] = earlier['mask'] * (1 - mask)
        obj['mask'] = mask

    # Part masks keep only what later objects leave visible, like the instance masks.
    for obj in objects:
        if obj['cls'] == PERSON_CLASS and obj['annotated']:
            obj['parts'] = [(name, m * obj['mask']) for name, m in obj['drawn_parts']]

    img += rng.normal(0, 6, img.shape)
    # VOC marks object borders as ignore.
    border = cv2.dilate(semseg, np.ones((3, 3))) != cv2.erode(semseg, np.ones((3, 3)))
    semseg[border] = 255

    # The salient object is the largest visible one; blurred like a distilled map.
    largest = max(objects, key=lambda obj: obj['mask'].sum())
    sal = cv2.GaussianBlur(largest['mask'].astype(np.float32) * 255, (5, 5), 0)

    normals = _normals_from_height(height)
    return dict(
        img=np.clip(img, 0, 255).astype(np.uint8),
        semseg=semseg,
        sal=np.round(sal).astype(np.uint8),
        normals=np.round(255 * (normals + 1) / 2).astype(np.uint8),
        label_map=label_map,
        objects=objects)


_MAT_HEADER_TEXT = b'MATLAB 5.0 MAT-file, written by mmpoly.datasets.synthetic'


def _savemat_reproducible(path: str, variables: dict) -> None:
    """``scipy.io.savemat`` without its clock: the 116-byte header text carries the creation
    time, so two runs with one seed would differ byte for byte across a second boundary."""
    buffer = io.BytesIO()
    sio.savemat(buffer, variables, do_compression=True)
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER_TEXT.ljust(116)
    with open(path, 'wb') as f:
        f.write(data)


def _write_sample(root: str, img_id: str, scene: dict, context_fallback: bool) -> List[int]:
    """Write one sample's files; return its entry of the Parts cache."""
    Image.fromarray(scene['img']).save(osp.join(root, 'JPEGImages', f'{img_id}.jpg'),
                                       quality=95)
    semseg_dir = 'pascal-context' if context_fallback else 'VOC12'
    Image.fromarray(scene['semseg']).save(osp.join(root, 'semseg', semseg_dir, f'{img_id}.png'))
    Image.fromarray(scene['sal']).save(osp.join(root, 'sal_distill', f'{img_id}.png'))
    Image.fromarray(scene['normals']).save(osp.join(root, 'normals_distill', f'{img_id}.png'))
    _savemat_reproducible(osp.join(root, 'pascal-context', 'trainval', f'{img_id}.mat'),
                          {'LabelMap': scene['label_map']})
    objects = scene['objects']
    _savemat_reproducible(osp.join(root, 'human_parts', f'{img_id}.mat'),
                          {'anno': {'imname': img_id, 'objects': _objects_struct(objects)}})
    return [obj['cls'] if obj['mask'].any() else -1 for obj in objects]


def make_synthetic_pascal_mt(root: str,
                             num_train: int = 64,
                             num_val: int = 32,
                             image_size: Tuple[int, int] = (96, 128),
                             seed: int = 0,
                             num_classes: int = 21) -> Dict[str, List[str]]:
    """Write a synthetic dataset in the PASCAL_MT layout under ``root``.

    Args:
        root (str): output directory (created; existing files are overwritten).
        num_train (int): images in the train split. Default: 64.
        num_val (int): images in the val split. Default: 32.
        image_size (tuple[int, int]): (height, width) of every image. Default: (96, 128).
        seed (int): the same seed writes the same files. Default: 0.
        num_classes (int): semseg classes drawn (background + classes 1..num_classes-1);
            16..21, as persons are class 15. Default: 21.

    Returns:
        dict: split name -> list of image ids.
    """
    if not 16 <= num_classes <= 21:
        raise ValueError(f'num_classes must be in 16..21 (persons are class 15), '
                         f'got {num_classes}')
    for sub in ('ImageSets/Context', 'ImageSets/Parts', 'JPEGImages', 'semseg/VOC12',
                'semseg/pascal-context', 'human_parts', 'sal_distill', 'normals_distill',
                'pascal-context/trainval'):
        os.makedirs(osp.join(root, sub), exist_ok=True)

    splits = {}
    for split_idx, (split, num) in enumerate((('train', num_train), ('val', num_val))):
        ids, parts_cache = [], {}
        for i in range(num):
            img_id = f'{2008 + split_idx}_{i:06d}'
            rng = np.random.default_rng([seed, split_idx, i])
            scene = _make_scene(tuple(image_size), num_classes, rng)
            parts_cache[img_id] = _write_sample(root, img_id, scene, context_fallback=i % 8 == 3)
            ids.append(img_id)
        with open(osp.join(root, 'ImageSets', 'Context', f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{img_id}\n' for img_id in ids))
        with open(osp.join(root, 'ImageSets', 'Parts', f'{split}.txt'), 'w') as f:
            json.dump(parts_cache, f)
        splits[split] = ids
    return splits


def prepare_synthetic_root(data_root: str, auto_generate: dict, make: Callable,
                           name: str) -> None:
    """Generate a synthetic dataset with ``make(root, **auto_generate)`` at ``data_root``
    unless it exists.

    With a ``root`` key in ``auto_generate`` (the synthetic configs give their default
    root) only at that root, so a mistyped ``data_root`` is an error, not a new dataset. The
    files are written to a temporary directory beside ``data_root`` and renamed into place:
    a reader (or a concurrent rank) never sees a half-written root, and a failure leaves
    nothing behind.
    """
    if osp.exists(data_root):
        return
    kwargs = dict(auto_generate)
    own_root = kwargs.pop('root', None)
    if own_root is not None and osp.abspath(own_root) != osp.abspath(data_root):
        raise FileNotFoundError(
            f'data_root {data_root} not found. The synthetic {name} is generated only at its '
            f'own root {own_root} (auto_generate.root), never at another path that may be a '
            f'typo: fix data_root, or set auto_generate.root to {data_root} (e.g. '
            f'--cfg-options train_dataloader.dataset.auto_generate.root={data_root}) to '
            'generate it there')
    parent = osp.dirname(osp.abspath(data_root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(data_root)}.', dir=parent)
    try:
        make(tmp, **kwargs)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, data_root)
        except OSError:
            if not osp.isdir(data_root):
                raise
            # another process renamed its copy first: keep that one
        else:
            from mmengine.logging import print_log
            print_log(f'generated a synthetic {name} dataset at {data_root}', 'current')
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
