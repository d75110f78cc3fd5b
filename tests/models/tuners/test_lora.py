import math

import pytest
import torch
import torch.nn.functional as F

from mmpoly.models.tuners import TaskContext
from tests.pascal import ALL_TASKS
from mmseg.registry import MODELS
from . import helpers
from .helpers import (SWIN_T, SWIN_T_WIDTHS, TASKS, B, assert_stacked_equals_loop,
                      assert_task_1_moves_alone, assert_tasks_equal_edited_frozen,
                      assert_tasks_equal_frozen, randomize_tuner, sgd_step_on_every_parameter)


def build(tasks=TASKS, **tuner):
    return helpers.build(dict(type='LoRA', **tuner), tasks)


def randomize_B(model, std=0.3):
    randomize_tuner(model, std, model.tuner.lora_B.values())


def test_init():
    model = build()
    tuner = model.tuner
    assert (tuner.rank, tuner.scale, tuner.targets, tuner.input_norm, tuner.qkv_branch) == \
        (4, 4.0, ('qkv', ), True, 'shared')
    for info in model.layer_infos:
        A, Bm = tuner.lora_A[f'qkv{info.index}'], tuner.lora_B[f'qkv{info.index}']
        assert A.shape == (2, 4, info.dim) and Bm.shape == (2, 3 * info.dim, 4)
        bound = 1 / math.sqrt(info.dim)  # kaiming_uniform(a=sqrt(5)) of an (r, d) matrix
        assert A.abs().max() <= bound and A.abs().max() > 0.7 * bound
        assert not Bm.any()
        # the task-specific LayerNorm of the branch input starts as the identity affine
        g, b = tuner.norm_weight[f'qkv{info.index}'], tuner.norm_bias[f'qkv{info.index}']
        assert g.shape == b.shape == (2, info.dim)
        assert torch.equal(g, torch.ones_like(g)) and not b.any()
    assert_tasks_equal_frozen(model)


def test_init_without_input_norm():
    model = build(input_norm=False)
    assert not model.tuner.input_norm
    assert not len(model.tuner.norm_weight) and not len(model.tuner.norm_bias)
    assert {n.split('.')[0] for n, _ in model.tuner.named_parameters()} == {'lora_A', 'lora_B'}
    assert_tasks_equal_frozen(model)


@pytest.mark.parametrize('targets', [('qkv', ), ('qkv', 'proj'), ('proj', )])
def test_task_output_equals_frozen_backbone_with_updated_weights(targets):
    """Oracle (text's form, no input norm): task t == the frozen Swin whose projections are
    W + s B_t A_t."""
    model = build(targets=targets, scale=2.5, input_norm=False)
    randomize_B(model)
    x = torch.randn(B, 3, 60, 76)

    def update_weights(ref_model, t):
        for info in model.layer_infos:
            for name in targets:
                A = model.tuner.lora_A[f'{name}{info.index}'][t]
                Bm = model.tuner.lora_B[f'{name}{info.index}'][t]
                weight = getattr(ref_model.get_submodule(info.name).attn.w_msa, name).weight
                weight.add_(2.5 * Bm @ A)

    assert_tasks_equal_edited_frozen(model, x, update_weights)


def lora_oracle(x, weight, bias, A, Bm, g, b, scale):
    """y = x W^T + bias + s LN(x; g, b) A^T B^T, written plainly for one task."""
    h = F.layer_norm(x, x.shape[-1:], g, b)
    return F.linear(x, weight, bias) + scale * (h @ A.T) @ Bm.T


@pytest.mark.parametrize('targets', [('qkv', ), ('qkv', 'proj')])
def test_input_norm_branch_matches_plain_formula(targets):
    """The authors' form: each updated projection of task t returns
    x W^T + b + s LN_t(x) A_t^T B_t^T, LN_t with its own (perturbed) weight and bias."""
    model = build(targets=targets, scale=2.5).double()  # float64: exact oracle
    tuner = model.tuner
    randomize_tuner(model, 0.3)  # A, B and the norms all away from their init
    seen = {}

    def record(name, module):
        def hook(mod, args, out):
            seen.setdefault(name, []).append(args[0].detach().clone())
        return module.register_forward_hook(hook)

    info = model.layer_infos[3]
    wmsa = model.get_submodule(info.name).attn.w_msa
    handles = [record(n, getattr(wmsa, n)) for n in targets]
    x = torch.randn(B, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model(x)
        for name in targets:
            module = getattr(wmsa, name)
            inp = seen[name][0]  # the frozen module's input: task-stacked tokens
            key = f'{name}{info.index}'
            got = tuner.linear(TaskContext.all_tasks(len(TASKS)), info, name, module, inp)
            per_task = inp.view(len(TASKS), -1, inp.shape[-1])
            for t in range(len(TASKS)):
                expected = lora_oracle(per_task[t], module.weight, module.bias,
                                       tuner.lora_A[key][t], tuner.lora_B[key][t],
                                       tuner.norm_weight[key][t], tuner.norm_bias[key][t],
                                       2.5)
                torch.testing.assert_close(got.view(len(TASKS), -1, got.shape[-1])[t],
                                           expected, **helpers.EXACT)
    for h in handles:
        h.remove()


def test_input_norm_is_scale_invariant_where_plain_lora_is_not():
    """The branch reads LN_t(x): scaling a projection's input by c > 0 scales the frozen part
    by c and leaves the update (nearly) unchanged; the plain form scales the update too."""
    for input_norm in (True, False):
        model = build(input_norm=input_norm)
        tuner = model.tuner
        randomize_tuner(model, 0.3)
        info = model.layer_infos[0]
        module = model.get_submodule(info.name).attn.w_msa.qkv
        x = torch.randn(len(TASKS) * 8, info.dim)
        with torch.no_grad():
            ctx = TaskContext.all_tasks(len(TASKS))
            delta = tuner.linear(ctx, info, 'qkv', module, x) - module(x)
            delta3 = tuner.linear(ctx, info, 'qkv', module, 3 * x) - module(3 * x)
        if input_norm:
            torch.testing.assert_close(delta3, delta, atol=1e-3, rtol=1e-3)  # LN's eps only
        else:
            torch.testing.assert_close(delta3, 3 * delta, atol=1e-4, rtol=1e-4)


def test_one_step_trains_only_B_first():
    """B = 0 at init, so the first step's gradient reaches B only (dL/dA = B^T (...) = 0,
    and the input norm's gradient goes through A^T B^T = 0 too)."""
    model = build()
    changed, before = sgd_step_on_every_parameter(model)
    assert changed == {f'tuner.lora_B.qkv{i}' for i in range(8)}
    for n in changed:
        assert all(not torch.equal(model.get_parameter(n)[t], before[n][t]) for t in range(2))


def test_tasks_are_independent():
    model = build(targets=('qkv', 'proj'))
    randomize_B(model)
    assert_task_1_moves_alone(model, model.tuner.parameters())


@pytest.mark.parametrize('merge,input_norm', [(False, True), (False, False), (True, False)])
def test_stacked_equals_loop(merge, input_norm):
    model = build(tasks=ALL_TASKS, targets=('qkv', 'proj'), input_norm=input_norm)
    randomize_tuner(model, 0.3)
    if merge:
        model.tuner.merge()
    assert_stacked_equals_loop(model, torch.randn(B, 3, 64, 64))


def test_merge_is_refused_with_the_input_norm():
    """LN_t(x) is not linear in x: no W_t reproduces the branch, so merge() says so and the
    model keeps computing the unmerged (exact) form."""
    model = build()
    randomize_tuner(model, 0.3)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        with pytest.raises(RuntimeError, match='input_norm=False'):
            model.tuner.merge()
        assert not model.tuner.merged
        after = model(x)
    for a, b in zip(before, after):
        assert torch.equal(a, b)


def test_merge_unmerge_are_inverses():
    model = build(targets=('qkv', 'proj'), input_norm=False).double()  # merged = unmerged
    randomize_B(model)
    frozen_state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(B, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        unmerged = model(x)
        model.tuner.merge()
        assert model.tuner.merged
        merged = model(x)
        # the frozen weights were not touched, and the state dict has the same keys
        state = model.state_dict()
        assert state.keys() == frozen_state.keys()
        assert all(torch.equal(state[k], frozen_state[k]) for k in state)
        # task-specific full weights W + s B_t A_t, one per task
        w = model.tuner._merged['qkv0']
        qkv = model.stages[0].blocks[0].attn.w_msa.qkv.weight
        assert w.shape == (2, 16, 48)
        for t in range(2):
            expected = qkv + 4.0 * model.tuner.lora_B['qkv0'][t] @ model.tuner.lora_A['qkv0'][t]
            torch.testing.assert_close(w[t], expected.T)
        model.tuner.unmerge()
        again = model(x)
    for a, b, c in zip(unmerged, merged, again):
        torch.testing.assert_close(b, a, **helpers.EXACT)  # re-associated sums, float64
        assert torch.equal(c, a)  # exact: the unmerged path never changed


def test_training_while_merged_is_refused():
    model = build(input_norm=False)
    model.tuner.merge()
    model.train()
    with pytest.raises(RuntimeError, match='unmerge'):
        model(torch.randn(1, 3, 64, 64))
    model.tuner.unmerge()
    model(torch.randn(1, 3, 64, 64))


def test_bad_targets():
    with pytest.raises(ValueError, match='targets'):
        build(targets=('fc1', ))


@pytest.mark.parametrize('input_norm', [True, False])
@pytest.mark.parametrize('targets', [('qkv', ), ('qkv', 'proj')])
def test_swin_t_trainable_count(targets, input_norm):
    model = MODELS.build(
        dict(type='PolyhistorSwin', tasks=ALL_TASKS,
             tuner=dict(type='LoRA', targets=targets, input_norm=input_norm), **SWIN_T))
    dims = SWIN_T_WIDTHS
    r = 4
    out = dict(qkv=3, proj=1)  # output width / d
    # per target: A is r x d, B is (out * d) x r, the input LayerNorm 2d
    norm = 2 if input_norm else 0
    per_task = sum(r * d + out[name] * d * r + norm * d for d in dims for name in targets)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * per_task
    if targets == ('qkv', ):
        # Table 1 (method.md section 8): 4 x 18 x sum(d) = 317,952 = 0.32M; text's form 0.28M
        expected = 4 * (18 if input_norm else 16) * sum(dims)
        assert trainable == expected == (317_952 if input_norm else 282_624)
        assert round(trainable / 1e6, 2) == (0.32 if input_norm else 0.28)


# ------------------------------------------------------------------------------ PVT
#: PVT-S (widths 64, 128, 320, 512; depths 3, 4, 6, 3; sr ratios 8, 4, 2, 1): its 16 layers
PVT_S_WIDTHS = [64] * 3 + [128] * 4 + [320] * 6 + [512] * 3


def build_pvt(seed=0, tasks=TASKS, **tuner):
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='PolyhistorPVT', **PVT_TINY, tasks=tasks,
                              tuner=dict(type='LoRA', **tuner)))
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('qkv_branch', ['shared', 'separate'])
def test_lora_on_pvt_updates_its_q_and_kv_projections(qkv_branch):
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    model = build_pvt(rank=2, qkv_branch=qkv_branch)
    lora = model.tuner
    assert lora.qkv_branch == qkv_branch
    for info in model.layer_infos:
        d, i = info.dim, info.index
        if qkv_branch == 'shared':
            # one branch for q and kv: A (r x d), B (3d x r), one input norm, as Swin's qkv
            assert set(k for k in lora.lora_A if k.endswith(str(i))) == {f'qkv{i}'}
            assert lora.lora_A[f'qkv{i}'].shape == (len(TASKS), 2, d)
            assert lora.lora_B[f'qkv{i}'].shape == (len(TASKS), 3 * d, 2)
            assert lora.norm_weight[f'qkv{i}'].shape == (len(TASKS), d)
        else:
            assert lora.lora_B[f'q{i}'].shape == (len(TASKS), d, 2)
            assert lora.lora_B[f'kv{i}'].shape == (len(TASKS), 2 * d, 2)
            assert lora.norm_weight[f'kv{i}'].shape == (len(TASKS), d)
    assert set(lora.norm_weight) == set(lora.lora_A)
    assert not any(k.startswith('proj') for k in lora.lora_A)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        frozen = MODELS.build(dict(type='PolyhistorPVT', **PVT_TINY, tasks=TASKS))
        frozen.load_state_dict(model.state_dict(), strict=False)
        ref = frozen.eval()(x)
        before = model(x)
        for a, b in zip(before, ref):  # B = 0: starts as the frozen PVT, every task
            torch.testing.assert_close(a, b.repeat(len(TASKS), 1, 1, 1))
        for Bm in lora.lora_B.values():
            Bm.normal_(0, 0.3)
        after = model(x)
    assert not torch.allclose(before[3], after[3])  # the updates reach the output


def test_pvt_shared_branch_matches_plain_formula():
    """The default on PVT, in float64: task t's q is x W_q^T + b_q + s LN_t(x) A_t^T B_q^T,
    its kv is x' W_kv^T + b_kv + s LN_t(x') A_t^T B_kv^T with x' PVT's reduced tokens and
    [B_q; B_kv] = B_t (one LN_t and A_t for both). Where PVT does not reduce (sr_ratio 1)
    [q, kv] is LoRA on the fused projection [W_q; W_kv], exactly Swin's form."""
    model = build_pvt(scale=2.5).double()
    tuner = model.tuner
    randomize_tuner(model, 0.3)  # A, B and the norms all away from their init
    seen = {}
    handles = []
    for info in model.layer_infos:
        attn = model.get_submodule(info.name).attn
        for name in ('q', 'kv'):
            def hook(mod, args, out, key=(info.index, name)):
                seen[key] = args[0].detach().clone()
            handles.append(getattr(attn, name).register_forward_hook(hook))
    x = torch.randn(B, 3, 64, 64, dtype=torch.float64)
    ctx = TaskContext.all_tasks(len(TASKS))
    sr_ratios = set()
    with torch.no_grad():
        model(x)
        for info in model.layer_infos:
            attn = model.get_submodule(info.name).attn
            sr_ratios.add(attn.sr_ratio)
            key, d = f'qkv{info.index}', info.dim
            A, Bm = tuner.lora_A[key], tuner.lora_B[key]
            g, b = tuner.norm_weight[key], tuner.norm_bias[key]
            got = {}
            for name, rows_ in (('q', slice(0, d)), ('kv', slice(d, 3 * d))):
                module = getattr(attn, name)
                inp = seen[(info.index, name)]
                got[name] = tuner.linear(ctx, info, name, module, inp).view(
                    len(TASKS), -1, module.out_features)
                per_task = inp.view(len(TASKS), -1, d)
                for t in range(len(TASKS)):
                    expected = lora_oracle(per_task[t], module.weight, module.bias, A[t],
                                           Bm[t][rows_], g[t], b[t], 2.5)
                    torch.testing.assert_close(got[name][t], expected, **helpers.EXACT)
            if attn.sr_ratio == 1:  # q and kv read the same tokens: one fused projection
                assert torch.equal(seen[(info.index, 'q')], seen[(info.index, 'kv')])
                weight = torch.cat([attn.q.weight, attn.kv.weight])
                bias = torch.cat([attn.q.bias, attn.kv.bias])
                per_task = seen[(info.index, 'q')].view(len(TASKS), -1, d)
                for t in range(len(TASKS)):
                    fused = lora_oracle(per_task[t], weight, bias, A[t], Bm[t], g[t], b[t], 2.5)
                    torch.testing.assert_close(
                        torch.cat([got['q'][t], got['kv'][t]], dim=-1), fused, **helpers.EXACT)
    assert sr_ratios == {8, 4, 2, 1}  # reduced (x' != x) and unreduced layers both checked
    for h in handles:
        h.remove()


@pytest.mark.parametrize('merge,input_norm', [(False, True), (True, False)])
def test_pvt_shared_branch_stacked_equals_loop(merge, input_norm):
    model = build_pvt(tasks=ALL_TASKS, targets=('qkv', 'proj'), input_norm=input_norm).double()
    randomize_tuner(model, 0.3)
    x = torch.randn(B, 3, 64, 64, dtype=torch.float64)
    if merge:  # merged (W_q + s B_q A_t, W_kv + s B_kv A_t) == unmerged
        with torch.no_grad():
            unmerged = model(x)
        model.tuner.merge()
        assert set(k[:-1] for k in model.tuner.lora_A) == {'qkv', 'proj'}
    stacked = assert_stacked_equals_loop(model, x)
    if merge:
        assert {k.rstrip('0123456789') for k in model.tuner._merged} == {'q', 'kv', 'proj'}
        for a, b in zip(stacked, unmerged):
            torch.testing.assert_close(a, b, **helpers.EXACT)


def test_bad_qkv_branch():
    with pytest.raises(ValueError, match='qkv_branch'):
        build(qkv_branch='fused')


def test_swin_is_the_same_model_with_either_qkv_branch():
    """Swin has one fused qkv: 'separate' builds the same parameters (and checkpoints)."""
    shared = build(targets=('qkv', 'proj'))
    separate = build(targets=('qkv', 'proj'), qkv_branch='separate')
    a, b = shared.state_dict(), separate.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def pvt_s_lora_count(**options):
    from mmengine.config import Config
    from mmpoly.utils.param_count import build_model_without_weights, count_parameters
    cfg = Config.fromfile('configs/lora_pvt-s.py')
    cfg.merge_from_dict({f'model.backbone.tuner.{k}': v for k, v in options.items()})
    return count_parameters(build_model_without_weights(cfg))['encoder']


def test_lora_count_pvt_s():
    """configs/lora_pvt-s.py, 4 tasks, r = 4: per layer and task ONE query-key-value branch,
    A r d + B 3d r + input LayerNorm 2d = 18 d, as on Swin: 4 x 18 x 4,160 = 299,520, the
    paper's PVT-S LoRA row (0.30M). The per-d figure must be 18 (16,640 u rounds to 0.30 for
    no other whole u); the separate q and kv branches (r (d + d) + 2d + r (d + 2d) + 2d =
    24 d: 0.40M, a third above) stay an option."""
    r = 4
    assert sum(PVT_S_WIDTHS) == 4160
    per_d = r + 3 * r + 2
    expected = 4 * sum(per_d * d for d in PVT_S_WIDTHS)
    assert per_d == 18 and expected == 299_520 and round(expected / 1e6, 2) == 0.30
    assert pvt_s_lora_count() == expected
    separate = 4 * sum((r + r + 2) * d + (r + 2 * r + 2) * d for d in PVT_S_WIDTHS)
    assert separate == 399_360 and round(separate / 1e6, 2) == 0.40
    assert pvt_s_lora_count(qkv_branch='separate') == separate
    # without the input norm (the text's form, mergeable): 16 d
    assert pvt_s_lora_count(input_norm=False) == 4 * 16 * 4160 == 266_240


def test_old_pvt_checkpoint_does_not_load_into_the_new_default():
    """A PVT checkpoint of the separate q / kv branches misses the shared branch's keys (and
    has q*/kv* ones): refused by the checkpoint check and a strict load; it loads into
    ``qkv_branch='separate'``."""
    from mmpoly.checkpoint.adapter import CheckpointMismatchError, check_fits
    old = build_pvt(seed=0, qkv_branch='separate')
    checkpoint = {'state_dict': old.state_dict()}
    new = build_pvt(seed=1)
    with pytest.raises(CheckpointMismatchError, match='tuner.'):
        check_fits(new, checkpoint, 'old.pth')
    with pytest.raises(RuntimeError):
        new.load_state_dict(checkpoint['state_dict'])
    again = build_pvt(seed=1, qkv_branch='separate')
    check_fits(again, checkpoint, 'old.pth')
    again.load_state_dict(checkpoint['state_dict'])


def test_old_checkpoint_does_not_load_into_the_new_default():
    """A checkpoint of the pre-change LoRA (no input norm) misses the norms' keys."""
    from .test_adapter import check_old_checkpoint_refused
    check_old_checkpoint_refused('LoRA', dict(input_norm=False))
