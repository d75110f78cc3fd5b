"""What the tuner tests share: the tiny Swin, built with a tuner, and the checks run on it.

Every model here is the tiny Swin of tests/models/backbones/test_polyhistor_swin.py with
``B`` images per task, task-stacked: task t's outputs are rows ``t * B:(t + 1) * B``.
"""
import torch

import mmpoly  # noqa: F401
from mmseg.registry import MODELS
from mmpoly.models.tuners.base import BaseTuner
from ..backbones.test_polyhistor_swin import TINY

TASKS = ('semseg', 'human_parts')
B = 2  # images per batch
SWIN_T = dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)
#: widths of Swin-T's 12 layers
SWIN_T_WIDTHS = [96] * 2 + [192] * 2 + [384] * 6 + [768] * 2

__all__ = ['TINY', 'TASKS', 'B', 'SWIN_T', 'SWIN_T_WIDTHS', 'build', 'frozen_copy', 'rows',
           'per_task', 'tuner_params', 'randomize_tuner', 'assert_tasks_equal_frozen',
           'sgd_step_on_every_parameter', 'assert_adam_step_changes_only_the_tuner',
           'assert_gradients_reach_every_tuner_parameter', 'assert_only_task_1_of_3_moved',
           'assert_step_and_load_refresh_the_cache', 'assert_tasks_equal_edited_frozen',
           'add_table_deltas', 'EXACT',
           'assert_task_1_moves_alone', 'assert_checkpointing_keeps_every_gradient',
           'assert_stacked_equals_loop', 'train_demo_one_iteration']


def build(tuner, tasks=TASKS, seed=0, perturb=0.1, **kwargs):
    """The tiny Swin with ``tuner``, weights from ``seed``, in eval mode.

    ``perturb``: add ``perturb`` x N(0, 1) to every backbone parameter (upstream init leaves
    biases and tables at zero: this makes them matter); None leaves the init as it is.
    """
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=tasks, tuner=tuner, **TINY, **kwargs))
    model.init_weights()
    if perturb is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.startswith('tuner.'):
                    p.add_(perturb * torch.randn_like(p))
    model.eval()
    return model


def frozen_copy(model, tasks=TASKS, check_missing=False):
    """The same backbone weights without a tuner (``check_missing``: assert none is missing)."""
    frozen = MODELS.build(dict(type='PolyhistorSwin', tasks=tasks, **TINY))
    frozen.to(next(model.parameters()).dtype)  # float64 models get a float64 copy
    missing, _ = frozen.load_state_dict(model.state_dict(), strict=False)
    if check_missing:
        assert not missing
    frozen.eval()
    return frozen


def rows(outs, t):
    """Task t's rows of task-stacked outputs."""
    return [o[t * B:(t + 1) * B] for o in outs]


def per_task(outs, num_tasks):
    """Task-stacked outputs -> list over tasks of the 4 levels."""
    return [[o.view(num_tasks, -1, *o.shape[1:])[t] for o in outs] for t in range(num_tasks)]


def tuner_params(model):
    return {n: p for n, p in model.named_parameters() if n.startswith('tuner.')}


def randomize_tuner(model, std, params=None):
    """Draw ``params`` (default: every tuner parameter) from N(0, std^2), seed 1."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.tuner.parameters() if params is None else params:
            p.normal_(0, std)


#: mathematical equalities are checked in float64: float32 results of a task-stacked batch and
#: of a loop take different matmul blockings, and their last-bit differences, amplified by the
#: LayerNorms of four stages, reach 3e-5 on some CPUs (AVX-512); in float64 they stay ~1e-13
EXACT = dict(atol=1e-10, rtol=1e-10)


def assert_tasks_equal_frozen(model, rtol=EXACT['rtol']):
    """Every task's outputs == the frozen backbone's, on B random 64 x 64 images (float64)."""
    x = torch.randn(B, 3, 64, 64, dtype=torch.float64)
    model.double()
    with torch.no_grad():
        outs, ref = model(x), frozen_copy(model).double()(x)
    for t in range(len(TASKS)):
        for a, b in zip(rows(outs, t), ref):
            torch.testing.assert_close(a, b, atol=EXACT['atol'], rtol=rtol)


def assert_tasks_equal_edited_frozen(model, x, edit):
    """Oracle: task t's outputs on ``x`` == those of the frozen backbone that
    ``edit(frozen, t)`` changed in place (under no_grad). In float64 (``model`` is cast in
    place): the edited weights sum in another order than the tuner's branch."""
    model.double()
    x = x.double()
    with torch.no_grad():
        outs = model(x)
        for t in range(len(TASKS)):
            ref_model = frozen_copy(model)
            edit(ref_model, t)
            for a, b in zip(rows(outs, t), ref_model(x)):
                torch.testing.assert_close(a, b, **EXACT)


def add_table_deltas(ref_model, model, t):
    """Add task t's relative position bias deltas of ``model``'s tuner to ``ref_model``'s
    tables."""
    for i, info in enumerate(model.layer_infos):
        table = ref_model.get_submodule(info.name).attn.w_msa.relative_position_bias_table
        table.add_(model.tuner.rel_pos.tables[i][t])


def sgd_step_on_every_parameter(model):
    """One SGD step (lr 0.1) on every parameter, frozen ones included (they get no grad).

    Returns (the names of the parameters that changed, every parameter before the step).
    """
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # every parameter: frozen ones get no grad
    loss = sum((o**2).mean() for o in model(torch.randn(B, 3, 64, 64)))
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    return changed, before


def assert_adam_step_changes_only_the_tuner(model):
    """One Adam step on the tuner: every tuner parameter moves, no frozen one does."""
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tuned = tuner_params(model)
    opt = torch.optim.Adam(tuned.values(), lr=1e-3)
    loss = sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64)))
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        if name in tuned:
            assert not torch.equal(p, before[name]), f'{name} did not change'
        else:
            assert not p.requires_grad and p.grad is None
            assert torch.equal(p, before[name]), f'frozen {name} changed'


def assert_gradients_reach_every_tuner_parameter(model):
    """Back-propagate the sum of every output (train mode, one image): every tuner parameter
    gets a non-zero gradient. Returns the tuner parameters by name."""
    model.train()
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    params = tuner_params(model)
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    return params


def assert_checkpointing_keeps_every_gradient(make_model, x, loss_tol=EXACT, grad_tol=EXACT):
    """One training step's loss (the mean square of every output on ``x``) and gradients with
    activation checkpointing off and on (``make_model(with_cp)``: the model, drawn): every
    trainable parameter gets a non-zero gradient, and checkpointing changes neither the loss
    nor a gradient (within ``loss_tol`` / ``grad_tol``). Returns the gradients by name."""
    def step(with_cp):
        model = make_model(with_cp)
        model.train()
        loss = sum((o**2).mean() for o in model(x))
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()
                               if p.requires_grad}

    loss, g = step(False)
    loss_cp, g_cp = step(True)
    missing = [n for n, v in g.items() if v is None or not v.abs().sum() > 0]
    assert not missing, missing
    torch.testing.assert_close(loss_cp, loss, **loss_tol)
    assert g.keys() == g_cp.keys()
    for n in g:
        torch.testing.assert_close(g_cp[n], g[n], **grad_tol, msg=n)
    return g


def assert_task_1_moves_alone(model, params):
    """Add N(0, 1) to task 1's row of every tensor in ``params``: only task 1's outputs move."""
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
        for p in params:
            p[1].add_(torch.randn_like(p[1]))  # perturb task 1 only
        new = model(x)
    for a, b in zip(rows(outs, 0), rows(new, 0)):
        assert torch.equal(a, b)
    for a, b in zip(rows(outs, 1), rows(new, 1)):
        assert (a - b).abs().max() > 1e-3


def assert_only_task_1_of_3_moved(before, after):
    """``per_task`` outputs of 3 tasks, before and after a change to task 1's parameters:
    tasks 0 and 2 are untouched, task 1's deepest level moved."""
    for t in (0, 2):
        for a, b in zip(before[t], after[t]):
            assert torch.equal(a, b)
    assert not torch.allclose(before[1][3], after[1][3])


def assert_step_and_load_refresh_the_cache(model, params, x, cached, same, build):
    """A generating tuner's eval-mode cache (``cached``, its weights after an eval forward on
    ``x``) is refreshed by an optimiser step (SGD, lr 1, on ``params``) and then by loading
    ``build(seed=1)``'s weights. ``same(a, b)`` compares two sets of generated weights.

    Returns the weights after the load.
    """
    tuner = model.tuner
    model.train()
    opt = torch.optim.SGD(params, lr=1.0)
    sum(o.sum() for o in model(x)).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        stepped = tuner.current_weights()
        assert not same(stepped, cached) and same(stepped, tuner.generate_weights())
        other = build(seed=1)
        model.load_state_dict(other.state_dict())
        loaded = tuner.current_weights()
        assert same(loaded, other.tuner.generate_weights()) and not same(loaded, stepped)
    return loaded


def assert_stacked_equals_loop(model, x, loop=None):
    """``model``'s task-stacked outputs on ``x`` == the per-task loop's: ``loop`` given
    ``model``'s weights, or else ``model`` itself switched to ``task_batching='loop'``.

    In float64 (``model`` and ``loop`` are cast in place, caches dropped): the stacked
    (T x B rows) and looped (B rows) matmuls take different blockings, whose float32 results
    differ in the last bits on some CPUs and thread counts.

    Returns the stacked outputs.
    """
    for m in (model, loop):
        if m is not None:
            m.double()
            for module in m.modules():
                if isinstance(module, BaseTuner):
                    module.clear_cache()
    x = x.double()
    if loop is not None:
        loop.load_state_dict(model.state_dict())
    with torch.no_grad():
        stacked = model(x)
        if loop is None:
            model.task_batching = 'loop'
            loop = model
        looped = loop(x)
    for a, b in zip(stacked, looped):
        torch.testing.assert_close(a, b, **EXACT)
    return stacked


def train_demo_one_iteration(config, tmp_path):
    """One iteration of the real mmengine Runner on ``config`` (a demo config, built as
    tools/train.py builds it) over 2 synthetic PASCAL images, one torch thread.

    Returns (the model, its parameters when the iteration started (after the Runner's
    init), its parameters after it, the state dict of the epoch checkpoint it wrote)."""
    import os.path as osp
    import uuid
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    from mmpoly.datasets import make_synthetic_pascal_mt
    from mmpoly.engine import load_config, prepare_run

    root = str(tmp_path / 'data')
    make_synthetic_pascal_mt(root, num_train=2, num_val=1, image_size=(64, 64), seed=0)
    options = {'train_dataloader.dataset.data_root': root, 'train_dataloader.batch_size': 2,
               'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
               'train_cfg.max_epochs': 1, 'param_scheduler.0.end': 2,
               'default_hooks.checkpoint.interval': 1, 'default_hooks.logger.interval': 1,
               'randomness.seed': 0, 'val_cfg': None, 'val_dataloader': None,
               'val_evaluator': None}
    cfg = prepare_run(load_config(config, options), 'none', str(tmp_path / 'work'))
    cfg.experiment_name = f'demo_{uuid.uuid4().hex[:8]}'
    cfg.visualizer.name = cfg.experiment_name
    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = {}

    class Snapshot(Hook):  # the weights the iteration starts from (after the Runner's init)
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            before.update({n: p.detach().clone() for n, p in model.named_parameters()})

    runner.register_hook(Snapshot(), priority='LOWEST')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.train()
    finally:
        torch.set_num_threads(threads)
    assert runner.iter == 1
    after = dict(model.named_parameters())
    ckpt = torch.load(osp.join(cfg.work_dir, 'epoch_1.pth'), map_location='cpu',
                      weights_only=False)
    return model, before, after, ckpt['state_dict']
