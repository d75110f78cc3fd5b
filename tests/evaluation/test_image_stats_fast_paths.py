"""The per-image statistics counted by one joint histogram give the counts of the plain
per-mask formulas they replaced (issue 25: the validation metric's time per image), on maps
with ignored pixels, ids out of range on either side and an ignore id inside the range."""
import numpy as np
import pytest

from mmpoly.evaluation.metrics.functional import (_above_threshold_table,
                                                  confusion_image_stats,
                                                  quantize_probability, sal_image_stats)


def plain_confusion(pred, gt, num_classes, ignore_index):
    """The formula before the joint histogram (the oracle)."""
    pred, gt = pred.astype(np.int64), gt.astype(np.int64)
    valid = gt != ignore_index
    pred, gt = pred[valid], gt[valid]
    in_range = (pred >= 0) & (pred < num_classes)
    pred_count = np.bincount(pred[in_range], minlength=num_classes)[:num_classes]
    gt_count = np.bincount(gt[(gt >= 0) & (gt < num_classes)],
                           minlength=num_classes)[:num_classes]
    tp = np.bincount(pred[(pred == gt) & in_range], minlength=num_classes)[:num_classes]
    return np.stack([tp, pred_count - tp, gt_count - tp])


def plain_sal(pred, gt, thresholds, ignore_index):
    q = quantize_probability(pred)
    valid = gt != ignore_index
    hist_pos = np.bincount(q[valid & (gt != 0)], minlength=256)
    hist_neg = np.bincount(q[valid & (gt == 0)], minlength=256)
    table = _above_threshold_table(thresholds).astype(np.int64)
    tp = hist_pos @ table
    return np.stack([tp, hist_neg @ table, hist_pos.sum() - tp])


@pytest.mark.parametrize('ignore_index', [255, 3, -1])
@pytest.mark.parametrize('dtype', [np.int64, np.uint8, np.float32])
def test_confusion_counts_equal_plain_masks(ignore_index, dtype):
    rng = np.random.default_rng(0)
    num_classes = 7
    for _ in range(5):
        pred = rng.integers(-2, 10, (37, 51))
        gt = rng.integers(-2, 10, (37, 51))
        gt[rng.random(gt.shape) < 0.2] = ignore_index
        pred[:3] = gt[:3]  # hits of every kind, out-of-range ones included
        if dtype == np.uint8:
            pred, gt = pred % 256, gt % 256  # as a uint8 map holds them
        pred, gt = pred.astype(dtype), gt.astype(dtype)
        out = confusion_image_stats(pred, gt, num_classes, ignore_index)
        assert out.dtype == np.int64 and out.shape == (3, num_classes)
        np.testing.assert_array_equal(
            out, plain_confusion(pred, gt, num_classes, ignore_index))


@pytest.mark.parametrize('ignore_index', [255, 1])
def test_saliency_counts_equal_plain_masks(ignore_index):
    rng = np.random.default_rng(1)
    thresholds = tuple(np.linspace(0.2, 0.9, 15))
    for prob in (rng.random((40, 60)).astype(np.float32),
                 rng.integers(0, 256, (40, 60)).astype(np.uint8)):
        gt = rng.choice([0, 1, 2, 255], size=(40, 60), p=[0.5, 0.2, 0.1, 0.2])
        out = sal_image_stats(prob, gt, thresholds, ignore_index)
        np.testing.assert_array_equal(out, plain_sal(prob, gt, thresholds, ignore_index))
