"""NYUD-v2 multi-task data (NYUD_MT layout) and PASCAL-Context's edge task.

Oracles: the reference loader's rules (Multi-Task-Learning-PyTorch ``data/nyud.py``,
``data/pascal_context.py``) applied with numpy / cv2 / scikit-image directly to the files,
and the synthetic scene's camera geometry (normals perpendicular to the surface that the
depth map describes)."""
import glob
import os
import os.path as osp
import runpy
import shutil
import sys

import cv2
import numpy as np
import pytest
import scipy.io as sio
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image
from skimage.morphology import thin

from mmpoly.datasets import NYUDMTDataset, PascalContextMTDataset, make_synthetic_nyud_mt
from mmpoly.datasets.synthetic import prepare_synthetic_root
from mmpoly.engine.config import load_config

init_default_scope('mmseg')  # 'LoadImageFromFile' resolves through the mmseg registry
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadMultiTaskAnnotations')]
SIZE = (36, 48)


@pytest.fixture(scope='module')
def nyud_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('nyud') / 'NYUD_MT'
    make_synthetic_nyud_mt(str(root), num_train=6, num_val=2, image_size=SIZE, seed=4)
    return root


@pytest.fixture
def damaged_root(nyud_root, tmp_path):
    root = tmp_path / 'NYUD_MT'
    shutil.copytree(nyud_root, root)
    return root


def reference_labels(root, img_id):
    """The reference loader's ``_load_*`` of one image, as it is written there."""
    semseg = np.array(Image.open(f'{root}/segmentation/{img_id}.png')).astype(np.float32)
    semseg[semseg == 0] = 256
    semseg = semseg - 1
    normals = np.load(f'{root}/normals/{img_id}.npy')
    norm = np.linalg.norm(normals, axis=2, keepdims=True)  # eval_normals' normal_ize
    return dict(semseg=semseg, depth=np.load(f'{root}/depth/{img_id}.npy'),
                normals=np.where(norm > 0, normals / np.maximum(norm, 1e-12), 0),
                edge=np.load(f'{root}/edge/{img_id}.npy').astype(np.float32))


def test_loader_gives_the_reference_labels(nyud_root):
    dataset = NYUDMTDataset(data_root=str(nyud_root), split='train', pipeline=LOAD)
    assert len(dataset) == 6 and dataset.tasks == ('semseg', 'depth', 'normals', 'edge')
    kinds = {t: s['kind'] for t, s in dataset.metainfo['task_specs'].items()}
    assert kinds == dict(semseg='class', depth='regression', normals='normal', edge='edge')
    specs = dataset.metainfo['task_specs']
    assert specs['depth']['positive'] and specs['depth']['prediction_format'] == 'mat'
    assert specs['edge']['max_dist'] == 0.011 and specs['semseg']['num_outputs'] == 40
    void = invalid = edges = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        ref = reference_labels(nyud_root, sample['img_id'])
        assert sample['img'].shape[:2] == SIZE
        np.testing.assert_array_equal(sample['gt_semseg'], ref['semseg'])
        assert sample['gt_semseg'].dtype == np.uint8
        np.testing.assert_array_equal(sample['gt_depth'], ref['depth'])
        np.testing.assert_allclose(sample['gt_normals'], ref['normals'], atol=1e-6)
        np.testing.assert_array_equal(sample['gt_edge'], ref['edge'])
        assert set(np.unique(sample['gt_edge'])) <= {0, 1}
        void += (sample['gt_semseg'] == 255).sum()
        invalid += (sample['gt_depth'] == 0).sum()
        edges += sample['gt_edge'].sum()
        # no depth, no normal; a valid normal has unit length
        no_depth = sample['gt_depth'] == 0
        norm = np.linalg.norm(sample['gt_normals'], axis=2)
        np.testing.assert_array_equal(norm == 0, no_depth)
        np.testing.assert_allclose(norm[~no_depth], 1, atol=1e-5)
    assert void > 0 and invalid > 0 and edges > 0  # the rules were exercised


def test_synthetic_scene_is_consistent(nyud_root):
    """Normals are perpendicular to the surface the depth describes (back-projected with
    the generator's camera), and edges lie on semantic boundaries."""
    h, w = SIZE
    f = 0.8 * w
    v, u = np.mgrid[0:h, 0:w]
    for img_id in open(f'{nyud_root}/gt_sets/val.txt').read().split():
        depth = np.load(f'{nyud_root}/depth/{img_id}.npy').astype(np.float64)
        normals = np.load(f'{nyud_root}/normals/{img_id}.npy') * np.array([1, 1, -1])
        semseg = np.array(Image.open(f'{nyud_root}/segmentation/{img_id}.png'))
        edge = np.load(f'{nyud_root}/edge/{img_id}.npy')
        points = np.stack([(u - (w - 1) / 2) / f, (v - (h - 1) / 2) / f, np.ones((h, w))],
                          -1) * depth[..., None]
        step = points[:, 1:] - points[:, :-1]  # horizontal neighbours
        same = (depth[:, 1:] > 0) & (depth[:, :-1] > 0) & \
            (np.abs(depth[:, 1:] - depth[:, :-1]) < 0.05) & \
            np.all(normals[:, 1:] == normals[:, :-1], axis=2)
        dots = np.abs(np.sum(step * normals[:, :-1], axis=2))[same]
        assert same.sum() > h * w / 2 and dots.max() < 1e-6
        # edges are surface boundaries: next to a change of class, of normal or of depth
        # between 4-neighbours (the Laplacian band the thinned edges are drawn from)
        change = np.zeros((h, w), bool)
        for a, b, axis in (((slice(None), slice(1, None)), (slice(None), slice(None, -1)), 1),
                           ((slice(1, None), ), (slice(None, -1), ), 0)):
            change[a] |= (semseg[a] != semseg[b]) | np.any(normals[a] != normals[b], axis=2) \
                | (np.abs(depth[a] - depth[b]) > 0.05)
        near_change = cv2.dilate(change.astype(np.uint8), np.ones((3, 3))) > 0
        assert edge.sum() > 0 and edge[~near_change].sum() == 0


def test_transforms_move_depth_and_edges_by_kind(nyud_root):
    """A zoom out by 2 (the reference's ScaleNRotate about the centre): depth doubles
    (divided by the factor), the border is invalid depth (0), ignored edge and class (255),
    zero normals; a flip keeps edges binary."""
    pipeline = LOAD + [
        dict(type='MTRandomScale', scale_choices=(0.5, ), keep_size=True,
             divide_by_scale=('depth', )),
        dict(type='MTRandomFlip', prob=1.0),
    ]
    dataset = NYUDMTDataset(data_root=str(nyud_root), split='val', pipeline=pipeline)
    plain = NYUDMTDataset(data_root=str(nyud_root), split='val', pipeline=LOAD)[0]
    out = dataset[0]
    h, w = SIZE
    centre = (slice(h // 2 - 3, h // 2 + 3), slice(w // 2 - 3, w // 2 + 3))
    zoom = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0, 0.5)
    expected = cv2.warpAffine(plain['gt_depth'], zoom, (w, h), flags=cv2.INTER_NEAREST) * 2
    np.testing.assert_allclose(out['gt_depth'][:, ::-1][centre], expected[centre])
    assert (out['gt_depth'][0] == 0).all() and (out['gt_edge'][0] == 255).all()
    assert (out['gt_semseg'][0] == 255).all() and (out['gt_normals'][0] == 0).all()
    assert set(np.unique(out['gt_edge'])) == {0, 1, 255}


@pytest.mark.parametrize('damage, error, where', [
    ('missing', FileNotFoundError, 'normals/000000.npy'),
    ('depth_shape', ValueError, 'depth/000000.npy'),
    ('edge_values', ValueError, 'edge/000000.npy'),
    ('semseg_id', ValueError, 'segmentation/000000.png'),
])
def test_bad_input_is_an_error_naming_the_file(damaged_root, damage, error, where):
    root = damaged_root
    if damage == 'missing':
        os.remove(root / where)
    elif damage == 'depth_shape':
        np.save(root / where, np.ones((SIZE[0] - 1, SIZE[1]), np.float32))
    elif damage == 'edge_values':
        np.save(root / where, np.full(SIZE, 0.5, np.float32))
    else:
        semseg = np.array(Image.open(root / where))
        semseg[0, 0] = 41
        Image.fromarray(semseg).save(root / where)
    with pytest.raises(error, match=where):
        NYUDMTDataset(data_root=str(root), split='train', pipeline=LOAD)[0]


def test_a_failed_generation_leaves_nothing(tmp_path):
    def make(root, **kwargs):
        open(osp.join(root, 'half.txt'), 'w').close()
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError, match='disk full'):
        prepare_synthetic_root(str(tmp_path / 'NYUD_MT'), dict(), make, 'NYUD_MT')
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match='only at its own root'):
        NYUDMTDataset(data_root=str(tmp_path / 'typo'), auto_generate=dict(
            root=str(tmp_path / 'NYUD_MT')))


# ------------------------------------------------------------- PASCAL-Context edges

def test_pascal_edges_are_the_reference_rule(tmp_path):
    root = tmp_path / 'PASCAL_MT'
    from mmpoly.datasets import make_synthetic_pascal_mt
    make_synthetic_pascal_mt(str(root), num_train=2, num_val=1, image_size=(30, 40), seed=2)
    # a hand-made LabelMap too: nested rectangles, a one-pixel line, ids past 255
    label_map = np.full((30, 40), 300, np.uint16)
    label_map[5:20, 8:30] = 7
    label_map[10:14, 12:16] = 459
    label_map[25, :] = 2
    mat = root / 'pascal-context' / 'trainval' / '2008_000001.mat'
    sio.savemat(str(mat), {'LabelMap': label_map})

    assert PascalContextMTDataset(data_root=str(root)).tasks == (
        'semseg', 'human_parts', 'sal', 'normals')  # the default four
    dataset = PascalContextMTDataset(data_root=str(root), tasks=('semseg', 'edge'),
                                     pipeline=LOAD)
    assert dataset.metainfo['task_specs']['edge']['kind'] == 'edge'
    for i in range(len(dataset)):
        sample = dataset[i]
        labels = sio.loadmat(str(root / 'pascal-context' / 'trainval' /
                                 f"{sample['img_id']}.mat"))['LabelMap']
        expected = thin(np.abs(cv2.Laplacian(labels, cv2.CV_64F)) > 0).astype(np.float32)
        np.testing.assert_array_equal(sample['gt_edge'], expected)
        assert expected.sum() > 0
    # thinning halves the two-pixel band of a straight boundary
    band = np.abs(cv2.Laplacian(label_map, cv2.CV_64F)) > 0
    assert band[15, 7] and band[15, 8] and dataset[1]['gt_edge'][15, 7:9].sum() == 1

    os.remove(mat)
    with pytest.raises(FileNotFoundError, match='2008_000001.mat'):
        PascalContextMTDataset(data_root=str(root), tasks=('edge', ))


# ------------------------------------------------------------- configs and the demo

def test_every_swin_t_method_has_a_nyud_config():
    methods = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '*_swin-t.py')))
    assert len(methods) >= 18
    for path in methods:
        nyud = load_config(path[:-3] + '_nyud.py')
        plain = Config.fromfile(path)
        assert nyud.model.backbone == plain.model.backbone, path
        assert nyud.model.get('backbone_per_task') == plain.model.get('backbone_per_task')
        assert nyud.model.tasks == ('semseg', 'depth', 'normals', 'edge')
        assert nyud.model.decode_head.losses == {}  # each task's loss from its spec
        assert nyud.model.task_specs['edge']['loss']['loss_weight'] == 50.0
        for loader in (nyud.train_dataloader, nyud.val_dataloader):
            assert loader.dataset.type == 'NYUDMTDataset'
            assert loader.dataset.data_root == 'data/NYUD_MT'
        assert nyud.val_evaluator.tasks == nyud.model.tasks
        assert nyud.train_cfg.max_epochs == 100


def test_nyud_demo_batch_goes_through_the_losses(tmp_path):
    import torch
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS, MODELS

    root = str(tmp_path / 'synthetic_nyud_mt')
    cfg = load_config(
        osp.join(REPO, 'configs', 'demo', 'polyhistor_lite_swin-tiny_synthetic_nyud.py'),
        {'train_dataloader.dataset.data_root': root,
         'train_dataloader.dataset.auto_generate': dict(num_train=4, num_val=1, root=root)})
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 4 and osp.isfile(osp.join(root, 'gt_sets', 'val.txt'))
    model = MODELS.build(cfg.model)
    data = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(2)]), True)
    assert data['inputs'].shape == (2, 3, 72, 96)
    losses = model(**data, mode='loss')
    assert set(losses) >= {'loss_semseg', 'loss_depth', 'loss_normals', 'loss_edge'}
    for value in losses.values():
        assert torch.isfinite(value).all() and value > 0


def test_pascal_edge_is_a_config_choice(tmp_path):
    """PASCAL-Context's fifth task is picked by listing it (``model.tasks``, the datasets'
    and the evaluators' ``tasks``): its labels load and its loss is computed."""
    from mmseg.registry import DATASETS, MODELS

    from mmpoly.engine.build_checks import check_task_agreement
    root = str(tmp_path / 'synthetic_mt')
    tasks = ['semseg', 'human_parts', 'sal', 'normals', 'edge']
    options = {f'{part}.tasks': tasks for part in (
        'model', 'train_dataloader.dataset', 'val_dataloader.dataset',
        'test_dataloader.dataset', 'val_evaluator', 'test_evaluator')}
    options.update({'train_dataloader.dataset.data_root': root,
                    'train_dataloader.dataset.auto_generate': dict(num_train=2, num_val=1,
                                                                   root=root)})
    cfg = load_config(osp.join(REPO, 'configs', 'demo', 'decoder_ft_swin-tiny_synthetic.py'),
                      options)
    check_task_agreement(cfg, 'train')
    assert cfg.model.task_specs['edge']['kind'] == 'edge'
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    model = MODELS.build(cfg.model)
    from mmengine.dataset import pseudo_collate
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    edge = data['data_samples'][0].gt_edge.data
    assert set(edge.unique().tolist()) <= {0, 1, 255} and (edge == 1).any()
    assert 'loss_edge' in model(**data, mode='loss')


def test_tool_writes_the_nyud_layout(tmp_path, monkeypatch, capsys):
    tool = osp.join(REPO, 'tools', 'make_synthetic_data.py')
    monkeypatch.setattr(sys, 'argv', [tool, str(tmp_path / 'n'), '--format', 'nyud_mt',
                                      '--num-train', '2', '--num-val', '1', '--size', '24',
                                      '32'])
    runpy.run_path(tool, run_name='__main__')
    assert 'NYUD_MT' in capsys.readouterr().out
    assert open(tmp_path / 'n' / 'gt_sets' / 'train.txt').read().split() == [
        '000000', '000001']
    for sub, ext in (('images', 'jpg'), ('segmentation', 'png'), ('depth', 'npy'),
                     ('normals', 'npy'), ('edge', 'npy')):
        assert len(glob.glob(str(tmp_path / 'n' / sub / f'*.{ext}'))) == 3
    assert np.load(tmp_path / 'n' / 'depth' / '005000.npy').shape == (24, 32)
