import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmpoly.datasets.transforms import (MTPad, MTRandomCrop, MTRandomFlip, MTRandomRotate,
                                        MTRandomScale, MTResize, PackMultiTaskInputs)
from tests.pascal import PASCAL_SPECS

FIELDS = ['gt_semseg', 'gt_human_parts', 'gt_sal', 'gt_normals']


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_results(h, w, seed=0):
    """A sample whose image encodes each pixel's coordinates (B = y, G = x) and whose
    labels are known functions of the coordinates; normals are invalid (zero) in the
    top-left quarter."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([ys, xs, np.full_like(ys, 7)], axis=2).astype(np.uint8)
    normals = _unit(rng.normal(size=(h, w, 3))).astype(np.float32)
    normals[:h // 2, :w // 2] = 0
    return dict(
        img=img,
        img_shape=(h, w),
        ori_shape=(h, w),
        gt_semseg=((ys // 4 + 2 * (xs // 4)) % 21).astype(np.uint8),
        gt_human_parts=((xs // 3) % 7).astype(np.uint8),
        gt_sal=(ys > xs).astype(np.uint8),
        gt_normals=normals,
        task_fields=list(FIELDS),
        task_specs=PASCAL_SPECS)  # as a PASCAL dataset sets it


def _copy(results):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in results.items()}


def _valid(normals):
    return np.any(normals != 0, axis=2)


def test_flip_negates_x_at_the_mirrored_position():
    src = make_results(6, 9)
    out = MTRandomFlip(prob=1.0)(_copy(src))
    assert out['flip'] is True and out['flip_direction'] == 'horizontal'
    for key in ['img', 'gt_semseg', 'gt_human_parts', 'gt_sal']:
        np.testing.assert_array_equal(out[key], src[key][:, ::-1])
    y, x = 4, 2  # a valid pixel comes from (y, w - 1 - x) with x negated
    nx, ny, nz = src['gt_normals'][y, 9 - 1 - x]
    np.testing.assert_allclose(out['gt_normals'][y, x], [-nx, ny, nz])
    np.testing.assert_array_equal(_valid(out['gt_normals']), _valid(src['gt_normals'])[:, ::-1])

    kept = MTRandomFlip(prob=0.0)(_copy(src))
    assert kept['flip'] is False and kept['flip_direction'] is None
    np.testing.assert_array_equal(kept['gt_normals'], src['gt_normals'])


def test_rotate_90_degrees():
    src = make_results(8, 8)
    out = MTRandomRotate(max_degree=(90, 90))(_copy(src))
    assert out['rotate_degree'] == 90
    # +90 degrees turns the content counter-clockwise on screen: np.rot90.
    for key in ['img', 'gt_semseg', 'gt_human_parts', 'gt_sal']:
        np.testing.assert_array_equal(out[key], np.rot90(src[key]))
    # A normal pointing right now points up (y is down): (x, y, z) -> (y, -x, z).
    n = src['gt_normals']
    expected = np.rot90(np.stack([n[..., 1], -n[..., 0], n[..., 2]], axis=2))
    np.testing.assert_allclose(out['gt_normals'], expected, atol=1e-5)


def test_rotate_matches_reference_formula_and_fills_corners():
    src = make_results(15, 15)
    src['gt_normals'][:] = _unit(np.array([0.6, 0.3, 0.5]))
    out = MTRandomRotate(max_degree=(30, 30))(_copy(src))
    # The reference (ASTMT ScaleNRotate): in_plane = atan2(x, y); x' = r sin(in_plane + a),
    # y' = r cos(in_plane + a).
    x, y, z = src['gt_normals'][0, 0]
    a, r = math.radians(30), math.hypot(x, y)
    in_plane = math.atan2(x, y)
    expected = [r * math.sin(in_plane + a), r * math.cos(in_plane + a), z]
    np.testing.assert_allclose(out['gt_normals'][7, 7], expected, atol=1e-5)
    # The corners come from outside the image.
    assert out['gt_semseg'][0, 0] == 255 and out['gt_sal'][0, 0] == 255
    assert (out['img'][0, 0] == 0).all() and (out['gt_normals'][0, 0] == 0).all()


def test_scale_zooms_about_the_centre():
    src = make_results(9, 9)
    np.random.seed(0)
    out = MTRandomScale(scale_range=(0.5, 0.5))(_copy(src))
    assert out['scale_factor'] == (0.5, 0.5) and out['img'].shape[:2] == (9, 9)
    # Output pixel c + d comes from input c + 2d (c = 4): rows/cols 2..6 <- 0, 2, .., 8.
    inner = (slice(2, 7), slice(2, 7))
    for key in ['gt_semseg', 'gt_human_parts', 'gt_sal']:
        np.testing.assert_array_equal(out[key][inner], src[key][::2, ::2])
        ring = np.ones((9, 9), bool)
        ring[inner] = False
        assert (out[key][ring] == 255).all()
    np.testing.assert_array_equal(out['img'][inner], src['img'][::2, ::2])
    np.testing.assert_allclose(out['gt_normals'][inner], src['gt_normals'][::2, ::2],
                               atol=1e-5)
    assert (out['gt_normals'][0] == 0).all()


def test_scale_without_keeping_the_size():
    out = MTRandomScale(scale_range=(1.5, 1.5), keep_size=False)(make_results(8, 10))
    assert out['img'].shape[:2] == (12, 15) and out['img_shape'] == (12, 15)
    assert all(out[key].shape[:2] == (12, 15) for key in FIELDS)
    assert out['scale_factor'] == (1.5, 1.5)


def test_resize_keeps_unit_norm_and_invalid_pixels():
    src = make_results(8, 8)
    src['gt_normals'][5, 5] = 0  # an isolated invalid pixel
    out = MTResize(scale=(12, 16))(_copy(src))  # (w, h)
    assert out['img'].shape[:2] == (16, 12) and out['img_shape'] == (16, 12)
    assert all(out[key].shape[:2] == (16, 12) for key in FIELDS)
    assert out['scale_factor'] == (1.5, 2.0)
    valid = _valid(out['gt_normals'])
    # The invalid pixels (top-left quarter, (5, 5)) moved with nearest interpolation:
    # output row i <- input row i // 2, output column j <- input column floor(j / 1.5).
    expected_valid = np.ones((16, 12), bool)
    expected_valid[:8, :6] = False
    expected_valid[10:12, 8:9] = False
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_allclose(np.linalg.norm(out['gt_normals'][valid], axis=1), 1, atol=1e-5)
    assert set(np.unique(out['gt_sal'])) <= {0, 1}


def test_resize_only_what_is_loaded():
    """A test pipeline resizes the image before the labels are loaded."""
    src = make_results(8, 8)
    del src['task_fields']
    out = MTResize(scale=(16, 16))(src)
    assert out['img'].shape[:2] == (16, 16)
    assert out['gt_semseg'].shape == (8, 8)


def test_crop_keeps_img_and_labels_aligned():
    src = make_results(20, 24)
    np.random.seed(1)
    out = MTRandomCrop(crop_size=(8, 10))(_copy(src))
    assert out['img'].shape[:2] == (8, 10) and out['img_shape'] == (8, 10)
    ys, xs = out['img'][..., 0], out['img'][..., 1]  # where each pixel came from
    for key in FIELDS:
        np.testing.assert_array_equal(out[key], src[key][ys, xs])
    x1, y1, x2, y2 = out['crop_bbox']
    assert (x1, y1, x2 - x1, y2 - y1) == (xs[0, 0], ys[0, 0], 10, 8)


def test_crop_larger_than_image_keeps_the_short_side():
    out = MTRandomCrop(crop_size=(16, 4))(make_results(8, 8))
    assert out['img'].shape[:2] == (8, 4) and out['gt_normals'].shape[:2] == (8, 4)


def test_pad_uses_each_task_pad_value():
    src = make_results(5, 6)
    out = MTPad(size=(8, 9))(_copy(src))
    assert out['pad_shape'] == (8, 9) and out['img_shape'] == (5, 6)
    np.testing.assert_array_equal(out['img'][:5, :6], src['img'])
    assert (out['img'][5:] == 0).all() and (out['img'][:, 6:] == 0).all()
    for key, value in [('gt_semseg', 255), ('gt_human_parts', 255), ('gt_sal', 255),
                       ('gt_normals', 0)]:
        assert out[key].shape[:2] == (8, 9)
        np.testing.assert_array_equal(out[key][:5, :6], src[key])
        assert (out[key][5:] == value).all() and (out[key][:, 6:] == value).all()
    with pytest.raises(ValueError, match='larger'):
        MTPad(size=(4, 9))(make_results(5, 6))


def test_train_chain_keeps_labels_aligned():
    """Flip, zoom, rotate and resize, then read back where each pixel came from."""
    h = w = 64
    src = make_results(h, w)
    src['gt_semseg'] = (np.mgrid[0:h, 0:w][0] // 16 * 4 + np.mgrid[0:h, 0:w][1] // 16)
    src['gt_semseg'] = src['gt_semseg'].astype(np.uint8)
    np.random.seed(3)
    out = _copy(src)
    for t in [MTRandomFlip(prob=1.0), MTRandomScale((1.2, 1.2)), MTRandomRotate((15, 15)),
              MTResize(scale=(96, 96))]:
        out = t(out)
    inside = out['img'][..., 2] == 7  # pixels that come from the image, not the border
    ys = np.clip(np.round(out['img'][..., 0]), 0, h - 1).astype(int)
    xs = np.clip(np.round(out['img'][..., 1]), 0, w - 1).astype(int)
    agree = out['gt_semseg'][inside] == src['gt_semseg'][ys, xs][inside]
    assert inside.mean() > 0.5 and agree.mean() > 0.95


def test_pack_shapes_dtypes_and_metainfo():
    results = make_results(6, 7)
    results.update(img_path='a.jpg', img_id='a', scale_factor=(1.0, 1.0), flip=False,
                   flip_direction=None, pad_shape=(6, 7), other='dropped')
    packed = PackMultiTaskInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.shape == (3, 6, 7) and inputs.dtype == torch.uint8
    assert torch.equal(inputs[0], torch.from_numpy(results['img'][..., 0]))
    assert isinstance(sample, SegDataSample)
    for key in ['gt_semseg', 'gt_human_parts', 'gt_sal']:
        field = getattr(sample, key)
        assert isinstance(field, PixelData)
        assert field.data.shape == (1, 6, 7) and field.data.dtype == torch.int64
    assert sample.gt_normals.data.shape == (3, 6, 7)
    assert sample.gt_normals.data.dtype == torch.float32
    np.testing.assert_array_equal(sample.gt_normals.data[:, 5, 6].numpy(),
                                  results['gt_normals'][5, 6])
    meta = sample.metainfo
    assert meta['tasks'] == ('semseg', 'human_parts', 'sal', 'normals')
    assert {'img_path', 'img_id', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
            'flip_direction'} <= set(meta)
    assert 'other' not in meta
