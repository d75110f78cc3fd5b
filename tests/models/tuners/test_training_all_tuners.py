"""Every tuner of every config trains: a few steps on synthetic data lower the loss, and the
frozen backbone stays bit-identical. Tiny model, same classes as the full configs."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401
from mmseg.registry import DATASETS, MODELS
from mmpoly.datasets import make_synthetic_pascal_mt

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO_BASE = osp.join(REPO, 'configs/_base_/demo_swin-tiny_synthetic.py')


def swin_t_tuners():
    """The tuner of every Swin-T config: one per row of the paper's Table 1."""
    out = {}
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '*_swin-t.py'))):
        model = Config.fromfile(path).model
        out[osp.basename(path)[:-len('_swin-t.py')]] = (model.backbone.tuner.to_dict(),
                                                        model.get('backbone_per_task', False))
    return out


TUNERS = swin_t_tuners()


@pytest.fixture(scope='module')
def batch(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('train') / 'synthetic')
    make_synthetic_pascal_mt(root, num_train=4, num_val=2, image_size=(64, 64), seed=5)
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO_BASE).train_dataloader.dataset
    cfg.update(data_root=root, auto_generate=None)
    dataset = DATASETS.build(cfg)
    return pseudo_collate([dataset[i] for i in range(4)])


def test_every_table_row_has_a_config():
    assert len(TUNERS) == 17


@pytest.mark.parametrize('method', sorted(TUNERS))
def test_a_short_training_run_lowers_the_loss(method, batch):
    torch.manual_seed(0)
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO_BASE).model
    tuner, per_task = TUNERS[method]
    cfg.backbone.tuner = tuner
    cfg.backbone_per_task = per_task
    model = MODELS.build(cfg)
    model.init_weights()
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
