import copy

import torch

import mmpoly  # noqa: F401
from mmseg.registry import MODELS

# the tiny Swin of tests/models/backbones/test_polyhistor_swin.py
TINY = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4,
            pretrain_img_size=64, drop_path_rate=0.0)
TASKS = ('semseg', 'human_parts')
B = 2
SWIN_T = dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)


def build(tuner, tasks=TASKS, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=tasks, tuner=tuner, **TINY, **kwargs))
    model.init_weights()
    with torch.no_grad():  # upstream init leaves biases and tables at zero: make them matter
        for name, p in model.named_parameters():
            if not name.startswith('tuner.'):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    return model


def frozen_copy(model):
    """The same backbone weights without a tuner."""
    frozen = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS, **TINY))
    frozen.load_state_dict(model.state_dict(), strict=False)
    frozen.eval()
    return frozen


def rows(outs, t):
    return [o[t * B:(t + 1) * B] for o in outs]


def randomize_tuner(model, std=0.5):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.tuner.parameters():
            p.normal_(0, std)


def test_init_equals_frozen():
    model = build(dict(type='RelativeBias'))
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        outs, ref = model(x), frozen_copy(model)(x)
    for t in range(len(TASKS)):
        for a, b in zip(rows(outs, t), ref):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_task_output_equals_frozen_backbone_with_shifted_tables():
    """Oracle: task t == the frozen Swin whose tables are B_l + dB_l^t."""
    model = build(dict(type='RelativeBias'))
    randomize_tuner(model)
    x = torch.randn(B, 3, 60, 76)  # padded windows too
    with torch.no_grad():
        outs = model(x)
        for t in range(len(TASKS)):
            ref_model = frozen_copy(model)
            for i, info in enumerate(model.layer_infos):
                table = ref_model.get_submodule(info.name).attn.w_msa.relative_position_bias_table
                table.add_(model.tuner.rel_pos.tables[i][t])
            for a, b in zip(rows(outs, t), ref_model(x)):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_one_step_trains_only_the_tables():
    model = build(dict(type='RelativeBias'))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # every parameter: frozen ones get no grad
    loss = sum((o**2).mean() for o in model(torch.randn(B, 3, 64, 64)))
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    tuner = {n for n, _ in model.named_parameters() if n.startswith('tuner.')}
    assert len(tuner) == len(model.layer_infos)
    assert changed == tuner


def test_tasks_are_independent():
    model = build(dict(type='RelativeBias'))
    randomize_tuner(model)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
        for table in model.tuner.rel_pos.tables:
            table[1].add_(torch.randn_like(table[1]))  # perturb task 1 only
        new = model(x)
    for a, b in zip(rows(outs, 0), rows(new, 0)):
        assert torch.equal(a, b)
    for a, b in zip(rows(outs, 1), rows(new, 1)):
        assert (a - b).abs().max() > 1e-3


def test_stacked_equals_loop():
    model = build(dict(type='RelativeBias'))
    randomize_tuner(model)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        stacked = model(x)
        model.task_batching = 'loop'
        loop = model(x)
    for a, b in zip(stacked, loop):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_state_dict_holds_only_deltas():
    model = build(dict(type='RelativeBias'))
    keys = [k for k in model.state_dict() if k.startswith('tuner.')]
    assert keys == [f'tuner.rel_pos.tables.{i}' for i in range(len(model.layer_infos))]
    copy.deepcopy(model)  # buffers and parameters copy


def test_swin_t_trainable_count():
    model = MODELS.build(dict(type='PolyhistorSwin', tuner=dict(type='RelativeBias'), **SWIN_T))
    heads = [3] * 2 + [6] * 2 + [12] * 6 + [24] * 2
    per_task = sum((2 * 7 - 1)**2 * h for h in heads)  # one (13*13, heads) table per layer
    assert per_task == 23322
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * per_task == 93288  # paper Table 1: 0.09M
