"""DiTASK: singular values of the frozen projections warped by 1-D CPAB diffeomorphisms.

Oracles: the frozen backbone (theta = 0), ``torch.linalg.svd`` of each weight block with the
spectrum resampled by ``numpy.interp`` at phi (``cpab.transform_grid``, itself checked
against an RK4 integration in ``test_cpab.py``) and the weight rebuilt as ``U diag(S') V^T``
(not in the tuner's delta form); frozen copies of the backbone with those weights written
in (the shared stream, and each task's forked block); the reference's parameter groups by
hand (``ipsitmantri/DiTASK`` ``models/lora.py`` and its yaml) and the paper's 1.61M.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from mmseg.registry import MODELS
from mmpoly.models.tuners.cpab import Cpab1d
from . import helpers
from .helpers import B, SWIN_T, TASKS, frozen_copy, per_task, randomize_tuner

X = torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO = osp.join(REPO, 'configs', 'demo', 'ditask_swin-tiny_synthetic.py')


def build(tasks=TASKS, seed=0, with_cp=False, **tuner):
    tuner.setdefault('dropout', 0.0)
    return helpers.build(dict(type='DiTASK', **tuner), tasks, seed=seed,
                         with_cp=with_cp).double()


def draw_thetas(model, std=0.5):
    """Thetas far from the identity (N(0, std^2), seed 1): the spectra move across cells."""
    randomize_tuner(model, std)


def modules(block):
    wmsa = block.attn.w_msa
    return dict(qkv=wmsa.qkv, proj=wmsa.proj, fc1=block.ffn.layers[0][0], fc2=block.ffn.layers[1])


def oracle_weight(weight, theta, cells, blocks):
    """``U diag(S') V^T`` per block: S from torch.linalg.svd, S' = np.interp of S (on
    linspace(0, 1, k)) at phi_theta(linspace(0, 1, k))."""
    out = []
    for w in weight.detach().chunk(blocks, dim=0):
        U, S, Vh = torch.linalg.svd(w, full_matrices=False)
        k = S.shape[0]
        grid = torch.linspace(0, 1, k, dtype=torch.float64)
        phi = Cpab1d(cells).transform_grid(grid, theta.detach().reshape(1, -1))[0]
        warped = torch.from_numpy(np.interp(phi.numpy(), grid.numpy(), S.numpy()))
        out.append(U @ torch.diag(warped) @ Vh)
    return torch.cat(out)


def shared_copy(model, split=True):
    """The frozen backbone with every shared-theta projection's weight replaced by the oracle
    W'(theta): the shared stream."""
    ref = frozen_copy(model, tasks=model.tuner.tasks)
    tuner = model.tuner
    with torch.no_grad():
        for info in model.layer_infos:
            block = ref.stages[info.stage].blocks[info.index_in_stage]
            for name, module in modules(block).items():
                key = f'{name}{info.index}'
                if key in tuner.shared_theta:
                    module.weight.copy_(oracle_weight(
                        module.weight, tuner.shared_theta[key], 64,
                        3 if name == 'qkv' and split else 1))
    return ref


# --------------------------------------------------------------------------- the model
def test_zero_thetas_compute_the_frozen_backbone_for_every_task():
    model = build(theta_init='zeros')
    assert model.per_task_features and not model.task_specific
    assert model.tuner.fork_layers == {1, 3, 5, 7}  # the last block of each stage
    assert all(not p.any() for p in model.tuner.parameters())
    with torch.no_grad():
        outs, ref = model(X), frozen_copy(model)(X)
    for task_outs in per_task(outs, len(TASKS)):
        for o, r in zip(task_outs, ref):
            torch.testing.assert_close(o, r, **helpers.EXACT)
    # not vacuous: moving the thetas moves every task's features
    draw_thetas(model, 0.3)
    with torch.no_grad():
        moved = per_task(model(X), len(TASKS))
    for task_outs in moved:
        assert (task_outs[3] - ref[3]).abs().max() > 1e-3


def test_the_reference_init_is_not_the_frozen_model():
    """``kaiming_uniform_(a=sqrt(5))`` on (1, d): U(+-1/sqrt(d)), every entry non-zero."""
    model = build()
    tuner = model.tuner
    for theta in tuner.shared_theta.values():
        assert 0 < theta.abs().max() <= 1 / 63**0.5 and theta.abs().min() > 0
    for theta in tuner.task_theta.values():
        assert theta.shape == (len(TASKS), 3) and 0 < theta.abs().max() <= 1 / 3**0.5
    with torch.no_grad():
        outs, ref = per_task(model(X), len(TASKS)), frozen_copy(model)(X)
    assert (outs[0][0] - ref[0]).abs().max() > 1e-6


@pytest.mark.parametrize('name,blocks', [('qkv', 3), ('proj', 1), ('fc1', 1), ('fc2', 1)])
def test_warped_weight_is_the_svd_formula(name, blocks):
    model = build()
    draw_thetas(model)
    tuner, info = model.tuner, model.layer_infos[2]
    module = modules(model.stages[1].blocks[0])[name]
    key = f'{name}{info.index}'
    theta = tuner.shared_theta[key]
    with torch.no_grad():
        got = tuner.warped_weight(key, name, module, theta[None], tuner.shared_cpab)[0]
    expected = oracle_weight(module.weight, theta, 64, blocks)
    torch.testing.assert_close(got, expected, **helpers.EXACT)
    assert (got - module.weight).abs().max() > 1e-3  # the spectrum moved
    # the ends of each block's spectrum stay (zero boundary), the order too
    for w, w_new in zip(module.weight.chunk(blocks), got.chunk(blocks)):
        S, S_new = torch.linalg.svdvals(w), torch.linalg.svdvals(w_new)
        torch.testing.assert_close(S_new[[0, -1]], S[[0, -1]], **helpers.EXACT)


def test_qkv_is_warped_as_three_matrices():
    """One theta on q, k and v, each with its own SVD: not the SVD of the fused weight
    (``split_qkv=False``, which is that)."""
    split, fused = build(), build(split_qkv=False)
    draw_thetas(split)
    fused.load_state_dict(split.state_dict())
    key, module = 'qkv2', split.stages[1].blocks[0].attn.w_msa.qkv
    theta = split.tuner.shared_theta[key]
    with torch.no_grad():
        w_split = split.tuner.warped_weight(key, 'qkv', module, theta[None],
                                            split.tuner.shared_cpab)[0]
        w_fused = fused.tuner.warped_weight(key, 'qkv', module, theta[None],
                                            fused.tuner.shared_cpab)[0]
    torch.testing.assert_close(w_split, oracle_weight(module.weight, theta, 64, 3),
                               **helpers.EXACT)
    torch.testing.assert_close(w_fused, oracle_weight(module.weight, theta, 64, 1),
                               **helpers.EXACT)
    assert (w_split - w_fused).abs().max() > 1e-3


def test_streams_follow_the_reference_formulas():
    """The shared stream is the frozen backbone with every W replaced by W'(theta_shared);
    task t's stage-i output is that backbone with the last block of stage i's proj, fc1 and
    fc2 replaced by W'(theta_t) (theta_t alone, on the task's own stream: each task is its
    own frozen copy, nothing of the shared stream's projections past the fork)."""
    model = build()
    draw_thetas(model)
    tuner = model.tuner
    ref = shared_copy(model)
    with torch.no_grad():
        per = per_task(model(X), len(TASKS))
        shared_out = ref(X)
        # stages 0-2 feed the shared stream on: its levels before the fork are the copy's
        for t in range(len(TASKS)):
            for i in range(4):
                edited = shared_copy(model)
                index = model.layer_infos[2 * i + 1].index
                frozen = modules(model.stages[i].blocks[-1])  # theta_t warps the frozen W
                for name, module in modules(edited.stages[i].blocks[-1]).items():
                    key = f'{name}{index}'
                    if key in tuner.task_theta:
                        module.weight.copy_(oracle_weight(
                            frozen[name].weight, tuner.task_theta[key][t], 4, 1))
                torch.testing.assert_close(per[t][i], edited(X)[i], **helpers.EXACT)
        assert not torch.allclose(per[0][3], per[1][3])
        assert not torch.allclose(per[0][2], shared_out[2])


def test_one_task_model_gives_the_same_task_rows():
    """The task streams are independent here (their projections read only their own
    input): a one-task model with task 1's thetas computes task 1's rows."""
    model = build()
    draw_thetas(model)
    one = build(tasks=TASKS[1:])
    state = model.state_dict()
    state = {k: (v[1:] if k.startswith('tuner.task_theta.') else v) for k, v in state.items()}
    one.load_state_dict(state)
    with torch.no_grad():
        both, alone = per_task(model(X), len(TASKS)), one(X)
    for a, b in zip(both[1], alone):
        torch.testing.assert_close(a, b, **helpers.EXACT)


def test_batched_warps_equal_one_warp_per_projection():
    """``before_forward`` integrates every theta's phi in one call per tessellation; the
    hooks without it integrate each projection's own: the same model."""
    model = build()
    draw_thetas(model)
    prepared = model.tuner.before_forward()
    assert set(prepared) == {('shared', k) for k in model.tuner.shared_theta} | {
        ('task', k) for k in model.tuner.task_theta}
    assert prepared[('task', 'fc27')].shape == (len(TASKS), 128)  # T x k (width 128)
    with torch.no_grad():
        batched = model(X)
        model.tuner.before_forward = lambda: None
        single = model(X)
    for a, b in zip(batched, single):
        torch.testing.assert_close(a, b, **helpers.EXACT)


def test_stacked_equals_loop():
    """A fork tuner runs one shared pass whatever ``task_batching`` says."""
    model = build()
    draw_thetas(model)
    helpers.assert_stacked_equals_loop(model, X)


def test_merged_equals_unmerged_and_refuses_training():
    model = build()
    draw_thetas(model)
    with torch.no_grad():
        unmerged = model(X)
        model.tuner.merge()
        merged = model(X)
    tuner = model.tuner
    # every warped projection: 29 with a shared theta, 12 with task thetas (9 both)
    assert len(tuner._merged) == len(set(tuner.shared_theta) | set(tuner.task_theta)) == 32
    for a, b in zip(unmerged, merged):
        torch.testing.assert_close(a, b, **helpers.EXACT)
    model.train()
    with pytest.raises(RuntimeError, match='DiTASK: cannot train while merged'):
        model(X)
    model.tuner.unmerge()
    model(X)


def test_svd_cache_is_refreshed_by_loading_and_casting_and_never_saved():
    model = build()
    draw_thetas(model)
    with torch.no_grad():
        model(X)
    tuner = model.tuner
    cached = tuner.cached_tensors()
    assert len(cached) == 3 * 32  # U, S, Vh of every warped projection
    state = model.state_dict()
    assert {k.split('.')[1] for k in state if k.startswith('tuner.')} == {
        'shared_theta', 'task_theta'}
    stored = {t.data_ptr() for t in state.values()}
    assert not any(t.data_ptr() in stored for t in cached)
    # new frozen weights: the next forward is that of a model built with them
    other = build(seed=1)
    other.tuner.load_state_dict(tuner.state_dict())
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        for a, b in zip(model(X), other(X)):
            torch.testing.assert_close(a, b, **helpers.EXACT)
    # a dtype change: the SVD follows (float32 now)
    model.float()
    with torch.no_grad():
        outs = model(X.float())
    assert all(t.dtype == torch.float32 for t in tuner.cached_tensors())
    for a, b in zip(outs, other(X)):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-3)


def test_an_inference_mode_forward_then_a_training_step():
    """The cached SVD (and CPAB basis) made under ``torch.inference_mode`` must not be
    inference tensors: a later training step saves them for its backward."""
    model = build(theta_init='zeros')
    with torch.inference_mode():
        model(X)
    model.train()
    sum(o.sum() for o in model(X)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.tuner.parameters())


def test_every_trainable_parameter_gets_a_gradient_with_cp_on_and_off():
    def make(with_cp):
        model = build(seed=5, with_cp=with_cp)
        draw_thetas(model, 0.3)
        return model

    g = helpers.assert_checkpointing_keeps_every_gradient(make, X)
    tuner = {n for n in g if n.startswith('tuner.')}
    assert len(tuner) == 29 + 12  # the last block's proj / fc1 / fc2 shared thetas: unused
    backbone = {n for n in g if not n.startswith('tuner.')}
    assert all(('norm' in n or n.startswith('patch_embed.') or 'relative_position' in n
                or 'downsample.reduction' in n) for n in backbone)
    assert any('downsample.reduction' in n for n in backbone)


def test_theta_gradient_equals_finite_differences():
    """d loss / d theta through the CPAB closed form, the interpolation and the SVD delta,
    against central differences of the whole model (float64)."""
    model = build(seed=2)
    draw_thetas(model, 0.3)
    x = X[:1]
    theta = model.tuner.task_theta['fc15']
    loss = sum((o**2).mean() for o in model(x))
    (grad, ) = torch.autograd.grad(loss, theta)
    h = 1e-6
    with torch.no_grad():
        for t, j in ((0, 0), (1, 2)):
            theta[t, j] += h
            up = sum((o**2).mean() for o in model(x))
            theta[t, j] -= 2 * h
            down = sum((o**2).mean() for o in model(x))
            theta[t, j] += h
            torch.testing.assert_close(grad[t, j], (up - down) / (2 * h), rtol=1e-5, atol=1e-9)


def test_frozen_groups_by_key():
    model = build(train_norms=False, train_patch_merging=False)
    trained = {n for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith('tuner.')}
    assert trained and not any('norm' in n and not n.startswith('patch_embed.')
                               for n in trained)
    assert not any('downsample' in n for n in trained)


def test_no_task_targets_means_no_fork():
    model = build(task_targets=())
    assert not model.tuner.fork_layers and not model.tuner.task_theta
    assert not model.per_task_features
    assert len(model.tuner.shared_theta) == 4 * 8


# --------------------------------------------------------------------------- counts
TASKS4 = ('semseg', 'human_parts', 'sal', 'normals')
SWIN_T_DIMS, SWIN_T_HEADS, DEPTHS = (96, 192, 384, 768), (3, 6, 12, 24), (2, 2, 6, 2)
#: the backbone groups the reference trains on Swin-T (test_mtlora.hand_extra: patch
#: embedding 4,896, LayerNorms 23,040, position tables 23,322, reductions 1,548,288)
EXTRA = 1_599_546


def swin_t_groups(**tuner):
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS4, **SWIN_T,
                              tuner=dict(type='DiTASK', **tuner)))
    groups = {name: sum(p.numel() for p in getattr(model.tuner, name).values())
              for name in ('shared_theta', 'task_theta')}
    extra = sum(p.numel() for n, p in model.named_parameters()
                if p.requires_grad and not n.startswith('tuner.'))
    return groups, extra


def test_counts_equal_the_hand_formula_and_sit_below_the_paper():
    blocks, stages, tasks = sum(DEPTHS), len(DEPTHS), len(TASKS4)
    groups, extra = swin_t_groups(build_unused=True)
    assert extra == EXTRA
    # shared: 63 per projection, 4 projections per block; tasks: 3 per task projection
    assert groups == {'shared_theta': 63 * 4 * blocks, 'task_theta': 3 * 3 * stages * tasks}
    reference = sum(groups.values()) + extra
    assert reference == 3_024 + 144 + EXTRA == 1_602_714
    assert round(reference / 1e6, 2) == 1.60  # the paper prints 1.61M (encoder side)
    # 1.61M (half up) is [1,605,000, 1,615,000): 2,286 to 12,285 more, in a group the
    # released code does not show
    assert (1_605_000 - reference, 1_614_999 - reference) == (2_286, 12_285)
    # for scale: 64-cell task thetas would print 1.61
    big, _ = swin_t_groups(build_unused=True, task_cells=64)
    assert round((sum(big.values()) + extra) / 1e6, 2) == 1.61
    # what mmpoly builds: without the 3 x 63 thetas of the last block no output reads
    default, _ = swin_t_groups()
    assert sum(default.values()) + extra == 1_602_714 - 189 == 1_602_525


# --------------------------------------------------------------------------- errors
def test_refused_by_pvt():
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    with pytest.raises(ValueError, match='DiTASK needs task_forks, which PolyhistorPVT'):
        MODELS.build(dict(type='PolyhistorPVT', tasks=TASKS, tuner=dict(type='DiTASK'),
                          **PVT_TINY))


def test_bad_keys_are_named():
    with pytest.raises(ValueError, match='DiTASK.task_targets.*qkv would part'):
        build(task_targets=('qkv', 'proj'))
    with pytest.raises(ValueError, match='DiTASK.targets must be a non-empty subset'):
        build(targets=())
    with pytest.raises(ValueError, match='DiTASK.theta_init'):
        build(theta_init='normal')
    with pytest.raises(ValueError, match='DiTASK.shared_cells must be an int >= 2'):
        build(shared_cells=1)
    with pytest.raises(ValueError, match="DiTASK.basis must be 'rref'"):
        build(basis='svd')


# --------------------------------------------------------------------------- the demo
def test_demo_trains_one_iteration_through_the_runner(tmp_path):
    """The demo config, built as tools/train.py builds it, one iteration of the real
    mmengine Runner: the thetas move, the frozen projections do not, the checkpoint holds
    the thetas and no SVD."""
    model, before, after, state = helpers.train_demo_one_iteration(DEMO, tmp_path)
    tuner = model.backbone.tuner
    assert type(tuner).__name__ == 'DiTASK' and tuner.fork_layers
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert {n for n in moved if '.tuner.' in n} == {
        n for n in before if '.tuner.' in n}  # every theta
    assert not any(n.endswith(('qkv.weight', 'proj.weight', 'fc1.weight')) for n in moved)
    assert moved == {n for n, p in after.items() if p.requires_grad}
    tuner_keys = {k for k in state if '.tuner.' in k}
    assert tuner_keys and all('_theta.' in k for k in tuner_keys)
