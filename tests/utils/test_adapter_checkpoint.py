"""Adapter-only checkpoints: what they hold, exact reload, resume, export, clear errors.

The demo configs start from a random backbone (no pretrained file). An adapter-only
checkpoint cannot rebuild such a backbone, so it keeps it in full (tested below); the other
tests write a small backbone checkpoint and point ``model.backbone.init_cfg`` at it, as the
real configs point at the ImageNet release.
"""
import copy
import glob
import json
import os.path as osp
import runpy
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmseg.registry import MODELS
from mmpoly.engine import load_config
from mmpoly.checkpoint.adapter import (AdapterCheckpointError, frozen_backbone_keys,
                                             load_adapter_checkpoint,
                                             make_adapter_checkpoint, restore_state_dict)
from tests.mmpretrain_configs import skip_without_mmpretrain, uses_mmpretrain
from tests.tools.conftest import REPO, demo_data, demo_options, run_tool  # noqa: F401

DEMOS = sorted(glob.glob(osp.join(REPO, 'configs', 'demo', '*.py')))
LORA = osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_synthetic.py')


def build(config, backbone=None, seed=0, **tuner):
    init_default_scope('mmseg')
    cfg = load_config(config)  # with its dataset's task specs, as the tools build it
    if backbone is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=backbone)
    if tuner:
        cfg.model.backbone.tuner.update(tuner)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    for module in model.modules():  # the backbones' init: pretrained file or random
        if hasattr(module, 'load_pretrained'):
            module.init_weights()
    return model


def write_backbone(path, seed, demo='decoder_ft_swin-tiny_synthetic.py'):
    """A backbone checkpoint for the demo Swin (mmseg key names), or for another demo's
    backbone (the mmpretrain ViT: its encoder's keys)."""
    model = build(osp.join(REPO, 'configs', 'demo', demo), seed=seed)
    state = {k: v for k, v in model.backbone.state_dict().items()
             if not k.startswith(('tuner.', 'neck.'))}
    torch.save({'state_dict': state}, path)
    return str(path)


@pytest.fixture(scope='module')
def backbone(tmp_path_factory):
    return write_backbone(tmp_path_factory.mktemp('bb') / 'backbone.pth', seed=123)


def config_on(path, backbone_path):
    """The LoRA demo config, its backbone loaded from ``backbone_path``."""
    with open(path, 'w') as f:
        f.write(f"_base_ = [{LORA!r}]\nmodel = dict(backbone=dict(init_cfg=dict("
                f"_delete_=True, type='Pretrained', checkpoint={backbone_path!r})))\n")
    return str(path)


def pretend_training(model, seed=7):
    """Change every trainable parameter and the decoders' BN statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.add_(torch.randn(b.shape, generator=g))


def outputs(model, seed=3):
    model.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model._forward(x)


def assert_same_model(got, expected, forward=True):
    """Bit-identical state and outputs."""
    state = got.state_dict()
    for key, value in expected.state_dict().items():
        assert torch.equal(state[key], value), key
    if not forward:
        return
    out = outputs(got)
    for task, logits in outputs(expected).items():
        assert torch.equal(out[task], logits), task


@pytest.fixture(scope='module')
def vit_backbone(tmp_path_factory):
    """The same for the mmpretrain demo ViT (built only where mmpretrain is installed)."""
    return lambda: write_backbone(tmp_path_factory.mktemp('vit') / 'vit.pth', seed=123,
                                  demo='lora_vit-tiny_synthetic.py')


@pytest.mark.parametrize('config', DEMOS, ids=lambda p: osp.basename(p)[:-3])
def test_adapter_only_file_reloads_bit_identically(config, backbone, vit_backbone, tmp_path):
    skip_without_mmpretrain(config)
    if uses_mmpretrain(config):
        backbone = vit_backbone()
    model = build(config, backbone)
    if model.backbone_per_task or model.backbone.tuner.trains_backbone:
        # full fine-tuning: only constant buffers are left out, every weight is kept
        params = dict(model.named_parameters())
        assert frozen_backbone_keys(model)
        assert not any(k in params for k in frozen_backbone_keys(model))
    pretend_training(model)
    full = {'meta': {}, 'state_dict': model.state_dict()}
    torch.save(full, tmp_path / 'full.pth')
    small = make_adapter_checkpoint(model, copy.copy(full), 'cfg text')
    torch.save(small, tmp_path / 'adapter.pth')

    # exactly the trained parameters, the buffers, and nothing of the frozen backbone
    frozen = set(frozen_backbone_keys(model))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(small['state_dict'])
    assert set(small['state_dict']) == set(model.state_dict()) - frozen
    if not trainable >= {n for n, _ in model.named_parameters() if n.startswith('backbone')}:
        # the backbone's own weights only where the tuner trains them (MTLoRA's norms, ...)
        # (and a pyramid neck's BatchNorm statistics: no backbone file holds them)
        assert not any(k.startswith('backbone.') and not k.startswith('backbone.tuner.')
                       and 'relative_position' not in k and k not in trainable
                       and not k.startswith('backbone.neck.')
                       for k in small['state_dict'])
    saved_bytes = sum(v.numel() * v.element_size() for v in small['state_dict'].values())
    size, full_size = osp.getsize(tmp_path / 'adapter.pth'), osp.getsize(tmp_path / 'full.pth')
    assert size < saved_bytes * 1.02 + 200_000  # the file is the saved tensors, little else
    total = sum(v.numel() for v in model.state_dict().values())
    if sum(v.numel() for v in small['state_dict'].values()) < total / 6:
        assert size < full_size / 5, (size, full_size)

    fresh = build(config, backbone, seed=99)  # other random tuner / decoder init
    load_adapter_checkpoint(fresh, str(tmp_path / 'adapter.pth'))
    assert_same_model(fresh, model, forward=config == LORA)  # outputs: once is enough


def test_small_demo_configs_are_under_a_fifth(backbone, tmp_path):
    for name in ('decoder_ft', 'lora', 'polyhistor_lite'):
        config = osp.join(REPO, 'configs', 'demo', f'{name}_swin-tiny_synthetic.py')
        assert osp.isfile(config), f'{config} is missing'
        model = build(config, backbone)
        full = {'meta': {}, 'state_dict': model.state_dict()}
        torch.save(full, tmp_path / 'full.pth')
        torch.save(make_adapter_checkpoint(model, copy.copy(full)), tmp_path / 'a.pth')
        assert osp.getsize(tmp_path / 'a.pth') < osp.getsize(tmp_path / 'full.pth') / 5, name


def test_random_backbone_is_kept_in_full(tmp_path):
    model = build(LORA)  # demo: init_cfg=None
    pretend_training(model)
    small = make_adapter_checkpoint(model, {'meta': {}, 'state_dict': model.state_dict()})
    assert small['adapter']['backbones'] == [dict(prefix='backbone', path=None, sha256=None)]
    assert set(small['state_dict']) == set(model.state_dict())
    fresh = build(LORA, seed=5)
    restore_state_dict(fresh, small)
    fresh.load_state_dict(small['state_dict'])
    assert torch.equal(fresh.backbone.patch_embed.projection.weight,
                       model.backbone.patch_embed.projection.weight)


def adapter_of(model):
    pretend_training(model)
    return make_adapter_checkpoint(model, {'meta': {}, 'state_dict': model.state_dict()})


def test_another_backbone_checkpoint_is_refused(backbone, tmp_path):
    small = adapter_of(build(LORA, backbone))
    other = write_backbone(tmp_path / 'other.pth', seed=456)
    with pytest.raises(AdapterCheckpointError,
                       match=r"(?s)other\.pth has sha256 [0-9a-f]{64}.*backbone\.pth"):
        restore_state_dict(build(LORA, other), copy.deepcopy(small))
    restore_state_dict(build(LORA, backbone), copy.deepcopy(small))  # the right one: fine
    model = build(LORA, backbone)
    model.backbone.init_cfg['checkpoint'] = str(tmp_path / 'gone.pth')
    with pytest.raises(FileNotFoundError, match='gone.pth'):
        restore_state_dict(model, copy.deepcopy(small))
    with pytest.raises(AdapterCheckpointError, match='trained on .*backbone.pth.*random init'):
        restore_state_dict(build(LORA), copy.deepcopy(small))


def test_same_file_but_other_frozen_weights_is_refused(backbone):
    small = adapter_of(build(LORA, backbone))
    key = 'backbone.patch_embed.projection.weight'
    small['adapter']['frozen_sha256'][key] = '0' * 64
    with pytest.raises(AdapterCheckpointError, match=f'differ.*{key}'):
        restore_state_dict(build(LORA, backbone), small)


def test_incompatible_config_is_refused(backbone):
    small = adapter_of(build(LORA, backbone))
    with pytest.raises(AdapterCheckpointError, match=r'shape mismatches.*tuner.*\(4, '):
        restore_state_dict(build(LORA, backbone, rank=8), copy.deepcopy(small))
    decoders = osp.join(REPO, 'configs', 'demo', 'decoder_ft_swin-tiny_synthetic.py')
    with pytest.raises(AdapterCheckpointError, match='unknown to the model.*tuner'):
        restore_state_dict(build(decoders, backbone), copy.deepcopy(small))
    full_ft = osp.join(REPO, 'configs', 'demo', 'multi_task_ft_swin-tiny_synthetic.py')
    with pytest.raises(AdapterCheckpointError, match='frozen backbone entries differ'):
        restore_state_dict(build(full_ft, backbone), copy.deepcopy(small))


# ------------------------------------------------------------- the hook in a real run
def runner_cfg(work_dir, data_root, backbone, epochs, **extra):
    cfg = Config.fromfile(config_on(osp.join(osp.dirname(work_dir), 'lora.py'), backbone))
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.dataset.indices': 16,  # 2 iterations per epoch
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'train_dataloader.num_workers': 0, 'val_dataloader.num_workers': 0,
        'test_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': epochs, 'train_cfg.val_interval': 100,
        'param_scheduler.0.end': 2,
        # the config switch
        'default_hooks.checkpoint': dict(type='AdapterCheckpointHook', interval=1),
    })
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'adapter_{uuid.uuid4().hex[:8]}'
    cfg.visualizer.name = cfg.experiment_name
    cfg.update(extra)
    return cfg


def test_training_saves_adapter_only_and_resumes(backbone, demo_data, tmp_path):
    from mmengine.runner import Runner
    work = tmp_path / 'work'
    runner = Runner.from_cfg(runner_cfg(work, demo_data, backbone, 1))
    runner.train()
    trained = {k: v.clone() for k, v in runner.model.state_dict().items()}
    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert ckpt['adapter']['backbones'][0]['path'] == backbone
    assert 'optimizer' in ckpt and 'param_schedulers' in ckpt
    assert set(ckpt['state_dict']) == set(trained) - set(frozen_backbone_keys(runner.model))

    # loaded on the pretrained backbone: exactly the trained model
    fresh = build(LORA, backbone, seed=42)
    load_adapter_checkpoint(fresh, str(work / 'epoch_1.pth'))
    got = fresh.state_dict()
    for key, value in trained.items():
        assert torch.equal(got[key], value), key

    # tools/test.py on the adapter-only file: the metrics of the trained model in memory
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_tool's OMP_NUM_THREADS=1: the same float results
    try:
        in_memory = {k: float(v) for k, v in runner.test().items()}
    finally:
        torch.set_num_threads(threads)
    run_tool('python', 'tools/test.py', str(tmp_path / 'lora.py'), str(work / 'epoch_1.pth'),
             '--work-dir', str(tmp_path / 'test'), *demo_options(demo_data, 1))
    from_file = json.loads((tmp_path / 'test' / 'test_metrics.json').read_text())
    assert from_file.pop('checkpoint')['path'] == str(work / 'epoch_1.pth')  # recorded
    # equal up to float summation order (bit-identical weights are checked above; a frozen
    # backbone left random would change every metric by far more)
    assert from_file == pytest.approx(in_memory, rel=1e-6)

    # resume from the adapter-only checkpoint continues training
    resumed = Runner.from_cfg(runner_cfg(work, demo_data, backbone, 2, resume=True))
    resumed.train()
    ckpt = torch.load(work / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 4
    assert {int(s['step']) for s in ckpt['optimizer']['state'].values()} == {4}
    assert 'adapter' in ckpt


def test_export_adapter_makes_the_small_file_from_a_full_one(backbone, tmp_path):
    model = build(LORA, backbone)
    pretend_training(model)
    torch.save({'meta': {}, 'state_dict': model.state_dict(),
                'optimizer': {'state': {}, 'param_groups': []}}, tmp_path / 'full.pth')
    proc = run_tool('python', 'tools/export_adapter.py', str(tmp_path / 'full.pth'),
                    str(tmp_path / 'small.pth'), '--config',
                    config_on(tmp_path / 'lora.py', backbone))
    assert 'frozen entries rebuilt' in proc.stdout
    small = torch.load(tmp_path / 'small.pth', map_location='cpu', weights_only=True)
    assert 'optimizer' in small
    fresh = build(LORA, backbone, seed=11)
    load_adapter_checkpoint(fresh, str(tmp_path / 'small.pth'))
    assert_same_model(fresh, model)

    # a full checkpoint trained on another backbone file cannot be exported against this one
    other = write_backbone(tmp_path / 'other.pth', seed=456)
    tool = runpy.run_path(osp.join(REPO, 'tools', 'export_adapter.py'))
    with pytest.raises(AdapterCheckpointError, match='not those of the backbone file'):
        tool['export'](str(tmp_path / 'full.pth'), str(tmp_path / 'bad.pth'),
                       Config.fromfile(config_on(tmp_path / 'lora_other.py', other)))
    with pytest.raises(AdapterCheckpointError, match='already an adapter-only'):
        tool['export'](str(tmp_path / 'small.pth'), str(tmp_path / 'bad.pth'),
                       Config.fromfile(tmp_path / 'lora.py'))
