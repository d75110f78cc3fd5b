"""Every tuner of every config trains: a few steps on synthetic data lower the loss, and the
frozen backbone stays bit-identical. Tiny model, same classes as the full configs."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401
from mmseg.registry import DATASETS, MODELS
from mmpoly.datasets import make_synthetic_pascal_mt
from tests.pascal import ALL_TASKS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO_BASE = osp.join(REPO, 'configs/_base_/setups/synthetic_swin-tiny.py')


# the rows of the paper's Table 1, as config names
PAPER_ROWS = ('single_task_ft', 'decoder_ft', 'multi_task_ft', 'bitfit', 'relative_bias',
              'vpt_shallow', 'vpt_deep', 'phm', 'compacter', 'compacter_pp', 'lora', 'adapter',
              'low_rank_adapter', 'shared_adapter', 'hyperformer', 'polyhistor',
              'polyhistor_lite')


def swin_t_tuners():
    """The tuner of every Swin-T config of a Table 1 row."""
    out = {}
    for method in PAPER_ROWS:
        path = osp.join(REPO, 'configs', f'{method}_swin-t.py')
        if osp.isfile(path):
            model = Config.fromfile(path).model
            out[method] = (model.backbone.tuner.to_dict(), model.get('backbone_per_task', False))
    return out


TUNERS = swin_t_tuners()


def demo_batch(data_root, indices, img_scale=None):
    """Training samples ``indices`` of a synthetic PASCAL_MT, through the demo pipeline
    (resized to ``img_scale`` instead of the demo's 96 x 96 when given)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO_BASE).train_dataloader.dataset
    cfg.update(data_root=data_root, auto_generate=None)
    if img_scale is not None:
        cfg.pipeline = [dict(step, scale=img_scale) if step['type'] == 'MTResize' else step
                        for step in cfg.pipeline]
    dataset = DATASETS.build(cfg)
    return pseudo_collate([dataset[i] for i in indices])


def demo_model(method, cfg_options=None):
    """The demo Swin and decoders with the tuner of ``method``'s Swin-T config, seeded."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO_BASE)
    tuner, per_task = TUNERS[method]
    cfg.model.backbone.tuner = tuner
    cfg.model.backbone_per_task = per_task
    cfg.merge_from_dict(cfg_options or {})
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def batch(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('train') / 'synthetic')
    make_synthetic_pascal_mt(root, num_train=4, num_val=2, image_size=(64, 64), seed=5)
    return demo_batch(root, range(2))


def test_every_table_row_has_a_config():
    assert sorted(TUNERS) == sorted(PAPER_ROWS)


@pytest.mark.parametrize('method', sorted(TUNERS))
def test_a_short_training_run_lowers_the_loss(method, batch):
    model = demo_model(method)
    model.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if not p.requires_grad}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(12):
        data = model.data_preprocessor(batch, training=True)
        loss = sum(model(**data, mode='loss').values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f'{name} changed'


@pytest.mark.parametrize('method', sorted(TUNERS))
def test_every_tuner_runs_on_pvt(method):
    """Each method on PVT: forward and backward reach every trainable parameter, or (relative
    bias, which needs Swin's tables) a clear error."""
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    tuner, _ = TUNERS[method]
    if method == 'phm':
        tuner = dict(tuner, reduction=4)  # PHM dimension 4 must divide the tiny widths
    cfg = dict(type='PolyhistorPVT', **PVT_TINY, tuner=tuner, tasks=ALL_TASKS)
    if method == 'relative_bias':
        with pytest.raises(ValueError, match='needs relative_position_bias'):
            MODELS.build(cfg)
        return
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if method == 'decoder_ft':
        assert not trainable
        return
    with torch.no_grad():  # zero-initialised parts (up-projections, LoRA's B) would hold the
        for _, param in trainable:  # gradient of what comes before them at exactly zero
            param.add_(0.1 * torch.randn_like(param))
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    zero = [name for name, param in trainable
            if param.grad is None or not param.grad.abs().sum() > 0]
    assert not zero, f'{method}: no or zero gradient for {zero[:8]} ({len(zero)})'
