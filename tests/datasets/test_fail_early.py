"""Mistakes found before training: tasks that do not agree, 0/1 saliency maps, label maps of
another size (warned once per file), synthetic data at a mistyped root."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import mmpoly  # noqa: F401
from mmpoly.datasets import PascalContextMTDataset, make_synthetic_pascal_mt
from mmpoly.datasets.transforms.loading import LoadMultiTaskAnnotations, load_saliency
from mmpoly.engine.build_checks import (ConfigMismatchError, check_task_agreement,
                                       task_mismatches)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/lora_swin-tiny_synthetic.py'
GEN = dict(num_train=2, num_val=1, image_size=(32, 40), seed=0)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('early') / 'data'
    make_synthetic_pascal_mt(str(root), **GEN)
    return str(root)


def test_every_shipped_config_agrees():
    import glob
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True):
        if '_base_' in path:
            continue
        cfg = Config.fromfile(path)
        assert task_mismatches(cfg, 'train') == [] and task_mismatches(cfg, 'test') == [], path


def test_narrower_model_tasks_are_refused_at_build_time():
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    # a config with its own loss weights (the shipped ones take each task's spec's)
    cfg.merge_from_dict({'model.decode_head.losses': dict(
        human_parts=dict(loss_weight=1.0), normals=dict(loss_weight=1.0))})
    assert task_mismatches(cfg, 'train') == []
    cfg.merge_from_dict({'model.tasks': ['semseg', 'sal']})
    with pytest.raises(ConfigMismatchError) as info:
        check_task_agreement(cfg, 'train')
    message = str(info.value)
    for part in ('train_dataloader.dataset', 'val_dataloader.dataset', 'val_evaluator',
                 "losses for ['human_parts', 'normals']"):
        assert part in message, part


def test_train_py_refuses_before_any_epoch(tmp_path, data):
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', "model.tasks=['semseg']",
         f'train_dataloader.dataset.data_root={data}'],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
        timeout=120)
    assert proc.returncode != 0
    assert 'ConfigMismatchError: the tasks of the config do not agree' in proc.stderr
    assert 'Epoch(train)' not in proc.stdout + proc.stderr


def test_saliency_stored_as_0_1_is_refused_by_name(tmp_path):
    path = str(tmp_path / 'sal.png')
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    Image.fromarray(mask).save(path)
    with pytest.raises(ValueError, match=f'saliency map {path} holds only the values 0 and 1'):
        load_saliency(path)
    Image.fromarray(mask * 255).save(path)
    assert load_saliency(path).sum() == 9
    Image.fromarray(mask * 0).save(path)  # no salient object: fine
    assert load_saliency(path).sum() == 0


def test_resized_label_map_warned_once_per_file(tmp_path, data):
    root = str(tmp_path / 'data')
    shutil.copytree(data, root)
    dataset = PascalContextMTDataset(data_root=root, split='train', tasks=('semseg', 'sal'))
    info = dataset.get_data_info(0)
    sal = info['label_paths']['sal']
    small = np.array(Image.open(sal))[::2, ::2]
    Image.fromarray(small).save(sal)
    load = LoadMultiTaskAnnotations()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(3):
            results = load.transform(dict(dataset.get_data_info(0),
                                          ori_shape=GEN['image_size']))
            assert results['gt_sal'].shape == GEN['image_size']
    about = [w for w in caught if sal in str(w.message)]
    assert len(about) == 1 and 'resized to the image' in str(about[0].message)


def test_synthetic_data_only_at_its_own_root(tmp_path):
    own = str(tmp_path / 'synthetic_mt')
    typo = str(tmp_path / 'synthetc_mt')
    with pytest.raises(FileNotFoundError, match=f'data_root {typo} not found'):
        PascalContextMTDataset(data_root=typo, auto_generate=dict(GEN, root=own))
    assert not osp.exists(typo) and not osp.exists(own)
    assert len(PascalContextMTDataset(data_root=own, auto_generate=dict(GEN, root=own))) == 2
    # the synthetic configs pass their own root
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    auto = cfg.train_dataloader.dataset.auto_generate
    assert auto.root == cfg.train_dataloader.dataset.data_root == 'data/synthetic_mt'
