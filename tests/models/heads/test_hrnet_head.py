"""MultiTaskHRNetHead: the reference's parameter count (scale-lab/MTLoRA, models/swin_mtl.py
``Downsampler`` + models/seg_hrnet.py ``HighResolutionHead``), its forward against a re-typed
functional computation, a training step through the segmentor's loss, and the MTLoRA-protocol
configs (build, count, forward; they differ from the Polyhistor-protocol ones only where the
protocol does)."""
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmpoly.benchmark import Case
from mmpoly.tasks import resolve_task_specs
from tests.pascal import ALL_TASKS, PASCAL_TASK_SPECS
from mmpoly.utils.param_count import build_model_without_weights
from mmseg.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
PROTOCOL = sorted(glob.glob(osp.join(REPO, 'configs', 'mtlora_protocol', '*.py')))
DEMO = osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_hrnet_synthetic.py')
OUTPUTS = {t: s.num_outputs for t, s in resolve_task_specs(
    ('semseg', 'human_parts', 'sal', 'normals'),
    source='PascalContextMTDataset').items()}  # 21, 7, 1, 3


def reference_head_params(dims, channels, num_outputs, norms=False):
    """One task's decoder in MTLoRA, by its layer list: Downsampler (a bias-free 1x1 conv per
    level, dims[i] -> channels[i]); HighResolutionHead (Conv2d(L, 4L) with bias,
    BatchNorm2d(4L), Conv2d(4L, n) with bias, L = sum(channels)); plus, optionally, one
    LayerNorm per input level (mmpoly's output norms)."""
    L = sum(channels)
    downsampler = sum(d * c for d, c in zip(dims, channels))
    head = (L * 4 * L + 4 * L) + 2 * 4 * L + (4 * L * num_outputs + num_outputs)
    return downsampler + head + (2 * sum(dims) if norms else 0)


def build_head(**kwargs):
    """The head as the segmentor builds it for the PASCAL tasks (it fills in their specs)."""
    init_default_scope('mmseg')
    kwargs.setdefault('tasks', ALL_TASKS)
    kwargs.setdefault('task_specs', PASCAL_TASK_SPECS)
    return MODELS.build(dict(type='MultiTaskHRNetHead', **kwargs))


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_equals_the_reference_head():
    # the reference's taps: Swin-T after each patch merging, widths [192, 384, 768, 768]
    ref_dims, channels = [192, 384, 768, 768], [18, 36, 72, 144]
    head = build_head(in_channels=ref_dims, level_channels=channels, output_norms=False)
    expected = {t: reference_head_params(ref_dims, channels, n) for t, n in OUTPUTS.items()}
    for task, n in expected.items():
        assert count(head.decoders[task]) == n, task
    assert count(head) == sum(expected.values()) == 1_946_624
    # mmpoly's Swin-T taps (the four stage outputs) with the per-task output norms
    dims = [96, 192, 384, 768]
    head = build_head(in_channels=dims)
    assert count(head) == sum(reference_head_params(dims, channels, n, norms=True)
                              for n in OUTPUTS.values()) == 1_812_992
    # no projection: the fusion runs on the stage widths themselves
    head = build_head(in_channels=dims, level_channels=None, output_norms=False, tasks=['sal'])
    assert count(head) == (1440 * 5760 + 5760) + 2 * 5760 + (5760 + 1)


def reference_forward(head, task, feats):
    """The task's logits re-typed with functional ops from the head's weights (eval mode)."""
    w = dict(head.named_parameters())
    b = dict(head.named_buffers())
    d = f'decoders.{task}.'
    xs = []
    for i, x in enumerate(feats):
        n = f'norms.{task}.{i}.'
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], w[n + 'weight'], w[n + 'bias'])
        xs.append(F.conv2d(x.permute(0, 3, 1, 2), w[f'{d}projections.{i}.weight']))
    h, wd = xs[0].shape[2:]
    x = torch.cat([xs[0]] + [F.interpolate(x, (h, wd), mode='bilinear', align_corners=False)
                             for x in xs[1:]], dim=1)
    x = F.conv2d(x, w[d + 'fuse.conv.weight'], w[d + 'fuse.conv.bias'])
    x = F.batch_norm(x, b[d + 'fuse.bn.running_mean'], b[d + 'fuse.bn.running_var'],
                     w[d + 'fuse.bn.weight'], w[d + 'fuse.bn.bias'], False, 0.0, 1e-5)
    return F.conv2d(F.relu(x), w[d + 'conv_seg.weight'], w[d + 'conv_seg.bias'])


def test_forward_equals_functional_computation():
    dims = [8, 16, 24, 32]
    torch.manual_seed(0)
    # float64: the functional oracle sums in its own order
    head = build_head(in_channels=dims, level_channels=[3, 5, 6, 7]).eval().double()
    with torch.no_grad():  # make every weight and statistic matter
        for p in head.parameters():
            p.normal_()
        for name, buf in head.named_buffers():
            if 'running' in name:
                buf.uniform_(0.5, 1.5)
    # odd sizes: the upsampling to the finest level is not a plain 2x
    sizes = [(15, 21), (8, 11), (4, 6), (2, 3)]
    feats = [torch.randn(2, c, *s, dtype=torch.float64) for c, s in zip(dims, sizes)]
    with torch.no_grad():
        out = head({t: feats for t in head.tasks})
        expected = reference_forward(head, 'human_parts', feats)
    assert {t: tuple(o.shape) for t, o in out.items()} == {
        t: (2, n, 15, 21) for t, n in OUTPUTS.items()}
    torch.testing.assert_close(out['human_parts'], expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(out['human_parts'], reference_forward(head, 'semseg', feats)[:, :7])


def test_one_training_step_through_the_loss_path():
    case = Case(DEMO, batch_size=2, img_size=64)
    model = case.model.train()
    data = model.data_preprocessor(case.batch, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == {f'loss_{t}' for t in OUTPUTS}
    total = sum(losses.values())
    assert total.isfinite()
    total.backward()
    head = dict(model.decode_head.named_parameters())
    assert head and all(p.grad is not None and p.grad.abs().sum() > 0
                        for p in head.values()), [n for n, p in head.items() if p.grad is None]
    before = {n: p.detach().clone() for n, p in head.items()}
    case.optim_wrapper.step()
    assert all(not torch.equal(p, before[n]) for n, p in head.items())
    assert all(p.isfinite().all() for p in model.parameters())


@pytest.mark.parametrize('path', PROTOCOL, ids=lambda p: osp.basename(p)[:-3])
def test_protocol_config(path):
    """Same tuner and backbone as the Polyhistor-protocol config of its method; HRNet heads
    of the hand count, 448 inputs and MTLoRA's schedule; it builds and runs."""
    method = osp.basename(path).replace('_hrnet-448', '')
    cfg, polyhistor_cfg = Config.fromfile(path), Config.fromfile(osp.join(REPO, 'configs',
                                                                         method))
    backbone = dict(polyhistor_cfg.model.backbone, drop_path_rate=0.2)  # MTLoRA's 448 value
    assert cfg.model.backbone == backbone
    assert cfg.model.tasks == polyhistor_cfg.model.tasks
    assert cfg.model.decode_head.losses == polyhistor_cfg.model.decode_head.losses
    assert cfg.model.data_preprocessor.size == (448, 448)
    assert [s['scale'] for s in cfg.train_dataloader.dataset.pipeline + cfg.val_dataloader.
            dataset.pipeline if s['type'] == 'MTResize'] == [(448, 448)] * 2
    assert cfg.train_dataloader.batch_size * 4 == cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.train_cfg.max_epochs == 300

    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = (64, 64)
    torch.manual_seed(0)
    model = build_model_without_weights(cfg).eval()
    heads = count(model.decode_head)
    assert heads == sum(reference_head_params([96, 192, 384, 768], [18, 36, 72, 144], n,
                                              norms=True) for n in OUTPUTS.values())
    with torch.no_grad():
        out = model._forward(torch.randn(1, 3, 64, 64))
    assert {t: tuple(o.shape) for t, o in out.items()} == {
        t: (1, n, 16, 16) for t, n in OUTPUTS.items()}
    assert all(o.isfinite().all() for o in out.values())


def test_mtlora_schedule_follows_the_reference_lr():
    """schedule_mtlora.py against the reference's lr (timm CosineLRScheduler, warmup_prefix,
    per iteration; main.py's batch-32 scaling): linear from 3.125e-8 to 3.125e-5 over 20
    epochs, cosine to 3.125e-7 at 300. mmengine's LinearLR reaches the peak one iteration
    early: within 2 % during the warm-up, exact after it. No weight decay on 1-D parameters."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'schedules',
                                   'schedule_mtlora.py'))
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g['weight_decay'] for g in optim.param_groups for p in g['params']
             if id(p) in names}  # mmengine adds a group of its own (the base settings)
    assert decay == {'0.weight': 0.05, '0.bias': 0.0, '1.weight': 0.0, '1.bias': 0.0,
                     '2.weight': 0.05, '2.bias': 0.0}
    epoch = 3  # iterations per epoch
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim),
                                         default_args=dict(epoch_length=epoch))
                  for s in cfg.param_scheduler]
    base, start, end = 5e-4 * 32 / 512, 5e-7 * 32 / 512, 5e-6 * 32 / 512
    warm, total = 20 * epoch, cfg.train_cfg.max_epochs * epoch
    for t in range(total):
        if t < warm:
            expected, rtol = start + t * (base - start) / warm, 0.02
        else:
            expected, rtol = end + 0.5 * (base - end) * (
                1 + math.cos(math.pi * (t - warm) / (total - warm))), 1e-6
        assert optim.get_lr()['lr'][0] == pytest.approx(expected, rel=rtol), t
        optim.step()
        for s in schedulers:
            s.step()
