"""Task kinds live in one place each: a kind registered from outside the package (here, in
the test) flows through every component that depends on the kind, so none of them may
still branch on the built-in kinds' names."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmpoly  # noqa: F401
from mmpoly.benchmark.cases import random_batch
from mmpoly.datasets.transforms import MTRandomFlip, MTResize, PackMultiTaskInputs
from mmpoly.datasets.transforms.loading import LoadMultiTaskAnnotations
from mmpoly.evaluation.metrics import MultiTaskMetric
from mmpoly.evaluation.prediction_writer import read_prediction, write_prediction
from mmpoly.models.segmentors.multi_task_encoder_decoder import logits_to_prediction
from mmpoly.task_kinds import TASK_KINDS, TaskKind, register_task_kind, task_kind
from mmpoly.tasks import TaskSpec
from mmpoly.visualization import task_to_rgb


class HeatKind(TaskKind):
    """A made-up kind: a positive map predicted as exp(logit), scored by its mean absolute
    error and the count of labelled pixels; labels flip sign when flipped."""
    name = 'test_heat'
    main_metric = 'mae'
    lower_is_better = True
    loss = dict(type='RegressionL1Loss', loss_weight=3.0)
    metric_keys = ('mae', 'pixels')
    prediction_formats = ('npy', )
    label_dtype = np.float32

    def predict(self, logits):
        return logits.exp()

    def flip_label(self, label):
        return -label

    def pack_label(self, label):
        return label[None].astype(np.float32) * 10

    def random_label(self, spec, size, generator):
        return torch.full((1, size, size), 7.0)

    def image_stats(self, metric, pred, gt, spec):
        return dict(err=float((pred - gt).abs().sum()), n=gt.numel())

    def scores(self, metric, stats):
        n = sum(s['n'] for s in stats)
        return dict(mae=sum(s['err'] for s in stats) / n, pixels=n, num_images=len(stats))

    def encode_prediction(self, task, data, spec):
        return data.numpy().astype(np.float32) + 1

    def decode_prediction(self, task, array, spec, path):
        return torch.from_numpy(array - 1)

    def to_rgb(self, x, is_label, spec, palette=None):
        return np.full(x.shape[-2:] + (3, ), 42 if is_label else 24, np.uint8)


@pytest.fixture
def heat():
    register_task_kind(HeatKind)
    yield TaskSpec(kind='test_heat', num_outputs=1, label_format='npy', ignore_index=-1)
    del TASK_KINDS['test_heat']


def test_the_builtin_kinds_are_registered():
    assert list(TASK_KINDS) == ['class', 'binary', 'normal', 'regression', 'edge']
    kinds = ('class', 'binary', 'normal', 'regression', 'edge')
    assert [task_kind(k).main_metric for k in kinds] == ['mIoU', 'mIoU', 'mErr', 'rmse', 'odsF']
    with pytest.raises(ValueError, match="unknown task kind 'heat'; known kinds"):
        task_kind('heat')
    with pytest.raises(ValueError, match='main_metric'):
        register_task_kind(type('Bad', (TaskKind, ), dict(name='bad', main_metric='x')))
    assert 'bad' not in TASK_KINDS


def test_a_new_kind_flows_through_spec_model_and_data(heat):
    assert heat.task_kind is TASK_KINDS['test_heat']
    assert heat.main_metric == 'mae' and heat.lower_is_better is True
    assert heat.default_loss == dict(type='RegressionL1Loss', loss_weight=3.0)
    assert heat.prediction_format == 'npy'
    with pytest.raises(ValueError, match="prediction_format 'png'"):
        TaskSpec(kind='test_heat', num_outputs=1, prediction_format='png')
    logits = torch.randn(1, 4, 5)
    assert torch.equal(logits_to_prediction(heat, logits), logits.exp())

    label = np.arange(12, dtype=np.float32).reshape(3, 4)
    results = dict(img=np.zeros((3, 4, 3), np.uint8), gt_heat=label.copy(),
                   task_fields=['gt_heat'], task_specs=dict(heat=heat))
    results = MTRandomFlip(prob=1.0)(results)
    assert np.array_equal(results['gt_heat'], -label[:, ::-1])
    results = MTResize(scale=(8, 6))(results)  # nearest, as the base kind moves labels
    assert results['gt_heat'].shape == (6, 8)
    packed = PackMultiTaskInputs()(results)['data_samples'].gt_heat.data
    assert packed.dtype == torch.float32 and packed.shape == (1, 6, 8)
    assert torch.equal(packed, torch.from_numpy(results['gt_heat'][None] * 10))

    batch = random_batch(['heat'], 2, 4, task_specs=dict(heat=heat))
    assert torch.equal(batch['data_samples'][0].gt_heat.data, torch.full((1, 4, 4), 7.0))


def test_the_generic_npy_reader_reads_a_new_kind_as_its_label_dtype(heat, tmp_path):
    path = str(tmp_path / 'a.npy')
    np.save(path, np.arange(12, dtype=np.int64).reshape(3, 4))
    results = LoadMultiTaskAnnotations()(dict(
        tasks=['heat'], label_paths=dict(heat=path), ori_shape=(3, 4),
        task_specs=dict(heat=heat)))
    assert results['gt_heat'].dtype == np.float32 and results['task_fields'] == ['gt_heat']


def test_a_new_kind_flows_through_metric_files_and_pictures(heat, tmp_path):
    metric = MultiTaskMetric(tasks=['heat'], reference=dict(heat=2.0),
                             task_specs=dict(heat=heat.to_dict()))
    samples = []
    for pred, gt in (([[1.0, 2.0]], [[2.0, 2.0]]), ([[3.0, 3.0]], [[1.0, 3.0]])):
        s = SegDataSample()
        s.set_data(dict(gt_heat=PixelData(data=torch.tensor([gt])),
                        pred_heat=PixelData(data=torch.tensor([pred]))))
        samples.append(s.to_dict())
    metric.process({}, samples)
    metrics = metric.evaluate(2)
    assert metrics['heat/mae'] == pytest.approx(3 / 4) and metrics['heat/pixels'] == 4
    # lower is better: 0.75 against 2.0 is 62.5 % better
    assert metrics['delta_m'] == pytest.approx(62.5)
    assert set(metrics) == {'heat/mae', 'heat/pixels', 'delta_m'}

    pred = torch.rand(1, 3, 4)
    path = write_prediction(str(tmp_path), 'heat', 'a', pred, heat)
    assert path.endswith('heat/a.npy')
    assert np.array_equal(np.load(path), pred.numpy() + 1)
    assert torch.allclose(read_prediction(str(tmp_path), 'heat', 'a', heat), pred)

    assert task_to_rgb('heat', pred, is_label=True, spec=heat)[0, 0].tolist() == [42] * 3
    assert task_to_rgb('heat', pred, is_label=False, spec=heat).shape == (3, 4, 3)
