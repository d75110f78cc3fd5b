"""Claims of the README that each get a test failing when the claim breaks.

* two seed-0 runs of the main job's command log identical losses (and save identical weights);
* (``tools/test.py`` on the final checkpoint reproduces the last validation's metrics exactly:
  ``test_train_test.py::test_main_job_learns_and_test_writes_metrics``)
* ``tools/train.py --amp`` trains the demo (bfloat16 on CPU, no loss scaler; float16 with
  dynamic loss scaling on a GPU, tested in-process where one is present);
* ``tools/export_adapter.py --measure`` and ``--no-optimizer``;
* training starts from an adapter-only file given as ``load_from``.
"""
import json
import os.path as osp
import runpy
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper

from mmpoly.checkpoint.adapter import (frozen_backbone_keys, load_adapter_checkpoint,
                                             make_adapter_checkpoint)
from tests.utils.test_adapter_checkpoint import (LORA, assert_same_model, backbone,  # noqa
                                                 build, config_on, pretend_training,
                                                 runner_cfg)
from .conftest import REPO, demo_options, run_tool, train_losses

LITE = 'configs/demo/polyhistor_lite_swin-tiny_synthetic.py'
EXPORT = osp.join(REPO, 'tools', 'export_adapter.py')


# --------------------------------------------------------------- runs of the tools
@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_data):
    """The main job's command (Polyhistor-Lite demo, seed 0) twice, and once with --amp, on
    16 training images (2 iterations, a loss logged at each), without validation."""
    root = tmp_path_factory.mktemp('claims')
    options = demo_options(demo_data, 1, 'randomness.seed=0', 'default_hooks.logger.interval=1',
                           'train_dataloader.dataset.indices=16', 'train_cfg.val_interval=100')
    out = {name: root / name for name in ('a', 'b', 'amp')}
    # one thread each (run_tool): side by side, the three runs use both cores of the machine
    with ThreadPoolExecutor(3) as pool:
        done = [pool.submit(run_tool, 'python', 'tools/train.py', LITE, '--work-dir',
                            str(out[name]), *(('--amp', ) if name == 'amp' else ()), *options)
                for name in out]
        for future in done:
            future.result()
    return out


def test_two_seed_0_runs_are_identical(runs):
    a, b = train_losses(runs['a']), train_losses(runs['b'])
    assert [step for step, _ in a] == [1, 2]
    assert a == b
    ckpt_a, ckpt_b = (torch.load(runs[k] / 'epoch_1.pth', map_location='cpu',
                                 weights_only=True)['state_dict'] for k in ('a', 'b'))
    assert ckpt_a.keys() == ckpt_b.keys()
    for key, value in ckpt_a.items():
        assert torch.equal(value, ckpt_b[key]), key


def test_train_amp_on_the_demo(runs):
    cfg = Config.fromfile(runs['amp'] / osp.basename(LITE))  # the config the run dumped
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    amp, fp32 = train_losses(runs['amp']), train_losses(runs['a'])
    assert [s for s, _ in amp] == [1, 2]
    # the first step's loss (same weights, same images): within 1% of float32, not equal
    assert amp[0][1] == pytest.approx(fp32[0][1], rel=1e-2) and amp[0][1] != fp32[0][1]
    ckpt = torch.load(runs['amp'] / 'epoch_1.pth', map_location='cpu', weights_only=True)
    # bfloat16 on CPU: no loss scaler; float16 on a GPU: its dynamic scaler's state
    assert ('loss_scaler' in ckpt['optimizer']) == torch.cuda.is_available()
    assert all(v.isfinite().all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='float16 autocast with loss scaling needs a CUDA GPU (CPU autocast '
                    'is bfloat16 only: test_amp_bf16_on_cpu_matches_fp32 and '
                    'test_train_amp_on_the_demo cover CPU)')
def test_amp_float16_with_dynamic_loss_scaling_on_gpu(demo_data):
    from tests.models.tuners.test_training_all_tuners import demo_batch, demo_model
    model = demo_model('polyhistor_lite', {'model.backbone.drop_path_rate': 0.0,
                                           'model.decode_head.dropout_ratio': 0.0})
    model = model.cuda().train()
    batch = demo_batch(demo_data, range(2))

    def loss():
        data = model.data_preprocessor(batch, training=True)
        return model.parse_losses(model(**data, mode='loss'))[0]

    ow = build_optim_wrapper(model, dict(type='MixedPrecisionOptimWrapper',
                                         optimizer=dict(type='Adam', lr=1e-3),
                                         loss_scale=dict(init_scale=2.0**60)))
    assert ow.cast_dtype == torch.float16 and ow.loss_scaler is not None
    with torch.no_grad():
        reference = loss()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    before = {n: p.detach().clone() for n, p in trainable}
    # a scale of 2^60 overflows float16 in the backward: the step is skipped, the scale cut
    with ow.optim_context(model):
        first = loss()
    assert first.dtype == torch.float32 and first.isfinite()
    torch.testing.assert_close(first.detach(), reference, rtol=1e-2, atol=0)
    ow.update_params(first)
    assert ow.loss_scaler.get_scale() < 2.0**60
    assert all(torch.equal(p, before[n]) for n, p in trainable), 'overflowing step applied'
    # at a workable scale the steps apply, and stay finite
    ow.loss_scaler.update(new_scale=2.0**12)
    for _ in range(3):
        with ow.optim_context(model):
            value = loss()
        ow.update_params(value)
    assert any(not torch.equal(p, before[n]) for n, p in trainable)
    assert all(p.isfinite().all() for p in model.parameters())
    assert 'loss_scaler' in ow.state_dict()


# --------------------------------------------------------------- adapter-only files
@pytest.fixture(scope='module')
def full_checkpoint(tmp_path_factory, backbone):  # noqa: F811
    """A "trained" LoRA demo model on a backbone file, saved in full with Adam state."""
    root = tmp_path_factory.mktemp('export')
    model = build(LORA, backbone)
    pretend_training(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()  # a real Adam state (moments of every trainable tensor)
    model.zero_grad(set_to_none=True)
    torch.save({'meta': {}, 'state_dict': model.state_dict(),
                'optimizer': optimizer.state_dict()}, root / 'full.pth')
    return model, str(root / 'full.pth'), config_on(root / 'lora.py', backbone)


def test_export_no_optimizer_drops_only_the_optimizer(full_checkpoint, tmp_path, backbone):  # noqa
    model, full, config = full_checkpoint
    tool = runpy.run_path(EXPORT)
    tool['main']([full, str(tmp_path / 'with.pth'), '--config', config])
    tool['main']([full, str(tmp_path / 'without.pth'), '--config', config, '--no-optimizer'])
    with_opt, without = (torch.load(tmp_path / f'{k}.pth', map_location='cpu',
                                    weights_only=True) for k in ('with', 'without'))
    assert len(with_opt['optimizer']['state']) == sum(p.requires_grad
                                                      for p in model.parameters())
    assert 'optimizer' not in without
    assert set(with_opt) - set(without) == {'optimizer'}
    assert without['adapter'] == with_opt['adapter']
    assert without['state_dict'].keys() == with_opt['state_dict'].keys()
    assert all(torch.equal(v, with_opt['state_dict'][k]) for k, v in without['state_dict'].items())
    # Adam's two moments of every trained tensor: about a third of the file with them
    assert osp.getsize(tmp_path / 'without.pth') < 0.4 * osp.getsize(tmp_path / 'with.pth')
    fresh = build(LORA, backbone, seed=11)
    load_adapter_checkpoint(fresh, str(tmp_path / 'without.pth'))
    assert_same_model(fresh, model, forward=False)


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def test_export_measure_sizes(capsys, tmp_path, backbone):  # noqa: F811
    config = config_on(tmp_path / 'lora.py', backbone)
    tool = runpy.run_path(EXPORT)
    tool['main'](['--measure', '--json', config])
    (row, ) = json.loads(capsys.readouterr().out)
    # oracle: the tensors each file holds (pickling adds a little per tensor)
    model = build(LORA, backbone)
    state = model.state_dict()
    frozen = set(frozen_backbone_keys(model))
    trained = tensor_bytes(p for p in model.parameters() if p.requires_grad)
    expected = dict(full=tensor_bytes(state.values()) + 2 * trained,
                    adapter_no_optimizer=tensor_bytes(v for k, v in state.items()
                                                      if k not in frozen))
    expected['adapter'] = expected['adapter_no_optimizer'] + 2 * trained
    assert frozen and expected['adapter'] < expected['full']
    for key, value in expected.items():
        assert value <= row[key] <= 1.02 * value + 150_000, (key, row[key], value)
    counts = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert row['all_params'] == sum(counts.values())
    assert row['encoder_params'] == sum(v for k, v in counts.items()
                                        if k.startswith('backbone.'))
    # the Markdown form: the same numbers, MiB and ratios
    tool['main'](['--measure', config])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == tool['size_row'](config, row)
    mib = lambda k: f'{row[k] / 2**20:.1f}'  # noqa: E731
    assert lines[-1] == (f"| lora | {mib('full')} | {mib('adapter')} | "
                         f"{row['adapter'] / row['full']:.3f} | {mib('adapter_no_optimizer')} | "
                         f"{row['adapter_no_optimizer'] / row['full']:.3f} |")


class _Snapshot(Hook):
    """The model's weights when training starts (after load_from)."""

    def before_train(self, runner):
        self.state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def test_training_starts_from_an_adapter_only_load_from(full_checkpoint, demo_data, tmp_path,
                                                       backbone):  # noqa: F811
    from mmengine.runner import Runner
    model, full, _ = full_checkpoint
    small = make_adapter_checkpoint(model, {'meta': {}, 'state_dict': model.state_dict()})
    assert frozen_backbone_keys(model) and not any(k in small['state_dict']
                                                   for k in frozen_backbone_keys(model))
    torch.save(small, tmp_path / 'adapter.pth')
    cfg = runner_cfg(tmp_path / 'work', demo_data, backbone, 1,
                     load_from=str(tmp_path / 'adapter.pth'))
    cfg.merge_from_dict({'train_dataloader.dataset.indices': 2,  # one iteration of 2
                         'train_dataloader.batch_size': 2})
    runner = Runner.from_cfg(cfg)
    snapshot = _Snapshot()
    runner.register_hook(snapshot, priority='LOWEST')
    runner.train()
    expected = model.state_dict()
    assert snapshot.state.keys() == expected.keys()
    for key, value in expected.items():  # trained parts from the file, frozen from the backbone
        assert torch.equal(snapshot.state[key], value), key
    trained = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu',
                         weights_only=True)['state_dict']
    lora = [k for k in trained if 'lora_A' in k]
    assert lora and all(not torch.equal(trained[k], expected[k]) for k in lora)  # it trained
