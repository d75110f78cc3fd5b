import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from mmpoly.datasets.transforms import LoadMultiTaskAnnotations
from mmpoly.datasets.pascal_context_mt import normals_valid_ids
from tests.pascal import PASCAL_SPECS

SKY, FLOOR = 360, 158  # PASCAL-Context ids: 'sky' has no valid normal, 'floor' has


def _mask(shape, *pixels):
    mask = np.zeros(shape, bool)
    for y, x in pixels:
        mask[y, x] = True
    return mask


def _load(task, shape, path, **extra):
    results = dict(tasks=(task, ), label_paths={task: str(path)}, ori_shape=shape,
                   task_specs=PASCAL_SPECS, **extra)  # as a PASCAL dataset sets them
    return LoadMultiTaskAnnotations()(results)


def test_normals_valid_ids_data_file():
    ids = normals_valid_ids()
    assert len(ids) == 170 and len(set(ids.tolist())) == 170
    # 'floor', 'wall', 'person', 'tvmonitor' are valid; 'sky', 'aeroplane', 'unknown' not.
    assert {158, 440, 284, 427} <= set(ids.tolist())
    assert not {360, 2, 431} & set(ids.tolist())


def test_human_parts_hand_built(tmp_path, save_parts_mat):
    shape = (4, 6)
    objects = [
        (15, _mask(shape, (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)), [
            ('head', _mask(shape, (0, 0), (0, 1))),
            ('torso', _mask(shape, (1, 0), (1, 1), (2, 0), (2, 1))),
            ('luarm', _mask(shape, (1, 1))),  # painted after torso: wins
            ('lhand', _mask(shape, (3, 0))),
            ('hair', _mask(shape, (0, 0))),
        ]),
        (12, _mask(shape, (0, 4), (1, 4)), []),  # a dog: not painted
        (15, _mask(shape, (0, 3), (1, 3)), []),  # a person without parts: not painted
        (15, _mask(shape, (0, 5), (2, 5), (3, 5)), [
            ('rlarm', _mask(shape, (0, 5))),
            ('ruleg', _mask(shape, (2, 5))),
            ('rfoot', _mask(shape, (3, 5))),
        ]),
    ]
    save_parts_mat(tmp_path / 'a.mat', objects)
    expected = np.array([[1, 1, 0, 0, 0, 4],
                         [2, 3, 0, 0, 0, 0],
                         [2, 2, 0, 0, 0, 5],
                         [4, 0, 0, 0, 0, 6]])
    out = _load('human_parts', shape, path=tmp_path / 'a.mat')
    assert out['task_fields'] == ['gt_human_parts']
    assert out['gt_human_parts'].dtype == np.uint8
    np.testing.assert_array_equal(out['gt_human_parts'], expected)


@pytest.mark.parametrize('objects', [
    [],
    [(12, np.ones((4, 6)), [])],
    [(15, np.ones((4, 6)), []), (12, np.ones((4, 6)), [])],
    [(15, np.ones((4, 6)), [('head', np.zeros((4, 6)))])],  # parts cover no pixel
])
def test_human_parts_without_person_is_ignored(tmp_path, save_parts_mat, objects):
    save_parts_mat(tmp_path / 'a.mat', objects)
    out = _load('human_parts', (4, 6), path=tmp_path / 'a.mat')
    assert out['gt_human_parts'].shape == (4, 6)
    assert (out['gt_human_parts'] == 255).all()


def test_human_parts_flagged_absent_is_not_read(tmp_path):
    out = _load('human_parts', (3, 5), path=tmp_path / 'missing.mat',
                has_human_parts=False)
    assert (out['gt_human_parts'] == 255).all() and out['gt_human_parts'].shape == (3, 5)


def test_human_parts_unknown_part_name(tmp_path, save_parts_mat):
    save_parts_mat(tmp_path / 'a.mat', [(15, np.ones((2, 2)), [('tail', np.ones((2, 2)))])])
    with pytest.raises(ValueError, match=r"a\.mat.*'tail'"):
        _load('human_parts', (2, 2), path=tmp_path / 'a.mat')


def test_semseg_palette_png_gives_indices(tmp_path):
    label = np.array([[0, 1, 20], [255, 15, 0]], np.uint8)
    img = Image.fromarray(label, mode='P')
    img.putpalette([(i * 7) % 256 for i in range(768)])  # colours unrelated to indices
    img.save(tmp_path / 's.png')
    out = _load('semseg', (2, 3), path=tmp_path / 's.png')
    np.testing.assert_array_equal(out['gt_semseg'], label)


def test_semseg_value_out_of_range(tmp_path):
    Image.fromarray(np.array([[0, 21]], np.uint8)).save(tmp_path / 's.png')
    with pytest.raises(ValueError, match=r's\.png.*\[21\]'):
        _load('semseg', (1, 2), path=tmp_path / 's.png')


def test_saliency_threshold(tmp_path):
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(tmp_path / 's.png')
    out = _load('sal', (1, 4), path=tmp_path / 's.png')
    np.testing.assert_array_equal(out['gt_sal'], [[0, 0, 1, 1]])


def _write_normals(tmp_path, encoded, label_map):
    Image.fromarray(encoded).save(tmp_path / 'n.png')
    sio.savemat(tmp_path / 'c.mat', {'LabelMap': label_map})
    return dict(path=tmp_path / 'n.png', context_label_path=str(tmp_path / 'c.mat'))


def test_normals_decoding_channel_order_and_validity(tmp_path):
    encoded = np.array([[[255, 128, 128], [128, 0, 128], [10, 20, 30]]], np.uint8)
    label_map = np.array([[FLOOR, FLOOR, SKY]], np.uint16)
    out = _load('normals', (1, 3), **_write_normals(tmp_path, encoded, label_map))
    normals = out['gt_normals']
    assert normals.dtype == np.float32 and normals.shape == (1, 3, 3)
    # R is x, G is y (PIL order; cv2 would have swapped them), re-normalised to unit length.
    v = 2 * 128 / 255 - 1
    np.testing.assert_allclose(normals[0, 0], np.array([1, v, v]) / np.sqrt(1 + 2 * v * v),
                               atol=1e-6)
    np.testing.assert_allclose(normals[0, 1], np.array([v, -1, v]) / np.sqrt(1 + 2 * v * v),
                               atol=1e-6)
    np.testing.assert_array_equal(normals[0, 2], 0)  # sky: invalid


@pytest.mark.parametrize('encoded', [np.zeros((2, 2), np.uint8), np.zeros((2, 2, 4), np.uint8)])
def test_normals_not_rgb(tmp_path, encoded):
    paths = _write_normals(tmp_path, encoded, np.full((2, 2), FLOOR, np.uint16))
    with pytest.raises(ValueError, match=r'n\.png.*3-channel'):
        _load('normals', (2, 2), **paths)


def test_normals_label_map_shape_mismatch(tmp_path):
    paths = _write_normals(tmp_path, np.zeros((2, 2, 3), np.uint8),
                           np.full((2, 3), FLOOR, np.uint16))
    with pytest.raises(ValueError, match=r'c\.mat'):
        _load('normals', (2, 2), **paths)


@pytest.mark.parametrize('task,name', [('semseg', 'x.png'), ('human_parts', 'x.mat')])
def test_unreadable_file(tmp_path, task, name):
    (tmp_path / name).write_bytes(b'not an image nor a mat file')
    with pytest.raises(ValueError, match=name.replace('.', r'\.')):
        _load(task, (2, 2), path=tmp_path / name)


def test_label_of_another_size_is_resized_to_the_image(tmp_path):
    label = np.array([[1, 2], [3, 4]], np.uint8)
    Image.fromarray(label).save(tmp_path / 's.png')
    out = _load('semseg', (4, 4), path=tmp_path / 's.png')
    np.testing.assert_array_equal(out['gt_semseg'], label.repeat(2, 0).repeat(2, 1))
