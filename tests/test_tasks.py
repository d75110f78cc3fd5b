"""Tasks are data: specs resolve from the dataset's METAINFO and the config, components
branch on the kind; the regression kind's loss and metric."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmpoly  # noqa: F401
from mmpoly.datasets import PascalContextMTDataset
from mmpoly.evaluation.metrics import MultiTaskMetric
from mmpoly.evaluation.metrics.functional import regression_image_stats, regression_scores
from mmpoly.models.losses import RegressionL1Loss
from mmpoly.tasks import TaskSpec, resolve_task_specs
from tests.pascal import ALL_TASKS


def test_specs_from_the_pascal_dataset_metainfo():
    specs = resolve_task_specs(ALL_TASKS, source='PascalContextMTDataset')
    assert tuple(specs) == PascalContextMTDataset.METAINFO['tasks'] == ALL_TASKS
    assert [s.kind for s in specs.values()] == ['class', 'class', 'binary', 'normal']
    assert [s.num_outputs for s in specs.values()] == [21, 7, 1, 3]
    assert [s.pad_value for s in specs.values()] == [255, 255, 255, 0]
    assert [s.lower_is_better for s in specs.values()] == [False, False, False, True]
    # a config overrides fields; unknown tasks and fields are named
    assert resolve_task_specs(['sal'], dict(sal=dict(ignore_index=0)),
                              source=PascalContextMTDataset)['sal'].pad_value == 0
    with pytest.raises(ValueError, match='21 class names for 5 classes'):
        resolve_task_specs(['semseg'], dict(semseg=dict(num_outputs=5)),
                           source='PascalContextMTDataset')
    with pytest.raises(ValueError, match='unknown task'):
        resolve_task_specs(['depth'], source='PascalContextMTDataset')
    with pytest.raises(ValueError, match="unknown field"):
        resolve_task_specs(['d'], dict(d=dict(kind='regression', num_outputs=1, colour=1)))
    with pytest.raises(ValueError, match='unknown task kind'):
        TaskSpec(kind='edges', num_outputs=1)


def test_regression_loss_skips_unlabelled_pixels():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = torch.tensor([[[0.0, 1.0], [5.0, float('nan')]]])
    loss = RegressionL1Loss(loss_weight=2.0)(pred, target)
    assert loss.item() == pytest.approx(2.0 * (1.0 + 2.0) / 2)
    loss.backward()
    assert pred.grad[0, 0, 0, 0] == 0 and pred.grad[0, 0, 1, 1] == 0
    empty = RegressionL1Loss()(pred, torch.zeros(1, 2, 2))
    assert empty.item() == 0.0


def test_regression_metric_by_kind():
    spec = dict(depth=dict(kind='regression', num_outputs=1, ignore_index=0))
    metric = MultiTaskMetric(tasks=['depth'], reference=dict(depth=1.0), task_specs=spec)
    samples = []
    for pred, gt in (([[1.0, 2.0]], [[2.0, 0.0]]), ([[3.0, 3.0]], [[1.0, 3.0]])):
        s = SegDataSample()
        s.set_data(dict(gt_depth=PixelData(data=torch.tensor([gt])),
                        pred_depth=PixelData(data=torch.tensor([pred]))))
        samples.append(s)
    metric.process({}, samples)
    res = metric.compute_metrics(metric.results)
    assert res['depth/rmse'] == pytest.approx(math.sqrt((1 + 4 + 0) / 3))
    assert res['depth/mae'] == pytest.approx((1 + 2 + 0) / 3)
    # lower is better: an error above the reference 1.0 is a negative delta_m
    assert res['delta_m'] == pytest.approx(-(res['depth/rmse'] - 1.0) * 100)
    assert regression_image_stats(np.ones((1, 2)), np.zeros((1, 2))) is None
    assert math.isnan(regression_scores([])['rmse'])


def test_metric_reads_the_dataset_meta():
    metric = MultiTaskMetric(tasks=['semseg'], reference={})
    metric.dataset_meta = dict(task_specs=dict(semseg=dict(kind='class', num_outputs=3)))
    assert metric.task_specs['semseg'].num_outputs == 3
