import hashlib
import json
import os
import runpy
import sys
import time

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from mmpoly.datasets import make_synthetic_pascal_mt
from mmpoly.datasets.synthetic import _class_colour

TOOL = os.path.join(os.path.dirname(__file__), '..', '..', 'tools', 'make_synthetic_data.py')


def _digests(root):
    digests = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as f:
                digests[os.path.relpath(path, root)] = hashlib.md5(f.read()).hexdigest()
    return digests


def test_deterministic_for_a_seed(tmp_path, monkeypatch):
    kwargs = dict(num_train=3, num_val=1, image_size=(24, 32))
    make_synthetic_pascal_mt(str(tmp_path / 'a'), seed=5, **kwargs)
    # scipy stamps the wall clock into each .mat header: a second run at another time must
    # still give the same bytes (this once failed CI when the runs straddled a second)
    monkeypatch.setattr(time, 'asctime', lambda *_: 'Thu Jan  1 00:00:00 1970')
    make_synthetic_pascal_mt(str(tmp_path / 'b'), seed=5, **kwargs)
    make_synthetic_pascal_mt(str(tmp_path / 'c'), seed=6, **kwargs)
    a = _digests(tmp_path / 'a')
    assert a == _digests(tmp_path / 'b')
    c = _digests(tmp_path / 'c')
    assert a.keys() == c.keys() and a['JPEGImages/2008_000000.jpg'] != c[
        'JPEGImages/2008_000000.jpg']


def test_files_follow_the_pascal_mt_format(synthetic_root):
    root = str(synthetic_root)
    ids = open(f'{root}/ImageSets/Context/train.txt').read().split()
    assert len(ids) == 16
    parts_cache = json.load(open(f'{root}/ImageSets/Parts/train.txt'))
    assert set(parts_cache) == set(ids)
    num_fallback, label_ids = 0, set()
    for img_id in ids:
        img = np.array(Image.open(f'{root}/JPEGImages/{img_id}.jpg'))
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
        voc = f'{root}/semseg/VOC12/{img_id}.png'
        context = f'{root}/semseg/pascal-context/{img_id}.png'
        assert os.path.isfile(voc) != os.path.isfile(context)
        num_fallback += os.path.isfile(context)
        semseg = np.array(Image.open(voc if os.path.isfile(voc) else context))
        assert semseg.shape == (48, 64) and set(np.unique(semseg)) <= set(range(21)) | {255}
        sal = np.array(Image.open(f'{root}/sal_distill/{img_id}.png'))
        assert sal.shape == (48, 64) and sal.dtype == np.uint8
        normals = np.array(Image.open(f'{root}/normals_distill/{img_id}.png'), float)
        normals = 2 * normals / 255 - 1
        assert normals.shape == (48, 64, 3)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=2), 1, atol=0.02)
        label_map = sio.loadmat(f'{root}/pascal-context/trainval/{img_id}.mat')['LabelMap']
        assert label_map.shape == (48, 64)
        label_ids |= set(np.unique(label_map).tolist())
        objects = sio.loadmat(f'{root}/human_parts/{img_id}.mat')['anno'][0][0][1][0]
        assert [int(o[1][0][0]) if o[2].any() else -1 for o in objects] == parts_cache[img_id]
    assert num_fallback == 2
    assert {360, 158} <= label_ids  # a class without and one with valid normals


def test_labels_are_learnable(synthetic_root):
    """Each class has its own colour; persons with parts exist beside images without."""
    root = str(synthetic_root)
    ids = open(f'{root}/ImageSets/Context/train.txt').read().split()
    parts_cache = json.load(open(f'{root}/ImageSets/Parts/train.txt'))
    assert any(15 in v for v in parts_cache.values())
    assert any(15 not in v for v in parts_cache.values())
    for img_id in ids[:6]:
        img = np.array(Image.open(f'{root}/JPEGImages/{img_id}.jpg'), np.float32)
        semseg_file = f'{root}/semseg/VOC12/{img_id}.png'
        if not os.path.isfile(semseg_file):
            semseg_file = f'{root}/semseg/pascal-context/{img_id}.png'
        semseg = np.array(Image.open(semseg_file))
        for cls in set(np.unique(semseg).tolist()) - {0, 15, 255}:
            mean = img[semseg == cls].mean(axis=0)
            assert np.abs(mean - _class_colour(cls)).max() < 40, (img_id, cls)


def test_rejects_classes_without_person(tmp_path):
    with pytest.raises(ValueError, match='num_classes'):
        make_synthetic_pascal_mt(str(tmp_path), num_classes=10)


def test_tool(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / 'out')
    monkeypatch.setattr(sys, 'argv', [
        TOOL, root, '--num-train', '2', '--num-val', '1', '--size', '20', '30', '--seed', '4'
    ])
    runpy.run_path(TOOL, run_name='__main__')
    assert 'train: 2 images' in capsys.readouterr().out
    assert len(os.listdir(f'{root}/JPEGImages')) == 3
    assert Image.open(f'{root}/JPEGImages/2008_000000.jpg').size == (30, 20)
