"""NYUD-v2 metrics (depth RMSE / log-RMSE, edge ODS / OIS and the edge loss proxy) and losses
against hand computations and the reference's own formulas (Multi-Task-Learning-PyTorch,
re-typed here), on 2 gloo ranks, and through prediction files."""
import json
import math
import os
import os.path as osp
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmpoly.evaluation import MultiTaskMetric
from mmpoly.evaluation.metrics.functional import (EdgeMatcher, edge_image_stats, edge_scores,
                                                  match_edge_pixels, regression_image_stats,
                                                  regression_scores)
from mmpoly.evaluation.prediction_writer import read_prediction, write_prediction
from mmpoly.models.losses import BalancedBCELoss, RegressionL1Loss
from mmpoly.tasks import resolve_task_specs

SPECS = dict(
    semseg=dict(kind='class', num_outputs=40, ignore_index=255),
    depth=dict(kind='regression', num_outputs=1, ignore_index=0, prediction_format='mat',
               positive=True),
    normals=dict(kind='normal', num_outputs=3, ignore_index=0),
    edge=dict(kind='edge', num_outputs=1, ignore_index=255, max_dist=0.011))
TASKS = tuple(SPECS)


def sample(**fields):
    ds = SegDataSample()
    for name, arr in fields.items():
        ds.set_field(PixelData(data=torch.as_tensor(arr)), name)
    return ds


def metric(**kwargs):
    kwargs.setdefault('tasks', TASKS)
    return MultiTaskMetric(reference=kwargs.pop('reference', {}), task_specs=SPECS, **kwargs)


# ------------------------------------------------------------------------ depth
def test_depth_rmse_and_log_rmse_hand_computed():
    # image 1: valid gt 1, 2, 4 (one invalid 0); image 2: valid gt 2 (pred -1 -> 1e-9 in logs)
    gt1, pred1 = np.array([[1., 2.], [4., 0.]]), np.array([[2., 2.], [2., 9.]])
    gt2, pred2 = np.array([[2., 0.]]), np.array([[-1., 5.]])
    scores = regression_scores([regression_image_stats(pred1, gt1, positive=True),
                                regression_image_stats(pred2, gt2, positive=True)])
    # pooled per pixel over the split: 4 valid pixels; pred -1 counts as 1e-9 (reference)
    assert scores['num_pixels'] == 4
    assert scores['rmse'] == pytest.approx(math.sqrt((1 + 0 + 4 + (2 - 1e-9)**2) / 4))
    logs = [math.log(1 / 2), 0.0, math.log(4 / 2), math.log(2) - math.log(1e-9)]
    assert scores['log_rmse'] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    assert scores['mae'] == pytest.approx((1 + 0 + 2 + 2 - 1e-9) / 4)
    # a signed quantity: no clipping and no log
    signed = regression_scores([regression_image_stats(pred2, gt2)])
    assert signed['rmse'] == pytest.approx(3.0) and 'log_rmse' not in signed


def reference_eval_depth(pairs):
    """``eval_depth`` of the reference (evaluation/eval_depth.py), re-typed in float64."""
    total_rmses = total_log_rmses = n_valid = 0.0
    for pred, label in pairs:
        pred, label = pred.astype(np.float64).copy(), label.astype(np.float64).copy()
        valid_mask = label != 0
        n_valid += np.sum(valid_mask)
        label[label == 0] = 1e-9
        pred[pred <= 0] = 1e-9
        total_log_rmses += np.sum((np.log(label[valid_mask]) - np.log(pred[valid_mask]))**2)
        total_rmses += np.sum((label[valid_mask] - pred[valid_mask])**2)
    return dict(rmse=np.sqrt(total_rmses / n_valid), log_rmse=np.sqrt(total_log_rmses / n_valid))


def random_depth(rng, h=12, w=16):
    gt = rng.uniform(0.5, 6.0, (1, h, w)).astype(np.float32)
    gt[rng.random(gt.shape) < 0.2] = 0  # invalid
    pred = (gt + rng.normal(0, 0.5, gt.shape)).astype(np.float32)  # some <= 0
    return pred, gt


def test_depth_metric_equals_the_reference_formula():
    rng = np.random.default_rng(1)
    pairs = [random_depth(rng, 12 + i, 16) for i in range(5)]
    m = metric(tasks=('depth', ))
    m.process({}, [sample(gt_depth=g, pred_depth=p) for p, g in pairs])
    got = m.evaluate(len(pairs))
    ref = reference_eval_depth(pairs)
    assert got['depth/rmse'] == pytest.approx(ref['rmse'], rel=1e-12)
    assert got['depth/log_rmse'] == pytest.approx(ref['log_rmse'], rel=1e-12)


def test_depth_loss_is_the_reference_l1_on_valid_depth():
    rng = np.random.default_rng(2)
    pred, gt = random_depth(rng)
    pred, gt = torch.from_numpy(pred)[None], torch.from_numpy(gt)[None]
    # the reference: AddIgnoreRegions sets depth 0 -> 255, DepthLoss masks label != 255
    label = torch.where(gt == 0, torch.full_like(gt, 255.), gt)
    mask = label != 255
    expected = torch.nn.L1Loss()(torch.masked_select(pred, mask), torch.masked_select(label, mask))
    got = RegressionL1Loss(ignore_index=0)(pred, gt[:, 0])
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------------- normals
def reference_eval_normals(pairs):
    """``eval_normals`` of the reference (evaluation/eval_normals.py), re-typed: the
    prediction's 8-bit PNG read back, normalised with +1e-12; angles pooled over pixels."""
    def normal_ize(arr):
        return arr / (np.linalg.norm(arr, ord=2, axis=2)[..., None] + 1e-12)
    deg = []
    for pred, label in pairs:
        png = np.floor((pred / np.linalg.norm(pred, axis=0, keepdims=True) + 1) * 255 / 2)
        pred = normal_ize((2. * png.astype(np.float32) / 255. - 1).transpose(1, 2, 0))
        label = label.transpose(1, 2, 0).copy()
        valid = np.linalg.norm(label, ord=2, axis=2) != 0
        pred[~valid, :] = 0.
        label = normal_ize(label)
        d = np.rad2deg(np.arccos(np.clip(np.sum(pred * label, axis=2), -1, 1)))
        deg.extend(d[valid])
    deg = np.array(deg)
    return dict(mErr=np.mean(deg), rmse=np.mean(deg**2)**0.5,
                **{k: np.mean(deg < t) * 100 for k, t in (('11.25', 11.25), ('22.5', 22.5),
                                                          ('30', 30))})


def test_normals_metric_equals_the_reference_formula():
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(3):
        gt = rng.normal(size=(3, 10, 12))
        gt /= np.linalg.norm(gt, axis=0, keepdims=True)
        gt[:, :2] = 0  # invalid rows
        pred = gt + rng.normal(0, 0.4, gt.shape)
        pairs.append((pred.astype(np.float32), gt.astype(np.float32)))
    m = metric(tasks=('normals', ), quantize_normals=True)
    m.process({}, [sample(gt_normals=g, pred_normals=p) for p, g in pairs])
    got = m.evaluate(len(pairs))
    ref = reference_eval_normals(pairs)
    # float32 vs float64 and the reference's +1e-12: far below 1e-3 degrees
    for key in ('mErr', 'rmse'):
        assert got[f'normals/{key}'] == pytest.approx(ref[key], abs=1e-3)
    for key in ('11.25', '22.5', '30'):
        assert got[f'normals/{key}'] == pytest.approx(ref[key], abs=1e-9)


# ------------------------------------------------------------------------ edges
def line_image(cols_probs, gt_col, size=8):
    """An 8x8 edge label with one vertical edge line at ``gt_col`` and a prediction with
    vertical lines of the given probabilities."""
    gt = np.zeros((size, size), np.uint8)
    gt[:, gt_col] = 1
    pred = np.zeros((size, size), np.float32)
    for col, p in cols_probs.items():
        pred[:, col] = p
    return pred, gt


THRESHOLDS = np.round(np.arange(1, 100) * 0.01, 2)


def at(t):
    return int(np.flatnonzero(np.isclose(THRESHOLDS, t))[0])


def test_edge_ods_on_8x8_where_the_tolerance_matters():
    # label: column 3; prediction: column 4 at 0.9 (1 px off), column 7 at 0.3 (4 px off)
    pred, gt = line_image({4: 0.9, 7: 0.3}, gt_col=3)
    # diagonal 8 sqrt(2) = 11.3 px: max_dist 0.15 -> 1.7 px (the shifted line matches),
    # 0.011 -> 0.12 px (nothing matches)
    loose = edge_image_stats(pred, gt, THRESHOLDS, max_dist=0.15)
    # 255 p truncated: 0.3 -> 76 (76/255 = 0.298), 0.9 -> 229 (0.898)
    for t, counts in ((0.29, (8, 8, 8, 16)), (0.30, (8, 8, 8, 8)), (0.89, (8, 8, 8, 8)),
                      (0.90, (0, 8, 0, 0))):
        assert tuple(loose[:, at(t)]) == counts, t
    scores = edge_scores([loose], THRESHOLDS)
    # F: 2/3 up to 0.29 (P 1/2, R 1), 1 from 0.30 to 0.89, 0 from 0.90 (nothing predicted)
    f = scores['F']
    np.testing.assert_allclose(f[:at(0.30)], 2 / 3)
    np.testing.assert_allclose(f[at(0.30):at(0.90)], 1.0)
    np.testing.assert_allclose(f[at(0.90):], 0.0)
    assert scores['odsF'] == pytest.approx(100.0)
    assert scores['ods_threshold'] == pytest.approx(0.30)
    tight = edge_scores([edge_image_stats(pred, gt, THRESHOLDS, max_dist=0.011)], THRESHOLDS)
    assert tight['odsF'] == 0.0


def test_edge_ods_and_ois_over_two_images_and_ignore():
    # exact matches only (0.011 of an 8x8 diagonal is 0.12 px)
    a = line_image({2: 0.85, 6: 0.45}, gt_col=2)  # 216/255, 114/255
    b = line_image({5: 0.35, 1: 0.25}, gt_col=5)  # 89/255, 63/255
    stats = [edge_image_stats(p, g, THRESHOLDS, max_dist=0.011) for p, g in (a, b)]
    s = edge_scores(stats, THRESHOLDS)
    # summed (cntR, sumR, cntP, sumP): t <= .24: (16,16,16,32) F 2/3; .25-.34: (16,16,16,24)
    # F 0.8; .35-.44: (8,16,8,16) F 1/2; .45-.84: (8,16,8,8) F 2/3; >= .85: nothing, F 0
    expected = np.zeros(99)
    expected[:at(0.25)] = 2 / 3
    expected[at(0.25):at(0.35)] = 0.8
    expected[at(0.35):at(0.45)] = 0.5
    expected[at(0.45):at(0.85)] = 2 / 3
    np.testing.assert_allclose(s['F'], expected)
    assert s['odsF'] == pytest.approx(80.0)
    assert s['ods_threshold'] == pytest.approx(0.25)
    # OIS: image a at 0.45 and image b at 0.25 are both perfect
    assert s['oisF'] == pytest.approx(100.0)
    # an ignore label over image a's false positive column takes it out of the counts
    pred, gt = a
    gt = gt.copy()
    gt[:, 6] = 255
    fixed = edge_image_stats(pred, gt, THRESHOLDS, max_dist=0.011)
    assert tuple(fixed[:, at(0.01)]) == (8, 8, 8, 8)
    assert edge_image_stats(pred, np.full_like(gt, 255), THRESHOLDS) is None


def test_matching_is_a_maximum_bipartite_matching_within_the_radius():
    from scipy.optimize import linear_sum_assignment
    rng = np.random.default_rng(7)
    # the last two: a sparse label, so that most predicted pixels have nothing in reach
    for density, gt_density, radius in ((0.25, 0.25, 1.5), (0.4, 0.4, 2.3), (0.15, 0.15, 3.0),
                                        (0.5, 0.5, 1.0), (0.5, 0.03, 1.5), (0.3, 0.01, 2.0)):
        gt = rng.random((12, 14)) < gt_density
        matcher = EdgeMatcher(gt, radius)  # one label, several predictions (thresholds)
        for _ in range(3):
            pred = rng.random((12, 14)) < density
            p, g = np.argwhere(pred), np.argwhere(gt)
            # oracle: the largest set of pairs at distance <= radius (0/1 assignment costs)
            far = np.linalg.norm(p[:, None] - g[None], axis=2) > radius
            rows, cols = linear_sum_assignment(far)
            expected = int((~far[rows, cols]).sum())
            assert match_edge_pixels(pred, gt, radius) == matcher.match(pred) == expected
    none = np.zeros((12, 14), bool)
    assert EdgeMatcher(none, 2.0).match(~none) == EdgeMatcher(~none, 2.0).match(none) == 0
    one = np.zeros((3, 3), bool)
    one[0, 0] = True
    other = np.zeros((3, 3), bool)
    other[0, 2] = True
    assert match_edge_pixels(one, other, 2.0) == 1  # exactly at the tolerance
    assert match_edge_pixels(one, other, 1.99) == 0


def reference_balanced_ce(output, label, pos_weight):
    """``BalancedCrossEntropyLoss(size_average=True, pos_weight=...)`` of the reference
    (losses/loss_functions.py), re-typed, without void pixels."""
    labels = torch.ge(label, 0.5).float()
    w = pos_weight
    output_gt_zero = torch.ge(output, 0).float()
    loss_val = torch.mul(output, (labels - output_gt_zero)) - torch.log(
        1 + torch.exp(output - 2 * torch.mul(output, output_gt_zero)))
    loss_pos = torch.sum(-torch.mul(labels, loss_val))
    loss_neg = torch.sum(-torch.mul(1.0 - labels, loss_val))
    return (w * loss_pos + (1 - w) * loss_neg) / float(np.prod(label.size()))


def test_edge_training_loss_is_the_reference_weighted_bce():
    rng = np.random.default_rng(4)
    logits = torch.from_numpy(rng.normal(0, 3, (2, 1, 6, 7)))
    label = torch.from_numpy((rng.random((2, 1, 6, 7)) < 0.2).astype(np.float64))
    loss = resolve_task_specs(('edge', ), SPECS)['edge'].default_loss
    assert loss == dict(type='BalancedBCELoss', pos_weight=0.95)
    got = BalancedBCELoss(pos_weight=0.95)(logits, label[:, 0].long())
    torch.testing.assert_close(got, reference_balanced_ce(logits, label, 0.95).float(),
                               rtol=1e-6, atol=1e-7)


def test_edge_loss_proxy_is_the_reference_edge_meter():
    rng = np.random.default_rng(5)
    images = [(rng.random((1, 6 + i, 7)).astype(np.float32),
               (rng.random((1, 6 + i, 7)) < 0.3).astype(np.uint8)) for i in range(3)]
    m = metric(tasks=('edge', ), edge_ods=False)
    m.process({}, [sample(gt_edge=g, pred_edge=p) for p, g in images])
    got = m.evaluate(len(images))
    assert set(got) == {'edge/loss'}
    # the reference's EdgeMeter: loss of 255 sigmoid / 255 (the PNG's q / 255 here), as
    # the loss's *input*, weighted by the pixel count of each image
    total = n = 0.0
    for p, g in images:
        q = torch.from_numpy(np.floor(p * np.float32(255)).astype(np.float64) / 255.0)
        total += reference_balanced_ce(q, torch.from_numpy(g).double(), 0.95).item() * g.size
        n += g.size
    assert got['edge/loss'] == pytest.approx(total / n, rel=1e-9)


# ----------------------------------------------------------- the metric, Δm, ranks
def nyud_samples(n=5, seed=6):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 10 + i, 12
        pred_d, gt_d = random_depth(rng, h, w)
        nrm = rng.normal(size=(3, h, w)).astype(np.float32)
        edge = np.zeros((1, h, w), np.uint8)
        edge[0, :, 3 + i % 4] = 1
        edge[0, 0, :] = 255
        prob = np.clip(edge[0] * 0.7 + rng.random((h, w)) * 0.4, 0, 1)[None]
        sem = rng.integers(0, 40, (1, h, w))
        sem[0, :1] = 255
        out.append(sample(
            gt_semseg=sem, pred_semseg=rng.integers(0, 40, (1, h, w)),
            gt_depth=gt_d, pred_depth=pred_d,
            gt_normals=nrm, pred_normals=nrm + rng.normal(0, .5, nrm.shape).astype(np.float32),
            gt_edge=edge, pred_edge=prob.astype(np.float32)))
    return out


REFERENCE = dict(semseg=40.0, depth=0.6, normals=20.0, edge=70.0)


def test_all_four_tasks_and_delta_m_directions():
    m = metric(reference=REFERENCE)
    samples = nyud_samples()
    m.process({}, samples)
    got = m.evaluate(len(samples))
    assert set(got) == {'semseg/mIoU', 'depth/rmse', 'depth/log_rmse', 'depth/mae',
                        'normals/mErr', 'normals/median', 'normals/rmse', 'normals/11.25',
                        'normals/22.5', 'normals/30', 'edge/odsF', 'edge/oisF', 'edge/loss',
                        'delta_m'}
    assert all(math.isfinite(v) for v in got.values())
    # Δm: + for higher-is-better mIoU and odsF, - for lower-is-better rmse and mErr
    expected = ((got['semseg/mIoU'] - 40) / 40 - (got['depth/rmse'] - .6) / .6
                - (got['normals/mErr'] - 20) / 20 + (got['edge/odsF'] - 70) / 70) / 4 * 100
    assert got['delta_m'] == pytest.approx(expected)


def _rank_worker(rank, world, port, out_path):
    import torch.distributed as dist
    from mmengine.dist import get_dist_info
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    assert get_dist_info() == (rank, world)
    samples = nyud_samples()
    # DefaultSampler's order: rank r takes r, r + N, ...; the last round padded from the start
    padded = list(range(len(samples))) + list(range(-len(samples) % world))
    m = metric(reference=REFERENCE)
    for index in padded[rank::world]:
        m.process({}, [samples[index]])
    got = m.evaluate(len(samples))  # collect_results over gloo, padding dropped
    if rank == 0:
        with open(out_path, 'w') as f:
            json.dump(got, f)
    dist.destroy_process_group()


def test_two_gloo_ranks_on_an_uneven_split_equal_one_rank(tmp_path):
    from tests.tools.conftest import free_port
    out = str(tmp_path / 'two_ranks.json')
    # fork: the ranks inherit the imports (spawn would import torch and mmseg again)
    ranks = mp.start_processes(_rank_worker, args=(2, free_port(), out), nprocs=2,
                               join=False, start_method='fork')
    deadline = time.monotonic() + 300  # 1 s here: a hung rank fails this test, not the suite
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail('two gloo ranks did not end within 300 s')
    with open(out) as f:
        two = json.load(f)
    one = metric(reference=REFERENCE)
    samples = nyud_samples()
    one.process({}, samples)
    assert two == one.evaluate(len(samples))  # exact: integer counts and fsum


def test_prediction_files_score_what_the_metric_scores_in_memory(tmp_path):
    samples = nyud_samples(3)
    specs = resolve_task_specs(TASKS, SPECS)
    in_memory = metric(quantize_normals=True)  # normals: the PNG's quantisation
    in_memory.process({}, samples)
    expected = in_memory.evaluate(len(samples))
    from_files = metric()
    for i, s in enumerate(samples):
        read = SegDataSample()
        for task in TASKS:
            write_prediction(str(tmp_path), task, f'img{i}', s.get(f'pred_{task}').data,
                             specs[task])
            read.set_field(s.get(f'gt_{task}'), f'gt_{task}')
            read.set_field(PixelData(data=read_prediction(str(tmp_path), task, f'img{i}',
                                                          specs[task])), f'pred_{task}')
        from_files.process({}, [read])
    assert sorted(os.listdir(tmp_path / 'depth')) == ['img0.mat', 'img1.mat', 'img2.mat']
    from scipy.io import loadmat
    depth = loadmat(str(tmp_path / 'depth' / 'img0.mat'))['depth']
    assert depth.dtype == np.float32 and depth.shape == (10, 12)  # the reference's layout
    assert osp.isfile(tmp_path / 'edge' / 'img0.png')
    got = from_files.evaluate(len(samples))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


# -------------------------------------------------------------- the NYUD demo, end to end
NYUD_DEMO = 'configs/demo/polyhistor_lite_swin-tiny_synthetic_nyud.py'


def test_nyud_demo_trains_tests_writes_and_scores_its_predictions(tmp_path):
    """tools/train.py (1 epoch on 8 synthetic NYUD_MT images), tools/test.py --out, and
    tools/eval_predictions.py on the files: finite metrics for all four tasks, and the
    files score what test.py scored in memory (normals: within the PNG's 0.778 degrees)."""
    import sys
    from tests.tools.conftest import REPO, demo_options, read_json, run_tool
    from tests.tools.test_predictions import NORMAL_BOUND
    root = str(tmp_path / 'synthetic_nyud_mt')
    generate = [f'{split}_dataloader.dataset.auto_generate.{key}={value}'
                for split in ('train', 'val', 'test')
                for key, value in (('root', root), ('num_train', 8), ('num_val', 3))]
    options = demo_options(root, 1, *generate, 'train_dataloader.batch_size=4',
                           'val_dataloader.batch_size=3', 'test_dataloader.batch_size=3',
                           'train_cfg.val_interval=2')  # no validation: test.py evaluates
    work = str(tmp_path / 'work')
    run_tool(sys.executable, 'tools/train.py', NYUD_DEMO, '--work-dir', work, *options)
    out = str(tmp_path / 'out')
    run_tool(sys.executable, 'tools/test.py', NYUD_DEMO, osp.join(work, 'epoch_1.pth'),
             '--work-dir', work, '--out', out, *options)
    from_test = read_json(osp.join(work, 'test_metrics.json'))
    keys = {'semseg/mIoU', 'depth/rmse', 'normals/mErr', 'edge/odsF', 'edge/loss'}
    assert keys <= set(from_test)
    assert all(math.isfinite(from_test[k]) for k in keys), from_test
    with open(osp.join(root, 'gt_sets', 'val.txt')) as f:
        ids = sorted(line.strip() for line in f if line.strip())
    for task in TASKS:
        names = sorted(os.listdir(osp.join(out, task)))
        assert [osp.splitext(n)[0] for n in names] == ids, task
    # eval_predictions in this process (its evaluate_folder; the CLI is tests/tools')
    import runpy
    from mmengine.config import DictAction
    from mmpoly.engine import load_config
    evaluate_folder = runpy.run_path(osp.join(REPO, 'tools',
                                              'eval_predictions.py'))['evaluate_folder']
    test_options = [arg.split('=', 1) for arg in options[1:]
                    if arg.startswith('test_dataloader.')]
    cfg = load_config(osp.join(REPO, NYUD_DEMO),
                      {k: DictAction._parse_iterable(v) for k, v in test_options})
    from_files = evaluate_folder(cfg, out)
    for key, value in from_test.items():
        if '/' not in key:
            continue  # not a metric (checkpoint, ...)
        if key.startswith('normals/'):
            if key in ('normals/mErr', 'normals/rmse'):
                assert abs(from_files[key] - value) <= NORMAL_BOUND, key
        elif key != 'delta_m':
            assert from_files[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_edge_benchmark_tool_times_a_synthetic_pair(monkeypatch, capsys):
    """tools/benchmark_edges.py: the synthetic prediction peaks on the label's edges, so
    its best threshold recovers most of them; the timing is reported per image."""
    import runpy
    from mmpoly.benchmark.edges import synthetic_edge_pair
    prob, label = synthetic_edge_pair(96, 128, seed=3)
    s = edge_image_stats(prob, label, max_dist=0.011)
    assert label.sum() > 100 and edge_scores([s])['odsF'] > 50
    monkeypatch.setattr('sys.argv', ['benchmark_edges.py', '--height', '48', '--width', '64',
                                     '--images', '1', '--json'])
    runpy.run_path('tools/benchmark_edges.py', run_name='__main__')
    result = json.loads(capsys.readouterr().out)
    assert result['seconds_per_image'] > 0 and result['label_pixels'][0] > 0
    assert result['odsF'] > 50
