"""MultiTaskMetric and its pure functions against hand-computed cases."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

from mmpoly.evaluation import (confusion_image_stats,
                               normals_image_stats, normals_scores, sal_image_stats,
                               sal_scores)

from tests.pascal import PASCAL_METRIC, pascal_delta_m, pascal_metric

ALL_KEYS = {'semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'sal/maxF', 'normals/mErr',
            'normals/median', 'normals/rmse', 'normals/11.25', 'normals/22.5',
            'normals/30', 'delta_m'}


def make_sample(as_dict=True, **fields):
    """A data sample with gt_/pred_ PixelData fields from numpy arrays."""
    ds = SegDataSample()
    for name, arr in fields.items():
        ds.set_field(PixelData(data=torch.as_tensor(arr)), name)
    return ds.to_dict() if as_dict else ds


def run_metric(metric, samples):
    metric.process({}, samples)
    return metric.evaluate(len(samples))


# ----------------------------------------------------------------------- semseg
SEM_GT = np.array([[[0, 1, 1], [2, 255, 0]]])
SEM_PRED = np.array([[[0, 1, 2], [2, 1, 1]]])


def test_confusion_stats_hand_computed():
    tp, fp, fn = confusion_image_stats(SEM_PRED, SEM_GT, 21)
    # class 0: tp (0,0), fn (1,2); class 1: tp (0,1), fp (1,2), fn (0,2);
    # class 2: tp (1,0), fp (0,2); the ignored pixel (1,1) counts nowhere.
    assert tp[:3].tolist() == [1, 1, 1] and fp[:3].tolist() == [0, 1, 1]
    assert fn[:3].tolist() == [1, 1, 0]
    assert tp[3:].sum() == fp[3:].sum() == fn[3:].sum() == 0


def test_semseg_miou_hand_computed():
    res = run_metric(pascal_metric(tasks=['semseg']),
                     [make_sample(gt_semseg=SEM_GT, pred_semseg=SEM_PRED)])
    # IoU = 1/2, 1/3, 1/2 and 0 for the 18 classes that never occur (reference rule)
    expected = (1 / 2 + 1 / 3 + 1 / 2) / 21 * 100
    assert res['semseg/mIoU'] == pytest.approx(expected, rel=1e-12)
    assert set(res) == {'semseg/mIoU', 'delta_m'}
    assert res['delta_m'] == pytest.approx((expected - 67.21) / 67.21 * 100)


# ------------------------------------------------------------------ human parts
def test_human_parts_skips_images_without_person():
    gt = np.array([[[0, 1, 1], [2, 255, 0]]])
    pred = np.array([[[0, 1, 2], [2, 1, 1]]])
    person = make_sample(gt_human_parts=gt, pred_human_parts=pred)
    all_ignore = make_sample(gt_human_parts=np.full((1, 2, 3), 255),
                             pred_human_parts=np.full((1, 2, 3), 3))
    all_bg = make_sample(gt_human_parts=np.zeros((1, 2, 3), dtype=np.int64),
                         pred_human_parts=np.full((1, 2, 3), 3))
    res = run_metric(pascal_metric(tasks=['human_parts'], reference={}),
                     [person, all_ignore, all_bg])
    assert res == {'human_parts/mIoU': pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 7 * 100)}

    # background + ignore only is NOT skipped by the reference: its pixels count
    bg_ign = make_sample(gt_human_parts=np.array([[[0, 0, 255]]]),
                         pred_human_parts=np.array([[[0, 4, 4]]]))
    res = run_metric(pascal_metric(tasks=['human_parts'], reference={}), [bg_ign])
    # class 0: tp 1, fn 1 -> 1/2; class 4: fp 1 -> 0
    assert res['human_parts/mIoU'] == pytest.approx(0.5 / 7 * 100)


# --------------------------------------------------------------------- saliency
SAL_T = (0.2, 0.4, 0.6)


def sal_samples():
    # quantised to 229, 127, 76, 25 (truncation of 255 p)
    s1 = make_sample(gt_sal=np.array([[[1, 1, 0, 0]]]),
                     pred_sal=np.array([[[0.9, 0.5, 0.3, 0.1]]], dtype=np.float32))
    # no salient label; the third pixel is ignored
    s2 = make_sample(gt_sal=np.array([[[0, 0, 255, 0]]]),
                     pred_sal=np.array([[[0.1, 0.3, 0.9, 0.1]]], dtype=np.float32))
    return [s1, s2]


def test_sal_hand_computed():
    res = run_metric(pascal_metric(tasks=['sal'], sal_thresholds=SAL_T, reference={}),
                     sal_samples())
    # image 1: t=.2 -> tp2 fp1 fn0 (J 2/3, P 2/3, R 1); t=.4 -> J P R = 1;
    #          t=.6 -> tp1 fp0 fn1 (J 1/2, P 1, R 1/2)
    # image 2: t=.2 -> fp1 (J 0, P 0, R 0); t=.4, .6 -> nothing salient (J 1, P 0, R 0)
    m_iou = np.array([(2 / 3 + 0) / 2, (1 + 1) / 2, (1 / 2 + 1) / 2])
    m_p = np.array([(2 / 3 + 0) / 2, (1 + 0) / 2, (1 + 0) / 2])
    m_r = np.array([(1 + 0) / 2, (1 + 0) / 2, (1 / 2 + 0) / 2])
    f = 2 * m_p * m_r / (m_p + m_r)
    assert f.tolist() == pytest.approx([0.4, 0.5, 1 / 3])
    assert res['sal/mIoU'] == pytest.approx(m_iou.max() * 100)
    assert res['sal/maxF'] == pytest.approx(f.max() * 100, rel=1e-9)

    stats = [sal_image_stats(s['pred_sal']['data'], s['gt_sal']['data'], SAL_T)
             for s in sal_samples()]
    assert stats[0].tolist() == [[2, 2, 1], [1, 0, 0], [0, 0, 1]]
    detail = sal_scores(stats)
    assert detail['mIoUs'].tolist() == pytest.approx(m_iou.tolist())
    assert detail['mPrec'].tolist() == pytest.approx(m_p.tolist())
    assert detail['mRec'].tolist() == pytest.approx(m_r.tolist())


def test_sal_quantisation_tie_and_uint8_input():
    gt = np.ones((1, 1, 2), dtype=np.int64)
    # 255 * p truncates to 51 and 52; 51/255 == 0.2 is not above the threshold 0.2
    pred = np.array([[[51.5 / 255, 52.5 / 255]]], dtype=np.float32)
    tp, fp, fn = sal_image_stats(pred, gt, (0.2, ))
    assert (tp[0], fn[0]) == (1, 1)
    q = np.array([[[51, 52]]], dtype=np.uint8)
    assert sal_image_stats(q, gt, (0.2, )).tolist() == [[1], [0], [1]]


def test_sal_all_ignored_image_is_skipped():
    samples = sal_samples() + [make_sample(gt_sal=np.full((1, 1, 4), 255),
                                           pred_sal=np.ones((1, 1, 4), np.float32))]
    res = run_metric(pascal_metric(tasks=['sal'], sal_thresholds=SAL_T, reference={}),
                     samples)
    ref = run_metric(pascal_metric(tasks=['sal'], sal_thresholds=SAL_T, reference={}),
                     sal_samples())
    assert res == ref


# ---------------------------------------------------------------------- normals
def normal_samples():
    # image 1: angles 0, 90, 180 and one invalid pixel (zero label)
    gt1 = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]], np.float32).reshape(3, 1, 4)
    pr1 = np.array([[0, 0, 0, 7], [0, 2, -1, 7], [5, 0, 0, 7]], np.float32).reshape(3, 1, 4)
    # image 2: one pixel at 60 degrees
    gt2 = np.array([1, 0, 0], np.float32).reshape(3, 1, 1)
    pr2 = np.array([0.5, math.sqrt(3) / 2, 0], np.float32).reshape(3, 1, 1)
    # image 3: no valid pixel at all
    gt3, pr3 = np.zeros((3, 2, 2), np.float32), np.ones((3, 2, 2), np.float32)
    return [make_sample(gt_normals=g, pred_normals=p)
            for g, p in ((gt1, pr1), (gt2, pr2), (gt3, pr3))]


def test_normals_hand_computed():
    metric = pascal_metric(tasks=['normals'], reference=dict(normals=90.0))
    res = run_metric(metric, normal_samples()[:1])
    assert res['normals/mErr'] == pytest.approx(90.0)
    assert res['normals/rmse'] == pytest.approx(math.sqrt((0 + 90**2 + 180**2) / 3))
    assert abs(res['normals/median'] - 90.0) <= 0.05 / 2 + 1e-9  # half a bin
    for k in ('11.25', '22.5', '30'):
        assert res[f'normals/{k}'] == pytest.approx(100 / 3)
    assert res['delta_m'] == pytest.approx(0.0, abs=1e-9)

    # pooled over images: angles 0, 90, 180, 60
    res = run_metric(metric, normal_samples())
    assert res['normals/mErr'] == pytest.approx(82.5, rel=1e-6)
    assert res['normals/rmse'] == pytest.approx(105.0, rel=1e-6)
    assert abs(res['normals/median'] - 75.0) <= 0.05 / 2 + 1e-6  # mean of 60 and 90
    assert res['normals/30'] == pytest.approx(25.0)
    # lower is better: an error below the reference gives a positive delta_m
    assert res['delta_m'] == pytest.approx(-(82.5 - 90) / 90 * 100, rel=1e-5)
    assert res['delta_m'] > 0


def test_normals_median_bin_precision_and_quantisation():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(3, 20, 30))
    gt /= np.linalg.norm(gt, axis=0)
    pred = gt + 0.3 * rng.normal(size=gt.shape)
    ang = np.rad2deg(np.arccos(np.clip(
        np.sum(gt * pred / np.linalg.norm(pred, axis=0), axis=0), -1, 1))).ravel()
    for width in (0.01, 0.05, 0.5):
        s = normals_scores([normals_image_stats(pred, gt, bin_width=width)], width)
        assert abs(s['median'] - np.median(ang)) <= width / 2 + 1e-9
        assert s["mErr"] == pytest.approx(ang.mean(), rel=1e-9)
    # the reference's PNG round trip: a perfect prediction is off by well under 1 deg
    s = normals_scores([normals_image_stats(gt, gt, quantize=True)])
    assert 0 < s['mErr'] < 1


# ---------------------------------------------------------------------- delta_m
def test_delta_m_hand_computed():
    ref = dict(semseg=50.0, normals=20.0)
    assert pascal_delta_m({'semseg/mIoU': 60.0, 'normals/mErr': 18.0}, ref) == pytest.approx(15.0)
    assert pascal_delta_m({'semseg': 55.0, 'normals': 22.0}, ref) == pytest.approx(0.0)
    assert pascal_delta_m({'sal/mIoU': 60.0}, ref) is None
    # paper Table 1, multi-task full fine-tuning vs single-task: +2.23 %
    mt = {'semseg/mIoU': 68.71, 'human_parts/mIoU': 62.13, 'sal/mIoU': 64.18,
          'normals/mErr': 17.35}
    st = dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97)
    by_hand = ((68.71 - 67.21) / 67.21 + (62.13 - 61.93) / 61.93 +
               (64.18 - 62.35) / 62.35 - (17.35 - 17.97) / 17.97) / 4 * 100
    assert pascal_delta_m(mt, st) == pytest.approx(by_hand)
    assert round(pascal_delta_m(mt, st), 2) == 2.23


def test_delta_m_refused_when_a_named_task_cannot_be_compared():
    """A run's Δm averages over every one of its tasks: a fifth task without a reference
    (PASCAL's edge) or a NaN main metric gives no Δm, not the mean over the others."""
    st = dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97)
    mt = {'semseg/mIoU': 68.71, 'human_parts/mIoU': 62.13, 'sal/mIoU': 64.18,
          'normals/mErr': 17.35}
    four = ['semseg', 'human_parts', 'sal', 'normals']
    assert round(pascal_delta_m(mt, st, tasks=four), 2) == 2.23
    assert pascal_delta_m(dict(mt, **{'edge/odsF': 0.7}), st, tasks=four + ['edge']) is None
    assert pascal_delta_m(dict(mt, **{'sal/mIoU': float('nan')}), st, tasks=four) is None


# ------------------------------------------------------------------ whole metric
def random_samples(n, seed=0, as_dict=True):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        h, w = rng.integers(5, 12, size=2)
        sem = rng.integers(0, 21, (1, h, w))
        sem[rng.random((1, h, w)) < 0.1] = 255
        parts = rng.integers(0, 7, (1, h, w)) if i % 3 else np.full((1, h, w), 255)
        sal = rng.integers(0, 2, (1, h, w))
        nrm = rng.normal(size=(3, h, w)).astype(np.float32)
        nrm /= np.linalg.norm(nrm, axis=0)
        nrm[:, rng.random((h, w)) < 0.2] = 0
        samples.append(make_sample(
            as_dict=as_dict,
            gt_semseg=sem, pred_semseg=rng.integers(0, 21, (1, h, w)),
            gt_human_parts=parts, pred_human_parts=rng.integers(0, 7, (1, h, w)),
            gt_sal=sal, pred_sal=rng.random((1, h, w)).astype(np.float32),
            gt_normals=nrm, pred_normals=rng.normal(size=(3, h, w)).astype(np.float32)))
    return samples


def test_split_results_match_single_instance():
    samples = random_samples(7)
    one = pascal_metric()
    one.process({}, samples)
    expected = one.compute_metrics(list(one.results))
    assert set(expected) == ALL_KEYS
    assert all(math.isfinite(v) for v in expected.values())

    a, b = pascal_metric(), pascal_metric()
    a.process({}, samples[:3])
    b.process({}, samples[3:])
    assert pascal_metric().compute_metrics(a.results + b.results) == expected
    # collect_results interleaves the ranks' lists: the order must not matter either
    c, d = pascal_metric(), pascal_metric()
    c.process({}, samples[0::2])
    d.process({}, samples[1::2])
    mixed = [r for pair in zip(c.results, d.results) for r in pair] + c.results[3:]
    assert pascal_metric().compute_metrics(mixed) == expected


def test_data_sample_objects_registry_and_task_subsets():
    metric = METRICS.build(dict(type='MultiTaskMetric', **PASCAL_METRIC))
    res_obj = run_metric(metric, random_samples(4, as_dict=False))
    res_dict = run_metric(METRICS.build(dict(type='MultiTaskMetric', **PASCAL_METRIC)),
                          random_samples(4))
    assert res_obj == res_dict

    # a sample without gt_sal is skipped for sal only
    full = random_samples(3)
    partial = [dict(s) for s in full]
    partial[1].pop('gt_sal')
    res = run_metric(pascal_metric(), partial)
    res_sal = run_metric(pascal_metric(tasks=['sal'], reference={}), full[0::2])
    assert res['sal/mIoU'] == res_sal['sal/mIoU']

    with pytest.raises(KeyError):
        bad = dict(full[0])
        bad.pop('pred_normals')
        pascal_metric().process({}, [bad])
    with pytest.raises(ValueError):
        pascal_metric(tasks=['depth'])
