import copy

import pytest
import torch

from tests.pascal import ALL_TASKS
from mmseg.registry import MODELS
from .helpers import (SWIN_T, SWIN_T_WIDTHS, TASKS, B, add_table_deltas,
                      assert_stacked_equals_loop, assert_task_1_moves_alone,
                      assert_tasks_equal_edited_frozen, assert_tasks_equal_frozen, build,
                      randomize_tuner, sgd_step_on_every_parameter)

# every module of the tiny Swin that has a bias, listed by hand
BIASED = ['patch_embed.projection', 'patch_embed.norm'] + [
    f'stages.{i}.blocks.{j}.{m}' for i in range(4) for j in range(2)
    for m in ('norm1', 'attn.w_msa.qkv', 'attn.w_msa.proj', 'norm2', 'ffn.layers.0.0',
              'ffn.layers.1')
] + [f'stages.{i}.downsample.norm' for i in range(3)]


def delta(model, name):
    return model.tuner.biases[name.replace('.', '_')]


def test_every_bias_has_a_delta():
    model = build(dict(type='BitFit'))
    assert sorted(model.tuner.biases.keys()) == sorted(n.replace('.', '_') for n in BIASED)
    for name in BIASED:
        assert delta(model, name).shape == (len(TASKS), ) + model.get_submodule(name).bias.shape
    assert len(model.tuner.rel_pos.tables) == 8
    assert build(dict(type='BitFit', rel_pos_tables=False)).tuner.rel_pos is None


def test_init_equals_frozen():
    assert_tasks_equal_frozen(build(dict(type='BitFit')))


def test_task_output_equals_frozen_backbone_with_shifted_biases():
    """Oracle: task t == the frozen Swin whose biases are b + db^t (tables included)."""
    model = build(dict(type='BitFit'))
    randomize_tuner(model, std=0.3)
    x = torch.randn(B, 3, 60, 76)

    def shift_biases_and_tables(ref_model, t):
        for name in BIASED:
            ref_model.get_submodule(name).bias.add_(delta(model, name)[t])
        add_table_deltas(ref_model, model, t)

    assert_tasks_equal_edited_frozen(model, x, shift_biases_and_tables)


def test_one_step_trains_only_the_deltas():
    model = build(dict(type='BitFit'))
    changed, _ = sgd_step_on_every_parameter(model)
    tuner = {n for n, _ in model.named_parameters() if n.startswith('tuner.')}
    assert len(tuner) == len(BIASED) + 8
    assert changed == tuner


def test_tasks_are_independent():
    model = build(dict(type='BitFit'))
    randomize_tuner(model, std=0.3)
    assert_task_1_moves_alone(model, model.tuner.parameters())


def test_stacked_equals_loop_four_tasks():
    model = build(dict(type='BitFit'), tasks=ALL_TASKS)
    randomize_tuner(model, std=0.3)
    stacked = assert_stacked_equals_loop(model, torch.randn(B, 3, 64, 64))
    assert stacked[0].shape[0] == 4 * B


def test_deepcopy_hooks_follow_the_copy():
    model = build(dict(type='BitFit'))
    x = torch.randn(1, 3, 64, 64)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        ref = model(x)
        delta(clone, 'patch_embed.norm').add_(torch.randn(2, 16))
        assert torch.equal(model(x)[0], ref[0])  # the original's hooks read its own deltas
        assert (clone(x)[0] - ref[0]).abs().max() > 1e-3
    assert set(clone.state_dict()) == set(model.state_dict())


@pytest.mark.parametrize('rel_pos_tables', [True, False])
def test_swin_t_trainable_count(rel_pos_tables):
    model = MODELS.build(
        dict(type='PolyhistorSwin', tuner=dict(type='BitFit', rel_pos_tables=rel_pos_tables),
             tasks=ALL_TASKS, **SWIN_T))
    dims = SWIN_T_WIDTHS
    heads = [3] * 2 + [6] * 2 + [12] * 6 + [24] * 2
    patch_embed = 96 + 96  # conv bias, norm bias
    # norm1 d, qkv 3d, proj d, norm2 d, fc1 4d, fc2 d
    layers = sum(11 * d for d in dims)
    merging = sum(4 * d for d in (96, 192, 384))  # norm of the 4d concatenated patches
    tables = sum(13 * 13 * h for h in heads) if rel_pos_tables else 0
    per_task = patch_embed + layers + merging + tables
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * per_task
    if rel_pos_tables:
        assert trainable == 299112  # paper Table 1: 0.30M
