"""The task context: every hook is told which tasks its pass holds, so the per-task loop and
activation checkpointing (which re-runs a layer in the backward, after the pass or the loop
has moved on) compute exactly what the plain task-stacked pass computes.

For a representative of every tuner family, on the tiny Swin and the tiny PVT: every
``task_batching`` (stacked / loop) x ``with_cp`` (none / all / stages 0 and 1) gives the
loss and the gradients of the plain stacked pass, and the checkpointed layers really are
recomputed in the backward.
"""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401
from mmpoly.models.tuners import BaseTuner, TaskContext
from mmpoly.benchmark import random_batch
from mmseg.registry import MODELS
from .test_polyhistor_pvt import TINY as PVT_TINY
from .test_polyhistor_swin import TINY as SWIN_TINY

TASKS = ('semseg', 'human_parts', 'sal')  # three: the loop's middle task is a real slice
B = 1
SMALL_HYPERNET = dict(task_embed_dim=8, embed_dim=16, projector_hidden=8)
#: one representative per tuner family (the relative-bias tables exist on Swin only)
TUNERS = {
    'adapter': dict(type='Adapter', reduction=4),
    'lora': dict(type='LoRA', rank=2),
    'vpt_deep': dict(type='VPT', num_tokens=2, deep=True),
    'bitfit': dict(type='BitFit'),
    'relative_bias': dict(type='RelativeBias'),
    'compacter': dict(type='Compacter', reduction=2, phm_dim=4),
    'hyperformer': dict(type='Hyperformer', reduction=4, **SMALL_HYPERNET),
    'polyhistor': dict(type='Polyhistor', reduction=4, **SMALL_HYPERNET),
    'polyhistor_lite': dict(type='PolyhistorLite', reduction=2, **SMALL_HYPERNET),
    'full_ft': dict(type='FullFineTuning'),
}
#: type, size, input side (PVT: 64, so that every attention has more than one key)
BACKBONES = {'swin': ('PolyhistorSwin', SWIN_TINY, 32), 'pvt': ('PolyhistorPVT', PVT_TINY, 64)}
#: (task_batching, with_cp) of every variant; the first is the reference
VARIANTS = [('stacked', False), ('stacked', True), ('stacked', [0, 1]), ('loop', False),
            ('loop', True), ('loop', [0, 1])]


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(backbone, tuner, task_batching='stacked', with_cp=False):
    kind, tiny, _ = BACKBONES[backbone]
    torch.manual_seed(0)
    model = MODELS.build(dict(type=kind, tasks=TASKS, tuner=copy.deepcopy(tuner),
                              task_batching=task_batching, with_cp=with_cp, **tiny))
    model.init_weights()
    return model


def loss_and_grads(model, x):
    """A fixed random linear loss of every output level, its gradients, and how many layer
    forwards ran inside the backward (recomputations)."""
    model.train()
    calls = []
    layer = model._layer
    model._layer = lambda *args: calls.append(1) or layer(*args)
    outs = model(x)
    g = torch.Generator().manual_seed(3)
    loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs)
    in_forward = len(calls)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, len(calls) - in_forward


@pytest.mark.parametrize('backbone,name', [
    (b, n) for b in BACKBONES for n in TUNERS if not (b == 'pvt' and n == 'relative_bias')])
def test_loop_and_checkpointing_equal_the_stacked_pass(backbone, name):
    tuner = TUNERS[name]
    reference = build(backbone, tuner)
    torch.manual_seed(1)
    with torch.no_grad():  # every tuner parameter matters and differs between tasks
        for p in reference.tuner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = reference.state_dict()
    side = BACKBONES[backbone][2]
    x = torch.randn(B, 3, side, side)
    ref_loss, ref_grads, recomputed = loss_and_grads(reference, x)
    assert ref_grads and recomputed == 0
    assert all(g is not None and g.abs().sum() > 0 for g in ref_grads.values())
    passes = len(TASKS) if reference.task_specific else 1
    for task_batching, with_cp in VARIANTS[1:]:
        model = build(backbone, tuner, task_batching, with_cp)
        model.load_state_dict(state)
        loss, grads, recomputed = loss_and_grads(model, x)
        where = f'{backbone} {name} task_batching={task_batching} with_cp={with_cp}'
        checkpointed = sum(layer.stage in model.checkpointed_stages
                           for layer in model.layer_infos)
        loop_passes = passes if task_batching == 'loop' else 1
        assert (checkpointed > 0) == bool(with_cp), where
        assert recomputed == checkpointed * loop_passes, where  # every one, in every pass
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-4, msg=where)
        assert grads.keys() == ref_grads.keys(), where
        for key, grad in grads.items():
            assert_close_to_scale(grad, ref_grads[key], f'{where}: gradient of {key}')


def assert_close_to_scale(got, expected, where, rtol=1e-4):
    """Equal up to float rounding relative to the tensor's scale: the loop and the stacked
    pass add the tasks' contributions in another order, which moves entries near zero by
    more than their own relative tolerance."""
    scale = expected.abs().max().item()
    error = (got - expected).abs().max().item()
    assert error <= rtol * scale + 1e-7, f'{where}: max error {error:.3g}, scale {scale:.3g}'


def test_a_demo_config_trains_with_the_loop_and_checkpointing():
    """The issue's report: a training step of the Polyhistor-Lite demo with
    ``task_batching='loop'`` and ``with_cp=True`` (it raised torch's CheckpointError)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile('configs/demo/polyhistor_lite_swin-tiny_synthetic.py')
    cfg.model.backbone.init_cfg = None
    results = []
    for task_batching, with_cp in (('stacked', False), ('loop', True)):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.update(task_batching=task_batching, with_cp=with_cp)
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()
        model.train()
        batch = random_batch(model.tasks, 1, 64, task_specs=model.task_specs)
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()
                                        if p.requires_grad and n.startswith('backbone.')}))
    (ref_loss, ref_grads), (loss, grads) = results
    torch.testing.assert_close(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and grads
    for key in grads:
        torch.testing.assert_close(grads[key], ref_grads[key], rtol=1e-4, atol=1e-6, msg=key)


def test_task_context():
    param = torch.arange(4.)[:, None].expand(4, 3)
    stacked = TaskContext.all_tasks(4)
    assert stacked.groups == 4 and stacked.selects_all and stacked.select(param) is param
    one = TaskContext.one_task(2, 4, prepared={'w': 1})
    assert one.groups == 1 and one.tasks == (2, ) and one.prepared == {'w': 1}
    assert torch.equal(one.select(param), param[2:3])
    assert one.select(param)._base is not None  # a view, no copy
    pair = TaskContext((3, 1), 4)
    assert torch.equal(pair.select(param), param[[3, 1]])
    assert pair.per_task(torch.zeros(2 * 5, 7, 6)).shape == (2, 35, 6)
    shared = TaskContext.shared_batch(4)
    assert shared.groups == 1 and shared.per_task(torch.zeros(5, 6)).shape == (1, 5, 6)
    # a value: frozen, hashable, equal by the tasks it holds (not by what was prepared)
    assert one == TaskContext.one_task(2, 4) and len({one, TaskContext.one_task(2, 4)}) == 1
    with pytest.raises(AttributeError):
        one.tasks = (1, )
    for bad in ((), (4, ), (1, 1), (-1, )):
        with pytest.raises(ValueError, match='distinct indices'):
            TaskContext(bad, 4)


def test_no_task_state_on_the_tuner():
    """The hooks read their context, not the module: the old setter is gone, and a module
    forward hook (BitFit's) that runs outside a backbone pass says so."""
    assert not hasattr(BaseTuner, 'set_active_task') and not hasattr(BaseTuner, 'active')
    model = build('swin', TUNERS['bitfit'])
    with pytest.raises(RuntimeError, match='outside a backbone pass'):
        model.stages[0].blocks[0].norm1(torch.randn(1, 4, 16))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))  # a pass binds it, and unbinds it after
    assert model.tuner._bound is None
