"""The segmentor, head and data preprocessor on the demo model (same classes as Swin-T's)."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

import mmpoly  # noqa: F401
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

DEMO = 'configs/demo/multi_task_ft_swin-tiny_synthetic.py'


def build(tuner=None, **model_kwargs):
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO).model
    if tuner is not None:
        cfg.backbone.tuner = tuner
    cfg.update(model_kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def sample(h=40, w=52, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = SegDataSample()
    s.gt_semseg = PixelData(data=torch.randint(0, 21, (1, h, w), generator=g))
    s.gt_human_parts = PixelData(data=torch.full((1, h, w), 255))
    s.gt_sal = PixelData(data=torch.randint(0, 2, (1, h, w), generator=g))
    normals = torch.nn.functional.normalize(torch.randn(3, h, w, generator=g), dim=0)
    s.gt_normals = PixelData(data=normals)
    s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h + 7, w - 5)))
    return s


def batch(n=2):
    imgs = [torch.randint(0, 255, (3, 40, 52), dtype=torch.uint8) for _ in range(n)]
    return dict(inputs=imgs, data_samples=[sample(seed=i) for i in range(n)])


def test_preprocessor_pads_each_task_with_its_own_value():
    model = build()
    raw = batch()
    first_image = raw['inputs'][0].float()
    data = model.data_preprocessor(raw, training=True)
    assert data['inputs'].shape == (2, 3, 96, 96)
    s = data['data_samples'][0]
    assert s.gt_semseg.data.shape == (1, 96, 96)
    assert (s.gt_semseg.data[:, 40:, :] == 255).all() and (s.gt_semseg.data[:, :, 52:] == 255).all()
    assert (s.gt_sal.data[:, 40:] == 255).all()
    assert (s.gt_normals.data[:, 40:] == 0).all()
    assert s.metainfo['batch_input_shape'] == (96, 96)
    # normalisation: BGR -> RGB then (x - mean) / std
    expected = (first_image[[2, 1, 0]] - torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)) / \
        torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    torch.testing.assert_close(data['inputs'][0, :, :40, :52], expected)


def test_loss_has_one_weighted_term_per_task_and_all_ignored_parts_is_zero():
    model = build()
    data = model.data_preprocessor(batch(), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_semseg', 'loss_human_parts', 'loss_sal', 'loss_normals'}
    assert losses['loss_human_parts'].item() == 0.0  # every parts pixel is ignored
    assert all(torch.isfinite(v) for v in losses.values())


def test_predict_gives_each_task_at_the_original_size():
    model = build()
    model.eval()
    data = model.data_preprocessor(batch(), training=False)
    with torch.no_grad():
        out = model(**data, mode='predict')
    s = out[0]
    assert s.pred_semseg.data.shape == (1, 47, 47) and s.pred_semseg.data.dtype == torch.int64
    assert s.pred_human_parts.data.max() < 7
    sal = s.pred_sal.data
    assert sal.shape == (1, 47, 47) and 0 <= sal.min() and sal.max() <= 1
    norms = s.pred_normals.data.norm(dim=0)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize('tuner,per_task,expected_feats_shared', [
    (dict(type='NoTuner'), False, True),
    (dict(type='FullFineTuning'), False, True),
    (dict(type='FullFineTuning'), True, False),
])
def test_reference_methods_features(tuner, per_task, expected_feats_shared):
    model = build(tuner=tuner, backbone_per_task=per_task)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.extract_feat(x)
    assert list(feats) == ['semseg', 'human_parts', 'sal', 'normals']
    same = feats['semseg'][0] is feats['sal'][0]
    assert same == expected_feats_shared
    assert feats['normals'][3].shape == (2, 256, 2, 2)
    if per_task:  # one backbone per task: task t's features come from backbone t
        torch.testing.assert_close(feats['sal'][1], model.backbones['sal'](x)[1])


def test_trainable_parameters_of_reference_methods():
    def count(model, prefix=''):
        return sum(p.numel() for n, p in model.named_parameters()
                   if p.requires_grad and n.startswith(prefix))
    decoder_only = build(tuner=dict(type='NoTuner'))
    assert count(decoder_only) == count(decoder_only, 'decode_head.') > 0
    shared = build(tuner=dict(type='FullFineTuning'))
    per_task = build(tuner=dict(type='FullFineTuning'), backbone_per_task=True)
    backbone = sum(p.numel() for p in shared.backbone.parameters())
    assert count(shared, 'backbone.') == backbone
    assert count(per_task, 'backbones.') == 4 * backbone


def test_dataset_without_a_model_task_is_a_clear_error():
    model = build()
    data = batch()
    for s in data['data_samples']:
        del s.gt_sal
    data = model.data_preprocessor(data, training=True)
    with pytest.raises(KeyError, match='gt_sal'):
        model(**data, mode='loss')
