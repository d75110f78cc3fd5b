import copy

import pytest
import torch

import mmpoly  # noqa: F401
from mmpoly.tasks import ALL_TASKS
from mmseg.registry import MODELS

# the tiny Swin of tests/models/backbones/test_polyhistor_swin.py
TINY = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4,
            pretrain_img_size=64, drop_path_rate=0.0)
TASKS = ('semseg', 'human_parts')
B = 2
SWIN_T = dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)

# every module of the tiny Swin that has a bias, listed by hand
BIASED = ['patch_embed.projection', 'patch_embed.norm'] + [
    f'stages.{i}.blocks.{j}.{m}' for i in range(4) for j in range(2)
    for m in ('norm1', 'attn.w_msa.qkv', 'attn.w_msa.proj', 'norm2', 'ffn.layers.0.0',
              'ffn.layers.1')
] + [f'stages.{i}.downsample.norm' for i in range(3)]


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


def randomize_tuner(model, std=0.3):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.tuner.parameters():
            p.normal_(0, std)


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
    model = build(dict(type='BitFit'))
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        outs, ref = model(x), frozen_copy(model)(x)
    for t in range(len(TASKS)):
        for a, b in zip(rows(outs, t), ref):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_task_output_equals_frozen_backbone_with_shifted_biases():
    """Oracle: task t == the frozen Swin whose biases are b + db^t (tables included)."""
    model = build(dict(type='BitFit'))
    randomize_tuner(model)
    x = torch.randn(B, 3, 60, 76)
    with torch.no_grad():
        outs = model(x)
        for t in range(len(TASKS)):
            ref_model = frozen_copy(model)
            for name in BIASED:
                ref_model.get_submodule(name).bias.add_(delta(model, name)[t])
            for i, info in enumerate(model.layer_infos):
                table = ref_model.get_submodule(info.name).attn.w_msa.relative_position_bias_table
                table.add_(model.tuner.rel_pos.tables[i][t])
            for a, b in zip(rows(outs, t), ref_model(x)):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_one_step_trains_only_the_deltas():
    model = build(dict(type='BitFit'))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # every parameter: frozen ones get no grad
    loss = sum((o**2).mean() for o in model(torch.randn(B, 3, 64, 64)))
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    tuner = {n for n, _ in model.named_parameters() if n.startswith('tuner.')}
    assert len(tuner) == len(BIASED) + 8
    assert changed == tuner


def test_tasks_are_independent():
    model = build(dict(type='BitFit'))
    randomize_tuner(model)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
        for p in model.tuner.parameters():
            p[1].add_(torch.randn_like(p[1]))  # perturb task 1 only
        new = model(x)
    for a, b in zip(rows(outs, 0), rows(new, 0)):
        assert torch.equal(a, b)
    for a, b in zip(rows(outs, 1), rows(new, 1)):
        assert (a - b).abs().max() > 1e-3


def test_stacked_equals_loop_four_tasks():
    model = build(dict(type='BitFit'), tasks=ALL_TASKS)
    randomize_tuner(model)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        stacked = model(x)
        model.task_batching = 'loop'
        loop = model(x)
    assert stacked[0].shape[0] == 4 * B
    for a, b in zip(stacked, loop):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


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
             **SWIN_T))
    dims = [96] * 2 + [192] * 2 + [384] * 6 + [768] * 2
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
