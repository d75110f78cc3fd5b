import copy

import torch

from mmseg.registry import MODELS
from tests.pascal import ALL_TASKS
from .helpers import (SWIN_T, B, add_table_deltas, assert_stacked_equals_loop,
                      assert_task_1_moves_alone, assert_tasks_equal_edited_frozen,
                      assert_tasks_equal_frozen, build, randomize_tuner,
                      sgd_step_on_every_parameter)


def test_init_equals_frozen():
    assert_tasks_equal_frozen(build(dict(type='RelativeBias')))


def test_task_output_equals_frozen_backbone_with_shifted_tables():
    """Oracle: task t == the frozen Swin whose tables are B_l + dB_l^t."""
    model = build(dict(type='RelativeBias'))
    randomize_tuner(model, std=0.5)
    x = torch.randn(B, 3, 60, 76)  # padded windows too
    assert_tasks_equal_edited_frozen(
        model, x, lambda ref_model, t: add_table_deltas(ref_model, model, t))


def test_one_step_trains_only_the_tables():
    model = build(dict(type='RelativeBias'))
    changed, _ = sgd_step_on_every_parameter(model)
    tuner = {n for n, _ in model.named_parameters() if n.startswith('tuner.')}
    assert len(tuner) == len(model.layer_infos)
    assert changed == tuner


def test_tasks_are_independent():
    model = build(dict(type='RelativeBias'))
    randomize_tuner(model, std=0.5)
    assert_task_1_moves_alone(model, model.tuner.rel_pos.tables)


def test_stacked_equals_loop():
    model = build(dict(type='RelativeBias'))
    randomize_tuner(model, std=0.5)
    assert_stacked_equals_loop(model, torch.randn(B, 3, 64, 64))


def test_state_dict_holds_only_deltas():
    model = build(dict(type='RelativeBias'))
    keys = [k for k in model.state_dict() if k.startswith('tuner.')]
    assert keys == [f'tuner.rel_pos.tables.{i}' for i in range(len(model.layer_infos))]
    copy.deepcopy(model)  # buffers and parameters copy


def test_swin_t_trainable_count():
    model = MODELS.build(dict(type='PolyhistorSwin', tuner=dict(type='RelativeBias'),
                              tasks=ALL_TASKS, **SWIN_T))
    heads = [3] * 2 + [6] * 2 + [12] * 6 + [24] * 2
    per_task = sum((2 * 7 - 1)**2 * h for h in heads)  # one (13*13, heads) table per layer
    assert per_task == 23322
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * per_task == 93288  # paper Table 1: 0.09M
