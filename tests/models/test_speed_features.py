"""The speed features, each a config key, against the default path on CPU.

- mixed precision (``tools/train.py --amp`` -> ``MixedPrecisionOptimWrapper``, bfloat16 on
  CPU): the loss within 1% of float32 (bfloat16 keeps 8 significant bits, a relative rounding
  of 2^-9 = 0.2% per op; the loss averages thousands of pixels, so the rounding mostly
  cancels: measured 1e-4 to 6e-4 on these models, and 1% leaves room for other seeds);
- ``torch.compile`` through mmengine's ``compile`` key: the compiled step's loss equals the
  eager one (float tolerance). Dynamo tracing of the whole model takes minutes on 2 CPU
  cores, so the default test compiles with the 'eager' backend (graph capture of every
  hook, no code generation); ``MMPOLY_SLOW_TESTS=1`` also runs the inductor backend;
- activation checkpointing of the frozen backbone blocks (``model.backbone.with_cp``, all
  stages or a list of them): the same loss and the same gradients of every trained
  parameter, and exactly the chosen stages' layers recomputed.
"""
import os

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mmpoly.engine.optim_wrappers import MixedPrecisionOptimWrapper
from mmpoly.benchmark import Case

DEMO = 'configs/demo/{}_swin-tiny_synthetic.py'
NO_DROPOUT = {'model.decode_head.dropout_ratio': 0.0}
slow = pytest.mark.skipif(not os.environ.get('MMPOLY_SLOW_TESTS'),
                          reason='minutes on 2 CPU cores; set MMPOLY_SLOW_TESTS=1')


def loss_of(case: Case, **kwargs):
    model = case.model
    data = model.data_preprocessor(case.batch, True)
    data['inputs'] = data['inputs'].to(next(model.parameters()).dtype)  # float64 models
    return model.parse_losses(model(**data, mode='loss', **kwargs))[0]


@pytest.mark.parametrize('method', ['polyhistor_lite', 'lora', 'single_task_ft'])
def test_amp_bf16_on_cpu_matches_fp32(method):
    case = Case(DEMO.format(method), NO_DROPOUT, img_size=64, batch_size=2)
    model = case.model.train()
    ow = build_optim_wrapper(model, dict(type='MixedPrecisionOptimWrapper',
                                         optimizer=dict(type='Adam', lr=1e-3)))
    assert isinstance(ow, MixedPrecisionOptimWrapper)
    assert ow.cast_dtype == torch.bfloat16 and ow.loss_scaler is None  # CPU: bf16, unscaled
    with torch.no_grad():
        ref = loss_of(case)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # not vacuous: the linear layers ran in bf16 under the wrapper's context (their outputs'
    # dtype; the loss value alone cannot tell: with ATEN_CPU_CAPABILITY=default the bf16
    # loss came within 1e-5 of fp32's)
    dtypes = []
    hooks = [m.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with ow.optim_context(model):
        loss = loss_of(case)
    for h in hooks:
        h.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}, set(dtypes)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-2, atol=0)
    ow.update_params(loss)
    changed = [n for n, p in model.named_parameters() if n in before
               and not torch.equal(p.detach(), before[n])]
    assert changed and all(p.isfinite().all() for p in model.parameters())


def test_amp_wrapper_choices():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='bfloat16 only'):
        build_optim_wrapper(model, dict(type='MixedPrecisionOptimWrapper', dtype='float16',
                                        optimizer=dict(type='SGD', lr=0.1)))
    ow = build_optim_wrapper(model, dict(type='MixedPrecisionOptimWrapper', dtype='bfloat16',
                                         optimizer=dict(type='SGD', lr=0.1)))
    assert 'loss_scaler' not in ow.state_dict()


def test_amp_in_benchmark_step():
    case = Case(DEMO.format('polyhistor_lite') + '@bench.amp=1', img_size=64)
    case.run_step()
    assert case.amp_dtype == torch.bfloat16 and case.last_loss > 0


def compiled_vs_eager(method, backend):
    eager = Case(DEMO.format(method), NO_DROPOUT, img_size=64, batch_size=1, seed=3)
    compiled = Case(DEMO.format(method),
                    dict(NO_DROPOUT, compile=dict(backend=backend)), img_size=64,
                    batch_size=1, seed=3)
    assert compiled.step is not compiled._train_step  # the config key took effect
    for _ in range(2):  # two steps: the second runs with weights updated by the first
        ref, out = eager.step(), compiled.step()
        # float32 bound, not equality: the compiled graph may fuse and reorder the sums
        # (eager backend: none; inductor: its kernels), about 1e-6 relative per op here
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_compile_eager_backend_same_loss():
    torch._dynamo.reset()
    compiled_vs_eager('lora', 'eager')


@slow
def test_compile_inductor_same_loss():
    torch._dynamo.reset()
    compiled_vs_eager('polyhistor_lite', 'inductor')


@pytest.mark.parametrize('method,with_cp', [('polyhistor_lite', True), ('lora', True),
                                             ('vpt_shallow', True), ('polyhistor_lite', [0, 2])])
def test_activation_checkpointing_same_loss_and_grads(method, with_cp, monkeypatch):
    config = DEMO.format(method)
    overrides = dict(NO_DROPOUT)
    if method == 'vpt_shallow':  # no demo config: the adapter demo with VPT's tuner
        config = DEMO.format('adapter')
        overrides['model.backbone.tuner'] = dict(_delete_=True, type='VPT', num_tokens=5)
    plain = Case(config, overrides, img_size=64, batch_size=2)
    cp = Case(config, dict(overrides, **{'model.backbone.with_cp': with_cp}), img_size=64,
              batch_size=2)
    cp.model.load_state_dict(plain.model.state_dict())
    plain.model.double(), cp.model.double()  # the same sums either way: equal in float64
    assert not plain.model.backbone.checkpointed_stages
    # count the layers that go through torch's checkpoint, per stage
    backbone = cp.model.backbone
    checkpointed = []
    real_checkpoint = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(fn, ctx, layer, *args, **kwargs):
        checkpointed.append(layer.stage)
        return real_checkpoint(fn, ctx, layer, *args, **kwargs)

    monkeypatch.setattr('mmpoly.models.backbones.tuned_backbone.cp.checkpoint',
                        counting_checkpoint)
    grads = []
    for case in (plain, cp):
        case.model.train()
        loss = loss_of(case)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in case.model.named_parameters()
                                      if p.requires_grad}))
    (l0, g0), (l1, g1) = grads
    stages = range(len(backbone.stages)) if with_cp is True else with_cp
    assert sorted(checkpointed) == sorted(
        layer.stage for layer in backbone.layer_infos if layer.stage in stages)
    torch.testing.assert_close(l1, l0, rtol=1e-12, atol=0)
    assert g0.keys() == g1.keys() and any('.tuner.' in n for n in g0)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-10, atol=1e-12, msg=name)
