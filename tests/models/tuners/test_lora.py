import math

import pytest
import torch

from mmpoly.tasks import ALL_TASKS
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
    assert (tuner.rank, tuner.scale, tuner.targets) == (4, 4.0, ('qkv', ))
    for info in model.layer_infos:
        A, Bm = tuner.lora_A[f'qkv{info.index}'], tuner.lora_B[f'qkv{info.index}']
        assert A.shape == (2, 4, info.dim) and Bm.shape == (2, 3 * info.dim, 4)
        bound = 1 / math.sqrt(info.dim)  # kaiming_uniform(a=sqrt(5)) of an (r, d) matrix
        assert A.abs().max() <= bound and A.abs().max() > 0.7 * bound
        assert not Bm.any()
    assert_tasks_equal_frozen(model)


@pytest.mark.parametrize('targets', [('qkv', ), ('qkv', 'proj'), ('proj', )])
def test_task_output_equals_frozen_backbone_with_updated_weights(targets):
    """Oracle: task t == the frozen Swin whose projections are W + s B_t A_t."""
    model = build(targets=targets, scale=2.5)
    randomize_B(model)
    x = torch.randn(B, 3, 60, 76)

    def update_weights(ref_model, t):
        for info in model.layer_infos:
            for name in targets:
                A = model.tuner.lora_A[f'{name}{info.index}'][t]
                Bm = model.tuner.lora_B[f'{name}{info.index}'][t]
                weight = getattr(ref_model.get_submodule(info.name).attn.w_msa, name).weight
                weight.add_(2.5 * Bm @ A)

    assert_tasks_equal_edited_frozen(model, x, update_weights, tol=1e-5)


def test_one_step_trains_only_B_first():
    """B = 0 at init, so the first step's gradient reaches B only (dL/dA = B^T (...) = 0)."""
    model = build()
    changed, before = sgd_step_on_every_parameter(model)
    assert changed == {f'tuner.lora_B.qkv{i}' for i in range(8)}
    for n in changed:
        assert all(not torch.equal(model.get_parameter(n)[t], before[n][t]) for t in range(2))


def test_tasks_are_independent():
    model = build(targets=('qkv', 'proj'))
    randomize_B(model)
    assert_task_1_moves_alone(model, model.tuner.parameters())


@pytest.mark.parametrize('merge', [False, True])
def test_stacked_equals_loop(merge):
    model = build(tasks=ALL_TASKS, targets=('qkv', 'proj'))
    randomize_B(model)
    if merge:
        model.tuner.merge()
    assert_stacked_equals_loop(model, torch.randn(B, 3, 64, 64))


def test_merge_unmerge_are_inverses():
    model = build(targets=('qkv', 'proj'))
    randomize_B(model)
    frozen_state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(B, 3, 64, 64)
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
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)  # float re-association
        assert torch.equal(c, a)  # exact: the unmerged path never changed


def test_training_while_merged_is_refused():
    model = build()
    model.tuner.merge()
    model.train()
    with pytest.raises(RuntimeError, match='unmerge'):
        model(torch.randn(1, 3, 64, 64))
    model.tuner.unmerge()
    model(torch.randn(1, 3, 64, 64))


def test_bad_targets():
    with pytest.raises(ValueError, match='targets'):
        build(targets=('fc1', ))


@pytest.mark.parametrize('targets', [('qkv', ), ('qkv', 'proj')])
def test_swin_t_trainable_count(targets):
    model = MODELS.build(
        dict(type='PolyhistorSwin', tuner=dict(type='LoRA', targets=targets), **SWIN_T))
    dims = SWIN_T_WIDTHS
    r = 4
    out = dict(qkv=3, proj=1)  # output width / d
    # per target: A is r x d, B is (out * d) x r
    per_task = sum(r * d + out[name] * d * r for d in dims for name in targets)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * per_task
    if targets == ('qkv', ):
        assert trainable == 282624  # paper Table 1: 0.32M (see README)


def test_lora_on_pvt_updates_its_separate_q_and_kv_projections():
    from mmseg.registry import MODELS
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    torch.manual_seed(0)
    model = MODELS.build(dict(type='PolyhistorPVT', **PVT_TINY, tasks=TASKS,
                              tuner=dict(type='LoRA', rank=2)))
    model.init_weights()
    lora = model.tuner
    first = model.layer_infos[0]
    d = first.dim
    assert lora.lora_B[f'q{first.index}'].shape == (len(TASKS), d, 2)
    assert lora.lora_B[f'kv{first.index}'].shape == (len(TASKS), 2 * d, 2)
    assert not any(k.startswith('proj') for k in lora.lora_A)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        before = model(x)
        for Bm in lora.lora_B.values():
            Bm.normal_(0, 0.3)
        after = model(x)
    assert not torch.allclose(before[3], after[3])  # the updates reach the output
