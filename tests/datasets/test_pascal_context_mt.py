import json
import os
import re

import numpy as np
import pytest
import scipy.io as sio
from mmengine.registry import init_default_scope
from PIL import Image

import mmpoly.datasets.pascal_context_mt as pcmt
from mmpoly.datasets import PascalContextMTDataset
from tests.pascal import ALL_TASKS

init_default_scope('mmseg')  # 'LoadImageFromFile' resolves through the mmseg registry

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadMultiTaskAnnotations')]
FALLBACK_IDS = {'2008_000003', '2008_000011'}  # the generator writes i % 8 == 3 there


def _dataset(root, **kwargs):
    kwargs.setdefault('pipeline', PIPELINE)
    return PascalContextMTDataset(data_root=str(root), **kwargs)


def _index(dataset, img_id):
    return next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_id'] == img_id)


def test_data_list_fields(synthetic_root):
    dataset = _dataset(synthetic_root, split='train')
    assert len(dataset) == 16 and len(_dataset(synthetic_root, split='val')) == 8
    assert dataset.metainfo['tasks'] == ALL_TASKS
    assert len(dataset.metainfo['semseg_classes']) == 21
    assert len(dataset.metainfo['human_parts_classes']) == 7
    assert len(dataset.metainfo['human_parts_palette']) == 7
    info = dataset.get_data_info(3)
    root = str(synthetic_root)
    assert info['img_id'] == '2008_000003'
    assert info['img_path'] == f'{root}/JPEGImages/2008_000003.jpg'
    assert info['label_paths'] == {
        'semseg': f'{root}/semseg/pascal-context/2008_000003.png',
        'human_parts': f'{root}/human_parts/2008_000003.mat',
        'sal': f'{root}/sal_distill/2008_000003.png',
        'normals': f'{root}/normals_distill/2008_000003.png',
    }
    assert info['context_label_path'] == f'{root}/pascal-context/trainval/2008_000003.mat'
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        semseg_dir = 'pascal-context' if info['img_id'] in FALLBACK_IDS else 'VOC12'
        assert f'/semseg/{semseg_dir}/' in info['label_paths']['semseg']


def test_labels_match_the_files(synthetic_root):
    dataset = _dataset(synthetic_root)
    for i in range(4):
        results = dataset[i]
        paths = results['label_paths']
        assert results['task_fields'] == [f'gt_{t}' for t in ALL_TASKS]
        assert results['img'].shape == (48, 64, 3)
        np.testing.assert_array_equal(results['gt_semseg'],
                                      np.array(Image.open(paths['semseg'])))
        np.testing.assert_array_equal(results['gt_sal'],
                                      np.array(Image.open(paths['sal'])) / 255 > 0.5)
        # Normals: valid exactly where the LabelMap class is floor (valid) or an object of
        # a valid class; the sky (360) is never valid.
        label_map = sio.loadmat(results['context_label_path'])['LabelMap']
        normals = results['gt_normals']
        valid = np.any(normals != 0, axis=2)
        assert not valid[label_map == 360].any() and valid[label_map == 158].all()
        decoded = 2 * np.array(Image.open(paths['normals']), np.float32) / 255 - 1
        np.testing.assert_allclose(normals[valid], decoded[valid], atol=0.02)
        np.testing.assert_allclose(np.linalg.norm(normals[valid], axis=1), 1, atol=1e-5)


def test_human_parts_of_images_with_and_without_persons(synthetic_root):
    dataset = _dataset(synthetic_root, tasks=('human_parts', ))
    with open(synthetic_root / 'ImageSets' / 'Parts' / 'train.txt') as f:
        objects = json.load(f)
    with_parts, without = 0, 0
    for i in range(len(dataset)):
        results = dataset[i]
        parts = results['gt_human_parts']
        assert results['has_human_parts'] == (15 in objects[results['img_id']])
        if not results['has_human_parts']:
            assert (parts == 255).all()
            without += 1
        elif (parts != 255).any():
            assert set(np.unique(parts)) <= set(range(7))
            with_parts += 1
    assert with_parts and without


def test_task_subsets(synthetic_root):
    dataset = _dataset(synthetic_root, tasks=('normals', 'sal'))
    assert dataset.metainfo['tasks'] == ('normals', 'sal')
    info = dataset.get_data_info(0)
    assert set(info['label_paths']) == {'normals', 'sal'} and 'has_human_parts' not in info
    assert dataset[0]['task_fields'] == ['gt_normals', 'gt_sal']
    info = _dataset(synthetic_root, tasks='semseg').get_data_info(0)
    assert set(info['label_paths']) == {'semseg'} and 'context_label_path' not in info
    with pytest.raises(ValueError, match='depth'):
        _dataset(synthetic_root, tasks=('semseg', 'depth'))


def test_base_dataset_kwargs(synthetic_root):
    dataset = _dataset(synthetic_root, indices=3, serialize_data=False, lazy_init=True)
    assert len(dataset) == 3


def test_parts_cache_is_built_when_missing(fresh_root):
    cache = fresh_root / 'ImageSets' / 'Parts' / 'train.txt'
    written_by_generator = json.loads(cache.read_text())
    cache.unlink()
    _dataset(fresh_root, tasks=('human_parts', ))
    assert json.loads(cache.read_text()) == written_by_generator


def test_parts_cache_kept_in_memory_when_not_writable(fresh_root, monkeypatch):
    cache = fresh_root / 'ImageSets' / 'Parts' / 'train.txt'
    expected = json.loads(cache.read_text())
    cache.unlink()

    def read_only(*args, **kwargs):
        raise PermissionError('read-only file system')

    monkeypatch.setattr(pcmt.tempfile, 'NamedTemporaryFile', read_only)
    dataset = _dataset(fresh_root, tasks=('human_parts', ))
    assert not cache.exists()
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        assert info['has_human_parts'] == (15 in expected[info['img_id']])


def test_stale_parts_cache_is_rebuilt(fresh_root):
    cache = fresh_root / 'ImageSets' / 'Parts' / 'train.txt'
    expected = json.loads(cache.read_text())
    cache.write_text('{"some_other_image": [15]}')
    _dataset(fresh_root, tasks=('human_parts', ))
    assert json.loads(cache.read_text()) == expected


def test_missing_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'nowhere'))):
        _dataset(tmp_path / 'nowhere')


def test_missing_split_file(fresh_root):
    split_file = str(fresh_root / 'ImageSets/Context/test.txt')
    with pytest.raises(FileNotFoundError, match=re.escape(split_file)):
        _dataset(fresh_root, split='test')


@pytest.mark.parametrize('relpath', [
    'JPEGImages/2008_000001.jpg', 'human_parts/2008_000001.mat', 'sal_distill/2008_000001.png',
    'normals_distill/2008_000001.png', 'pascal-context/trainval/2008_000001.mat'
])
def test_missing_file(fresh_root, relpath):
    os.remove(fresh_root / relpath)
    with pytest.raises(FileNotFoundError, match=re.escape(str(fresh_root / relpath))):
        _dataset(fresh_root)


def test_missing_semseg_names_both_paths(fresh_root):
    os.remove(fresh_root / 'semseg/VOC12/2008_000001.png')
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f'{fresh_root}/semseg/VOC12/2008_000001.png') + '.*'
                       + re.escape(f'{fresh_root}/semseg/pascal-context/2008_000001.png')):
        _dataset(fresh_root)


def test_corrupt_labels_fail_when_loaded(fresh_root):
    semseg = fresh_root / 'semseg/VOC12/2008_000001.png'
    label = np.array(Image.open(semseg))
    label[0, 0] = 42
    Image.fromarray(label).save(semseg)
    normals = fresh_root / 'normals_distill/2008_000002.png'
    Image.fromarray(np.array(Image.open(normals))[..., 0]).save(normals)  # gray
    sal = fresh_root / 'sal_distill/2008_000000.png'
    sal.write_bytes(b'garbage')
    dataset = _dataset(fresh_root)
    with pytest.raises(ValueError, match=re.escape(str(semseg)) + '.*42'):
        dataset[1]
    with pytest.raises(ValueError, match=re.escape(str(normals)) + '.*3-channel'):
        dataset[2]
    with pytest.raises(ValueError, match=re.escape(str(sal))):
        dataset[0]


def test_auto_generate_creates_the_root_once(tmp_path, monkeypatch):
    root = tmp_path / 'PASCAL_MT'
    calls, generate = [], pcmt.make_synthetic_pascal_mt

    def counting(*args, **kwargs):
        calls.append(args)
        return generate(*args, **kwargs)

    monkeypatch.setattr(pcmt, 'make_synthetic_pascal_mt', counting)
    kwargs = dict(num_train=3, num_val=2, image_size=(16, 24))
    assert len(_dataset(root, auto_generate=kwargs)) == 3
    assert len(_dataset(root, split='val', auto_generate=kwargs)) == 2
    assert len(calls) == 1
    assert os.listdir(tmp_path) == ['PASCAL_MT']  # no temporary directory left


def test_auto_generate_losing_the_race_keeps_the_winner(tmp_path, monkeypatch):
    root = tmp_path / 'PASCAL_MT'
    generate = pcmt.make_synthetic_pascal_mt

    def other_rank_wins(tmp, **kwargs):
        generate(str(root), **kwargs)  # another rank renames its copy in meanwhile
        (root / 'winner').write_text('')
        generate(tmp, **kwargs)

    monkeypatch.setattr(pcmt, 'make_synthetic_pascal_mt', other_rank_wins)
    dataset = _dataset(root, auto_generate=dict(num_train=2, num_val=1, image_size=(16, 24)))
    assert len(dataset) == 2 and (root / 'winner').exists()
    assert os.listdir(tmp_path) == ['PASCAL_MT']


def test_recommended_pipelines(synthetic_root):
    train = _dataset(synthetic_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadMultiTaskAnnotations'),
        dict(type='MTRandomFlip', prob=0.5),
        dict(type='MTRandomScale', scale_range=(0.75, 1.25)),
        dict(type='MTRandomRotate', max_degree=20),
        dict(type='MTResize', scale=(96, 80)),
        dict(type='PackMultiTaskInputs'),
    ])
    sample = train[0]['data_samples']
    assert train[0]['inputs'].shape == (3, 80, 96)
    assert sample.gt_semseg.shape == sample.gt_normals.shape == (80, 96)
    test = _dataset(synthetic_root, split='val', test_mode=True, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='MTResize', scale=(96, 80)),
        dict(type='LoadMultiTaskAnnotations'),
        dict(type='PackMultiTaskInputs'),
    ])
    packed = test[0]
    assert packed['inputs'].shape == (3, 80, 96)
    sample = packed['data_samples']
    # Labels stay at the original size, where the metric compares.
    assert sample.gt_sal.shape == sample.ori_shape == (48, 64)
    assert sample.img_shape == (80, 96) and sample.scale_factor == (1.5, 80 / 48)
