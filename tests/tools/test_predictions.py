"""``test.py --out`` (reference on-disk format), ``eval_predictions.py``, and --out on 2 ranks.

Tolerance of eval_predictions (PNG files) against test.py (in-memory predictions):

* semseg, human_parts: class ids survive uint8 exactly -> equal (0).
* sal: the files hold floor(255 p), which is exactly the quantisation MultiTaskMetric
  applies to in-memory probabilities (``quantize_probability``, as the reference) -> equal.
* normals: the files hold v = floor(255 (n + 1) / 2) per component; read back as
  2 v / 255 - 1, each component moves by less than 2/255, the vector by less than
  |e| = 2 sqrt(3) / 255, so every pixel's angle to the label moves by less than
  arcsin(|e|) = 0.778 degrees (triangle inequality on the sphere). Means and RMS of
  per-pixel angles move by at most that (mErr, rmse); the histogram median by that plus
  one bin (0.05 degrees). Δm moves by at most 0.778 / M_ref(normals) / T x 100.
  The "% under 11.25 / 22.5 / 30" counts have no such bound (pixels near a threshold
  flip) and are not compared.
"""
import json
import math
import os
import os.path as osp
import runpy
import shutil
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

from mmpoly.evaluation.metrics.functional import (DEFAULT_REFERENCE,
                                                  is_human_parts_evaluated, quantize_normals,
                                                  quantize_probability)
from mmpoly.evaluation.prediction_writer import (MultiTaskPredictionWriter,
                                                 encode_prediction, read_prediction,
                                                 write_prediction)
from mmpoly.datasets.transforms.loading import read_png
from tests.pascal import PASCAL_META, PASCAL_SPECS
from mmseg.registry import DATASETS
from .conftest import DEMO, REPO, demo_options, read_json, run_tool

NORMAL_BOUND = math.degrees(math.asin(2 * math.sqrt(3) / 255))  # 0.778 degrees
SUBSET = 15  # odd: 2 ranks pad one sample
ONE_BY_ONE = ['test_dataloader.batch_size=1', f'test_dataloader.dataset.indices={SUBSET}']


def tree(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


# ------------------------------------------------------------------ format, in-process
def test_encoding_round_trips_through_the_metric_quantisation(tmp_path):
    rng = np.random.default_rng(0)
    n = rng.normal(size=(3, 5, 7))
    n /= np.linalg.norm(n, axis=0, keepdims=True)
    p = rng.uniform(size=(1, 5, 7)).astype(np.float32)
    ids = torch.from_numpy(rng.integers(0, 21, size=(1, 5, 7)))
    for task, data in (('semseg', ids), ('sal', torch.from_numpy(p)),
                       ('normals', torch.from_numpy(n).float())):
        write_prediction(str(tmp_path), task, 'a', data, PASCAL_SPECS[task])

    def read(task):
        return read_prediction(str(tmp_path), task, 'a', PASCAL_SPECS[task])

    assert torch.equal(read('semseg'), ids)
    np.testing.assert_array_equal(read('sal')[0],
                                  quantize_probability(p[0]))
    # the normals file read back is exactly the metric's model of the reference round trip
    np.testing.assert_array_equal(read('normals').numpy(),
                                  quantize_normals(torch.from_numpy(n).float().double().numpy()))
    # the file is RGB = (x, y, z), and the dataset's PNG reader sees the same channels
    rgb = read_png(str(tmp_path / 'normals' / 'a.png'))
    assert rgb.shape == (5, 7, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.floor((n[0] + 1) * 255 / 2))
    assert Image.open(tmp_path / 'sal' / 'a.png').mode == 'L'


def test_bad_predictions_are_refused(tmp_path):
    with pytest.raises(ValueError, match='class ids outside'):
        encode_prediction('human_parts', torch.full((1, 2, 2), 7),
                          PASCAL_SPECS['human_parts'])
    with pytest.raises(FileNotFoundError, match=r'semseg[/\\]nope\.png'):
        read_prediction(str(tmp_path), 'semseg', 'nope', PASCAL_SPECS['semseg'])


class _Dataset(list):
    metainfo = PASCAL_META  # the test dataset's, as a PASCAL dataset gives it


class _Sample:
    def __init__(self, idx):
        from mmengine.structures import PixelData
        self.metainfo = dict(img_id=f'{idx:03d}')
        self.pred_semseg = PixelData(data=torch.full((1, 2, 2), idx % 21))

    def __contains__(self, key):
        return hasattr(self, key)


@pytest.mark.parametrize('world', [1, 2, 4])
def test_writer_skips_the_padding_of_the_sampler(tmp_path, monkeypatch, world):
    """Simulate N ranks: every image written exactly once, padded repeats skipped."""
    import mmengine.dataset.sampler as sampler_mod
    from types import SimpleNamespace

    import mmpoly.evaluation.prediction_writer as writer_mod
    size, writes = 15, []
    monkeypatch.setattr(writer_mod, 'write_prediction',
                        lambda out, task, img_id, data, *spec: writes.append(img_id))
    for rank in range(world):
        monkeypatch.setattr(sampler_mod, 'get_dist_info', lambda: (rank, world))
        monkeypatch.setattr(writer_mod, 'get_dist_info', lambda: (rank, world))
        dataset = _Dataset(range(size))
        sampler = sampler_mod.DefaultSampler(dataset, shuffle=False)
        runner = SimpleNamespace(test_dataloader=SimpleNamespace(dataset=dataset,
                                                                 sampler=sampler))
        hook = MultiTaskPredictionWriter(str(tmp_path))
        hook.before_test(runner)
        indices = list(sampler)
        for b in range(0, len(indices), 3):  # batches of 3
            hook.after_test_iter(runner, b, outputs=[_Sample(i) for i in indices[b:b + 3]])
    assert sorted(writes) == [f'{i:03d}' for i in range(size)]


# ----------------------------------------------------------------- tools, subprocess
@pytest.fixture(scope='module')
def trained(tmp_path_factory, demo_data):
    """A briefly trained demo model (1 epoch of 16 images = 2 iterations)."""
    work = tmp_path_factory.mktemp('pred_train')
    run_tool(sys.executable, 'tools/train.py', DEMO, '--work-dir', str(work),
             *demo_options(demo_data, 1, 'train_cfg.val_interval=100',
                           'train_dataloader.dataset.indices=16'))
    return str(work / 'epoch_1.pth')


@pytest.fixture(scope='module')
def one_rank(tmp_path_factory, demo_data, trained):
    work = tmp_path_factory.mktemp('pred_one')
    run_tool(sys.executable, 'tools/test.py', DEMO, trained, '--work-dir', str(work / 'work'),
             '--out', str(work / 'out'), '--show-dir', str(work / 'show'),
             *demo_options(demo_data, 1, *ONE_BY_ONE))
    return work


def test_out_writes_every_task_at_the_original_size(one_rank, demo_data):
    out = one_rank / 'out'
    with open(osp.join(demo_data, 'ImageSets', 'Context', 'val.txt')) as f:
        ids = [line.strip() for line in f if line.strip()][:SUBSET]
    for task in ('semseg', 'human_parts', 'sal', 'normals'):
        assert sorted(os.listdir(out / task)) == sorted(f'{i}.png' for i in ids)
        for img_id in ids:
            img = Image.open(osp.join(demo_data, 'JPEGImages', f'{img_id}.jpg'))
            pred = Image.open(out / task / f'{img_id}.png')
            assert pred.size == img.size
            assert pred.mode == ('RGB' if task == 'normals' else 'L')
    # --show-dir: one picture per image, input + 4 tasks wide, GT and prediction rows
    from mmpoly.visualization.multi_task_visualizer import TITLE_HEIGHT
    assert sorted(os.listdir(one_rank / 'show')) == sorted(f'{i}.png' for i in ids)
    w, h = img.size
    assert Image.open(one_rank / 'show' / f'{ids[0]}.png').size == (
        5 * w, 2 * (h + TITLE_HEIGHT))


def test_eval_predictions_agrees_with_test_within_the_png_quantisation(
        one_rank, demo_data, tmp_path):
    from_test = read_json(one_rank / 'work' / 'test_metrics.json')
    proc = run_tool(sys.executable, 'tools/eval_predictions.py', DEMO, str(one_rank / 'out'),
                    '--json', *demo_options(demo_data, 1, *ONE_BY_ONE))
    from_files = json.loads(proc.stdout)
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'sal/maxF'):
        assert from_files[key] == pytest.approx(from_test[key], abs=1e-9), key
    for key in ('normals/mErr', 'normals/rmse'):
        assert abs(from_files[key] - from_test[key]) <= NORMAL_BOUND, key
    assert abs(from_files['normals/median'] - from_test['normals/median']) <= NORMAL_BOUND + .05
    dm_bound = NORMAL_BOUND / DEFAULT_REFERENCE['normals'] / 4 * 100
    assert abs(from_files['delta_m'] - from_test['delta_m']) <= dm_bound
    # the quantisation is really there (the comparison above is not vacuous)
    assert from_files['normals/mErr'] != from_test['normals/mErr']

    # human_parts files are needed only for images with a person (as the reference) ...
    eval_predictions = runpy.run_path(osp.join(REPO, 'tools', 'eval_predictions.py'))
    cfg = Config.fromfile(osp.join(REPO, DEMO))
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': demo_data,
                         'test_dataloader.dataset.indices': SUBSET})
    shutil.copytree(one_rank / 'out', tmp_path / 'out')
    init_default_scope('mmseg')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    samples = [dataset[i]['data_samples'] for i in range(len(dataset))]
    no_person = [s.img_id for s in samples
                 if not is_human_parts_evaluated(s.gt_human_parts.data)]
    assert 0 < len(no_person) < len(samples)
    for img_id in no_person:
        os.remove(tmp_path / 'out' / 'human_parts' / f'{img_id}.png')
    assert eval_predictions['evaluate_folder'](cfg, str(tmp_path / 'out')) == from_files

    # ... every other missing file is an error naming it
    missing = tmp_path / 'out' / 'sal' / sorted(os.listdir(tmp_path / 'out' / 'sal'))[3]
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=f'prediction file missing: {missing}'):
        eval_predictions['evaluate_folder'](cfg, str(tmp_path / 'out'))


def test_out_on_two_gloo_ranks_writes_the_same_files(one_rank, demo_data, trained,
                                                     tmp_path):
    # 15 images on 2 ranks: rank 1 gets a padded repeat of image 0, which is not rewritten
    run_tool('bash', 'tools/dist_test.sh', DEMO, trained, '2', '--work-dir',
             str(tmp_path / 'work'), '--out', str(tmp_path / 'out'),
             *demo_options(demo_data, 1, *ONE_BY_ONE))
    one, two = tree(one_rank / 'out'), tree(tmp_path / 'out')
    assert len(one) == 4 * SUBSET
    assert sorted(two) == sorted(one)
    assert all(two[k] == one[k] for k in one)
    # and the metrics of the uneven split are exactly the 1-rank ones
    assert read_json(tmp_path / 'work' / 'test_metrics.json') == read_json(
        one_rank / 'work' / 'test_metrics.json')
