"""A small synthetic dataset in exactly the NYUD_MT on-disk format (see ``nyud_mt.py``).

Each scene is a room seen by a pinhole camera (focal length 0.8 x width, as NYU's Kinect):
floor, ceiling, back and side walls, and a few boxes of furniture standing on the floor,
ray-cast so that every label comes from the same geometry:

- depth: the z-depth of the first surface a pixel's ray hits, in metres; 0 (invalid) on
  windows (glass), on some pixels at depth discontinuities (like a Kinect's shadows) and
  on a few random pixels;
- normals: the normal of the surface hit (x right, y down, z to the camera), zero where
  the depth is invalid;
- semseg: the NYUD-40 class of the surface (1..40), pictures and windows on the back wall,
  0 (void) on some unlabelled clutter;
- edge: the boundaries of the surfaces (one id per wall, box, picture, clutter), by the
  PASCAL-Context rule (Laplacian of the id map, thinned);
- the image: each class's colour shaded by the normal, plus noise.
"""
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from .pascal_context_mt import edges_of_label_map

# NYUD-40 ids (1-based, as in the segmentation PNGs)
WALL, FLOOR, WINDOW, PICTURE, CEILING, WHITEBOARD = 1, 2, 9, 11, 22, 30
FURNITURE = (3, 4, 6, 7, 10, 14, 17, 29, 32, 39)  # cabinet, bed, sofa, table, ...
LIGHT = np.array([0.3, -0.6, 0.75]) / np.linalg.norm([0.3, -0.6, 0.75])


def _class_colour(cls: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + cls)  # fixed per class: classes are learnable
    return rng.uniform(60, 230, 3)


def _cast_box(rays: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Ray (from the origin) / axis-aligned box intersection: entry distance (inf where
    missed) and the entry face's outward normal (camera axes, z forward)."""
    with np.errstate(divide='ignore', invalid='ignore'):
        t1 = lo / rays
        t2 = hi / rays
    near = np.minimum(t1, t2)
    far = np.maximum(t1, t2)
    t_near = near.max(axis=-1)
    t_far = far.min(axis=-1)
    hit = (t_near <= t_far) & (t_near > 0)
    axis = near.argmax(axis=-1)
    normal = np.zeros(rays.shape)
    sign = -np.sign(np.take_along_axis(rays, axis[..., None], -1)[..., 0])
    np.put_along_axis(normal, axis[..., None], sign[..., None], -1)
    return np.where(hit, t_near, np.inf), normal


def _make_scene(size: Tuple[int, int], rng: np.random.Generator) -> dict:
    h, w = size
    f = 0.8 * w
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - (w - 1) / 2) / f, (v - (h - 1) / 2) / f, np.ones_like(u)], axis=-1)

    cam_height = rng.uniform(1.0, 1.5)
    back, left, right = rng.uniform(3.5, 6.0), rng.uniform(1.5, 2.5), rng.uniform(1.5, 2.5)
    ceiling = 2.6 - cam_height
    # (distance along the ray, normal, class, surface id) of every surface; the nearest wins
    dx, dy = rays[..., 0], rays[..., 1]
    with np.errstate(divide='ignore', invalid='ignore'):
        planes = [
            (np.where(dy > 0, cam_height / dy, np.inf), (0, -1, 0), FLOOR),
            (np.where(dy < 0, -ceiling / dy, np.inf), (0, 1, 0), CEILING),
            (np.full((h, w), back), (0, 0, -1), WALL),
            (np.where(dx < 0, -left / dx, np.inf), (1, 0, 0), WALL),
            (np.where(dx > 0, right / dx, np.inf), (-1, 0, 0), WALL),
        ]
    depth = np.full((h, w), np.inf)
    normal = np.zeros((h, w, 3))
    semseg = np.zeros((h, w), np.uint8)
    ids = np.zeros((h, w), np.int32)
    for sid, (t, n, cls) in enumerate(planes, start=1):
        nearer = t < depth
        depth[nearer], normal[nearer], semseg[nearer], ids[nearer] = t[nearer], n, cls, sid

    # furniture: boxes standing on the floor in front of the back wall
    for k in range(rng.integers(1, 4)):
        width, height, length = rng.uniform(0.5, 1.4), rng.uniform(0.4, 1.6), \
            rng.uniform(0.4, 1.2)
        x0 = rng.uniform(-left + 0.1, right - 0.1 - width)
        z0 = rng.uniform(1.6, back - length - 0.1)
        lo = np.array([x0, cam_height - height, z0])
        hi = np.array([x0 + width, cam_height, z0 + length])
        t, n = _cast_box(rays, lo, hi)
        nearer = t < depth
        depth[nearer], normal[nearer] = t[nearer], n[nearer]
        semseg[nearer], ids[nearer] = rng.choice(FURNITURE), 10 + k

    # flat things on the back wall: same depth and normal, their own class
    point = rays * depth[..., None]
    on_back = ids == 3
    invalid = np.zeros((h, w), bool)
    for k, cls in enumerate(rng.choice([PICTURE, WINDOW, WHITEBOARD], rng.integers(1, 3))):
        cx, cy = rng.uniform(-left + 0.5, right - 0.5), rng.uniform(-ceiling + 0.4, 0.3)
        rx, ry = rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.45)
        inside = on_back & (np.abs(point[..., 0] - cx) < rx) & (np.abs(point[..., 1] - cy) < ry)
        semseg[inside], ids[inside] = cls, 20 + k
        if cls == WINDOW:
            invalid |= inside  # glass: no depth measurement

    # unlabelled clutter (void) keeps its depth
    if rng.random() < 0.5:
        cy, cx = rng.uniform(0.3, 0.9) * h, rng.uniform(0.1, 0.9) * w
        ry, rx = rng.uniform(0.05, 0.12) * h, rng.uniform(0.05, 0.12) * w
        clutter = ((v - cy) / ry) ** 2 + ((u - cx) / rx) ** 2 < 1
        semseg[clutter], ids[clutter] = 0, 30

    edge = edges_of_label_map(ids)

    # the image: class colour shaded by the normal (camera axes -> x right, y down, z to
    # the camera), windows bright
    normal_out = normal * np.array([1, 1, -1])
    colour = np.stack([_class_colour(c) for c in range(41)])[semseg]
    colour += rng.normal(0, 8, (ids.max() + 1, 3))[ids]  # each surface its own tint
    shade = 0.35 + 0.65 * np.clip(normal_out @ LIGHT, 0, 1)
    img = colour * shade[..., None]
    img[semseg == WINDOW] = (235, 240, 245)
    img += rng.normal(0, 5, img.shape)

    # Kinect-like holes: some pixels beside depth jumps, a few random ones
    jump = np.zeros((h, w), bool)
    jump[:, 1:] |= np.abs(np.diff(depth, axis=1)) > 0.3
    jump[1:, :] |= np.abs(np.diff(depth, axis=0)) > 0.3
    invalid |= jump & (rng.random((h, w)) < 0.5)
    invalid |= rng.random((h, w)) < 0.01
    depth = np.where(invalid, 0, depth).astype(np.float32)
    normal_out = np.where(invalid[..., None], 0, normal_out).astype(np.float32)
    return dict(img=np.clip(img, 0, 255).astype(np.uint8), semseg=semseg, depth=depth,
                normals=normal_out, edge=edge.astype(np.float32))


def make_synthetic_nyud_mt(root: str,
                           num_train: int = 64,
                           num_val: int = 16,
                           image_size: Tuple[int, int] = (72, 96),
                           seed: int = 0) -> Dict[str, List[str]]:
    """Write a synthetic dataset in the NYUD_MT layout under ``root``.

    Args:
        root (str): output directory (created; existing files are overwritten).
        num_train (int): images in the train split. Default: 64.
        num_val (int): images in the val split. Default: 16.
        image_size (tuple[int, int]): (height, width) of every image (NYUD: 480 x 640).
            Default: (72, 96).
        seed (int): the same seed writes the same files. Default: 0.

    Returns:
        dict: split name -> list of image ids.
    """
    for sub in ('gt_sets', 'images', 'segmentation', 'depth', 'normals', 'edge'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    splits = {}
    for split_idx, (split, num) in enumerate((('train', num_train), ('val', num_val))):
        ids = []
        for i in range(num):
            img_id = f'{split_idx * 5000 + i:06d}'
            scene = _make_scene(tuple(image_size), np.random.default_rng([seed, split_idx, i]))
            Image.fromarray(scene['img']).save(osp.join(root, 'images', f'{img_id}.jpg'),
                                               quality=95)
            Image.fromarray(scene['semseg']).save(
                osp.join(root, 'segmentation', f'{img_id}.png'))
            for task in ('depth', 'normals', 'edge'):
                np.save(osp.join(root, task, f'{img_id}.npy'), scene[task])
            ids.append(img_id)
        with open(osp.join(root, 'gt_sets', f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{img_id}\n' for img_id in ids))
        splits[split] = ids
    return splits
