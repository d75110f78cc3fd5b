"""Free Sinewich: shared LoRA, and in the last block of each stage task weights
``W + s_t G * sin(omega_t B W_mid A)``.

Oracles: the frozen backbone (B = 0); frozen copies of the backbone with dense weights written
in, built here from the formulas (the shared stream: ``W + s B A``, ``W + s B W_mid A`` in a
forked block; task t's forked projections: ``W + s_t conv2d(sin(omega_t M), K)`` with the 2-D
Gaussian ``K`` built from its definition and ``F.conv2d``, or ``numpy`` for the paddings);
the Clock Net's formula by hand; the parameter groups by hand and the paper's totals.
"""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmseg.registry import MODELS
from mmpoly.models.tuners.free_sinewich import gaussian_kernel, lowpass
from . import helpers
from .helpers import B, SWIN_T, TASKS, frozen_copy, per_task

X = torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO = osp.join(REPO, 'configs', 'demo', 'free_sinewich_swin-tiny_synthetic.py')


def build(tasks=TASKS, seed=0, with_cp=False, **tuner):
    tuner.setdefault('dropout', 0.0)
    tuner.setdefault('rank', 4)
    return helpers.build(dict(type='FreeSinewich', **tuner), tasks, seed=seed,
                         with_cp=with_cp).double()


def draw(model, std=0.3):
    """Every factor away from its init (N(0, std^2), seed 1); tokens N(0, 1)."""
    helpers.randomize_tuner(model, std)
    with torch.no_grad():
        model.tuner.task_tokens.normal_(0, 1)


def modules(block):
    wmsa = block.attn.w_msa
    return dict(qkv=wmsa.qkv, proj=wmsa.proj, fc1=block.ffn.layers[0][0], fc2=block.ffn.layers[1])


def gaussian_2d(size=7, sigma=1.0):
    """The normalised 2-D Gaussian, from its definition (not separable code)."""
    r = size // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    k = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return torch.from_numpy(k / k.sum())


def hand_omega(tuner):
    """lo + (hi - lo) sigmoid(c . tau_t + c0), per task (clock 'task')."""
    lo, hi = tuner.omega_range
    c, c0 = tuner.clock.weight[0], tuner.clock.bias[0]
    return [lo + (hi - lo) / (1 + torch.exp(-(c @ tau + c0))) for tau in tuner.task_tokens]


def hand_task_weight(tuner, key, weight, omega):
    m = tuner.shared_B[key] @ tuner.mid[key] @ tuner.shared_A[key]
    sine = torch.sin(omega * m)[None, None]
    filtered = F.conv2d(sine, gaussian_2d()[None, None], padding=3)[0, 0]
    return weight + tuner.task_scale * filtered


def shared_copy(model):
    """The frozen backbone with the shared stream's dense weights written in."""
    ref = frozen_copy(model, tasks=model.tuner.tasks)
    tuner = model.tuner
    with torch.no_grad():
        for info in model.layer_infos:
            block = ref.stages[info.stage].blocks[info.index_in_stage]
            for name, module in modules(block).items():
                key = f'{name}{info.index}'
                low = tuner.shared_B[key] @ tuner.shared_A[key]
                if key in tuner.mid:
                    low = tuner.shared_B[key] @ tuner.mid[key] @ tuner.shared_A[key]
                module.weight.add_(tuner.shared_scale * low)
    return ref


# --------------------------------------------------------------------------- the model
def test_starts_as_the_frozen_backbone_for_every_task():
    model = build()
    tuner = model.tuner
    assert model.per_task_features and tuner.fork_layers == {1, 3, 5, 7}
    assert all(not b.any() for b in tuner.shared_B.values())
    assert all(torch.equal(m, torch.eye(4, dtype=m.dtype)) for m in tuner.mid.values())
    assert set(tuner.mid) == {f'{n}{i}' for n in ('qkv', 'proj', 'fc1', 'fc2')
                              for i in (1, 3, 5, 7)}
    with torch.no_grad():
        outs, ref = model(X), frozen_copy(model)(X)
    for task_outs in per_task(outs, len(TASKS)):
        for o, r in zip(task_outs, ref):
            torch.testing.assert_close(o, r, **helpers.EXACT)
    draw(model)  # not vacuous
    with torch.no_grad():
        moved = per_task(model(X), len(TASKS))
    for task_outs in moved:
        assert (task_outs[3] - ref[3]).abs().max() > 1e-3


def test_the_clock_is_the_bounded_formula():
    model = build(omega_range=(2.0, 5.0))
    tuner = model.tuner
    draw(model)
    with torch.no_grad():
        omega = tuner.omegas()
        assert omega.shape == (len(TASKS), 1)
        torch.testing.assert_close(omega[:, 0], torch.stack(hand_omega(tuner)),
                                   **helpers.EXACT)
        # extreme tokens, along and against the clock's weight: omega at its bounds
        c = tuner.clock.weight[0] / tuner.clock.weight[0].norm()
        tuner.task_tokens.copy_(torch.stack([-1e4 * c, 1e4 * c]))
        omega = tuner.omegas()[:, 0]
    torch.testing.assert_close(omega, torch.tensor([2.0, 5.0], dtype=omega.dtype))
    per_projection = build(clock='projection').tuner
    assert per_projection.omegas().shape == (len(TASKS), 12)  # proj, fc1, fc2 x 4 stages


@pytest.mark.parametrize('padding', ['zeros', 'reflect', 'replicate'])
def test_lowpass_is_the_2d_gaussian_convolution(padding):
    torch.manual_seed(0)
    m = torch.randn(3, 20, 11, dtype=torch.float64)
    got = lowpass(m, gaussian_kernel(7, 1.0), padding)
    k = gaussian_2d().numpy()
    mode = {'zeros': 'constant', 'reflect': 'reflect', 'replicate': 'edge'}[padding]
    for i in range(3):
        padded = np.pad(m[i].numpy(), 3, mode=mode)
        expected = np.array([[(padded[r:r + 7, c:c + 7] * k).sum() for c in range(11)]
                             for r in range(20)])
        np.testing.assert_allclose(got[i].numpy(), expected, rtol=1e-12, atol=1e-12)
    assert abs(gaussian_kernel(7, 1.0).sum().item() - 1) < 1e-15
    # sigma moves the result (the key is read)
    assert (lowpass(m, gaussian_kernel(7, 2.0)) - lowpass(m, gaussian_kernel(7, 1.0))
            ).abs().max() > 1e-2


def single_channel_lowpass(m, kernel, padding):
    """The 2-D convolution with the outer-product kernel as one-channel images (the
    straightforward form the depthwise passes replace)."""
    k = kernel.numel()
    mode = {'zeros': 'constant', 'reflect': 'reflect', 'replicate': 'replicate'}[padding]
    x = F.pad(m.unsqueeze(1), (k // 2, ) * 4, mode=mode)
    return F.conv2d(x, torch.outer(kernel, kernel).to(m.dtype)[None, None]).squeeze(1)


@pytest.mark.parametrize('padding', ['zeros', 'reflect', 'replicate'])
def test_lowpass_gradient_and_float32(padding):
    """The backward (gradcheck, float64); float32 against the float64 oracle within a bound:
    each output is a sum of 49 products with weights summing to 1, so its rounding error is
    below 49 float32 ulps of max |m| (about 3e-6 relative; 1e-5 allowed). A non-contiguous
    matrix (a transposed view) gives the same values."""
    kernel = gaussian_kernel(5, 1.5)
    g = torch.Generator().manual_seed(4)
    m = torch.randn(2, 9, 6, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: lowpass(x, kernel, padding), (m, ))
    big = torch.randn(2, 160, 48, dtype=torch.float64, generator=g)
    expected = single_channel_lowpass(big, kernel, padding)
    got = lowpass(big.float(), kernel, padding).double()
    assert (got - expected).abs().max() <= 1e-5 * big.abs().max()
    torch.testing.assert_close(lowpass(big.transpose(1, 2).contiguous().transpose(1, 2),
                                       kernel, padding), lowpass(big, kernel, padding),
                               rtol=1e-12, atol=1e-12)


def test_lowpass_refuses_what_it_cannot_pad():
    m = torch.randn(1, 3, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="'reflect' padding of 3 needs a matrix side longer "
                                         'than 3, got 3'):
        lowpass(m, gaussian_kernel(7, 1.0), 'reflect')
    with pytest.raises(ValueError, match="padding must be one of .*got 'circular'"):
        lowpass(m, gaussian_kernel(7, 1.0), 'circular')
    # zeros and replicate padding need no minimum side: the one-channel form's values
    for padding in ('zeros', 'replicate'):
        torch.testing.assert_close(lowpass(m, gaussian_kernel(7, 1.0), padding),
                                   single_channel_lowpass(m, gaussian_kernel(7, 1.0), padding),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('padding', ['zeros', 'reflect', 'replicate'])
def test_kernel_of_one_is_no_lowpass(padding):
    """``lowpass_kernel=1`` (documented: no low-pass) leaves every matrix as it is."""
    m = torch.randn(2, 3, 5, dtype=torch.float64)
    assert torch.equal(lowpass(m, gaussian_kernel(1, 1.0), padding), m)


def test_streams_follow_the_formulas():
    """The shared stream is the frozen backbone with ``W + s B A`` (``W + s B W_mid A`` in a
    forked block); task t's stage-i output is that backbone with the last block of stage i's
    proj, fc1 and fc2 at ``W + s_t G * sin(omega_t M)``."""
    model = build(task_scale=2.0)
    draw(model)
    tuner = model.tuner
    with torch.no_grad():
        per = per_task(model(X), len(TASKS))
        omegas = hand_omega(tuner)
        for t in range(len(TASKS)):
            for i in range(4):
                edited = shared_copy(model)
                index = model.layer_infos[2 * i + 1].index
                frozen = modules(model.stages[i].blocks[-1])
                for name in ('proj', 'fc1', 'fc2'):
                    key = f'{name}{index}'
                    module = modules(edited.stages[i].blocks[-1])[name]
                    module.weight.copy_(hand_task_weight(tuner, key, frozen[name].weight,
                                                         omegas[t]))
                torch.testing.assert_close(per[t][i], edited(X)[i], **helpers.EXACT)
        assert not torch.allclose(per[0][3], per[1][3])


def test_one_task_model_gives_the_same_task_rows():
    """Task streams read only their own input and their own token: a one-task model with
    task 1's token computes task 1's rows."""
    model = build()
    draw(model)
    one = build(tasks=TASKS[1:])
    state = {k: (v[1:] if k == 'tuner.task_tokens' else v)
             for k, v in model.state_dict().items()}
    one.load_state_dict(state)
    with torch.no_grad():
        both, alone = per_task(model(X), len(TASKS)), one(X)
    for a, b in zip(both[1], alone):
        torch.testing.assert_close(a, b, **helpers.EXACT)


def test_stacked_equals_loop():
    model = build()
    draw(model)
    helpers.assert_stacked_equals_loop(model, X)


def test_merged_equals_unmerged_and_refuses_training():
    model = build()
    draw(model)
    with torch.no_grad():
        unmerged = model(X)
        model.tuner.merge()
        merged = model(X)
    assert len(model.tuner._merged) == 4 * 8  # every projection of every block
    for a, b in zip(unmerged, merged):
        torch.testing.assert_close(a, b, **helpers.EXACT)
    # a parameter changed while merged: the merged weights are rebuilt
    with torch.no_grad():
        model.tuner.task_tokens.add_(1.0)
        rebuilt = model(X)
        model.tuner.unmerge()
        fresh = model(X)
    assert (rebuilt[3] - merged[3]).abs().max() > 1e-6
    for a, b in zip(rebuilt, fresh):
        torch.testing.assert_close(a, b, **helpers.EXACT)
    model.tuner.merge()
    model.train()
    with pytest.raises(RuntimeError, match='FreeSinewich: cannot train while merged'):
        model(X)
    model.tuner.unmerge()
    model(X)


def test_every_trainable_parameter_gets_a_gradient_with_cp_on_and_off():
    def make(with_cp):
        model = build(seed=5, with_cp=with_cp)
        draw(model)
        return model

    g = helpers.assert_checkpointing_keeps_every_gradient(make, X)
    # A, B of 32 projections, W_mid of 16, the tokens, the clock's weight and bias; no
    # backbone part by default
    assert len(g) == 2 * 32 + 16 + 3 and all(n.startswith('tuner.') for n in g)


def test_the_first_step_moves_b_alone_then_the_clock_follows():
    """B = 0: sin(0) = 0 and cos(0) = 1, so the first gradient reaches B (not A, W_mid, the
    tokens or the clock)."""
    model = build()
    model.train()
    sum((o**2).mean() for o in model(X)).backward()
    tuner = model.tuner
    assert all(p.grad.abs().sum() > 0 for p in tuner.shared_B.values())
    for group in (tuner.shared_A.values(), tuner.mid.values(), [tuner.task_tokens],
                  tuner.clock.parameters()):
        assert all(not p.grad.any() for p in group)


def test_backbone_groups_by_key():
    model = build(train_norms=True, train_patch_merging=True)
    trained = {n for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith('tuner.')}
    assert any('norm' in n for n in trained) and any('downsample' in n for n in trained)
    assert not any('relative_position' in n or n.startswith('patch_embed.proj')
                   for n in trained)


def test_no_task_targets_means_no_fork():
    model = build(task_targets=())
    tuner = model.tuner
    assert not tuner.fork_layers and not tuner.mid and not hasattr(tuner, 'task_tokens')
    assert not model.per_task_features and len(tuner.shared_A) == 4 * 8


# --------------------------------------------------------------------------- counts
TASKS4 = ('semseg', 'human_parts', 'sal', 'normals')


def swin_t_groups(**tuner):
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS4, **SWIN_T,
                              tuner=dict(type='FreeSinewich', **tuner)))
    groups = {name: sum(p.numel() for p in getattr(model.tuner, name).parameters())
              if name == 'clock' else
              sum(p.numel() for p in getattr(model.tuner, name).values())
              for name in ('shared_A', 'shared_B', 'mid', 'clock')}
    groups['task_tokens'] = model.tuner.task_tokens.numel()
    return groups, model


@pytest.mark.parametrize('rank,published', [(64, '6.53'), (32, '4.04')])
def test_counts_equal_the_hand_formula_beside_the_paper(rank, published):
    groups, model = swin_t_groups(rank=rank)
    widths = 2 * 96 + 2 * 192 + 6 * 384 + 2 * 768  # 4,416: sum of block widths
    # A, B: r (d_in + d_out) on qkv (4d), proj (2d), fc1 (5d), fc2 (5d) of every block
    assert groups['shared_A'] + groups['shared_B'] == rank * 16 * widths == 70_656 * rank
    assert groups['mid'] == 16 * rank**2  # 4 projections x 4 forked blocks
    assert groups['task_tokens'] == 4 * 96 and groups['clock'] == 97
    encoder = sum(groups.values())
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if not n.startswith('tuner.'))
    from mmpoly.utils.param_count import count_parameters
    counts = count_parameters(model)
    reference = encoder + 1_946_624  # the reference's HRNet heads
    assert counts['encoder'] == encoder
    assert counts['paper'] == dict(source=f'Free Sinewich r{rank}, Swin-T, 4 tasks',
                                   build='encoder + the reference HRNet heads',
                                   reference=reference, published=published)
    # r64 prints the paper's figure; r32 does not (0.18M short of a group we cannot name)
    assert reference == {64: 6_534_625, 32: 4_224_481}[rank]
    assert (f'{reference / 1e6:.2f}' == published) == (rank == 64)


# --------------------------------------------------------------------------- errors
def test_refused_by_pvt():
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    with pytest.raises(ValueError, match='FreeSinewich needs task_forks, which PolyhistorPVT'):
        MODELS.build(dict(type='PolyhistorPVT', tasks=TASKS, tuner=dict(type='FreeSinewich'),
                          **PVT_TINY))


def test_bad_keys_are_named():
    with pytest.raises(ValueError, match='FreeSinewich.task_targets.*qkv would part'):
        build(task_targets=('qkv', 'proj'))
    with pytest.raises(ValueError, match='FreeSinewich.task_targets .* must be within'):
        build(targets=('qkv', 'proj'), task_targets=('fc1', ))
    with pytest.raises(ValueError, match='FreeSinewich.omega_range'):
        build(omega_range=(3.0, 1.0))
    with pytest.raises(ValueError, match='FreeSinewich.lowpass_kernel must be odd'):
        build(lowpass_kernel=6)
    with pytest.raises(ValueError, match='FreeSinewich.clock'):
        build(clock='layer')
    with pytest.raises(ValueError, match='FreeSinewich.rank must be an int >= 1'):
        build(rank=0)


# --------------------------------------------------------------------------- the demo
def test_demo_trains_one_iteration_through_the_runner(tmp_path):
    """The demo config as tools/train.py builds it, one iteration of the real mmengine
    Runner: B moves (and only the tuner), the frozen projections do not, the checkpoint
    holds the tuner's keys."""
    model, before, after, state = helpers.train_demo_one_iteration(DEMO, tmp_path)
    tuner = model.backbone.tuner
    assert type(tuner).__name__ == 'FreeSinewich' and tuner.fork_layers
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert {n for n in moved if '.tuner.shared_B.' in n} == {
        n for n in before if '.tuner.shared_B.' in n}
    assert not any(n.endswith(('qkv.weight', 'proj.weight', 'fc1.weight')) for n in moved)
    assert moved <= {n for n, p in after.items() if p.requires_grad}
    tuner_keys = {k.split('.tuner.')[1].split('.')[0] for k in state
                  if '.tuner.' in k}
    assert tuner_keys == {'shared_A', 'shared_B', 'mid', 'task_tokens', 'clock'}
