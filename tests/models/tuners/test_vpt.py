import math

import pytest
import torch

from mmpoly.models.tuners import TaskContext
from mmpoly.models.tuners.vpt import VPT
from tests.pascal import ALL_TASKS
from mmseg.registry import MODELS
from . import helpers
from .helpers import (SWIN_T, SWIN_T_WIDTHS, TASKS, B, assert_stacked_equals_loop,
                      assert_task_1_moves_alone, frozen_copy, rows, sgd_step_on_every_parameter)

P = 3


def build(deep, tasks=TASKS, num_tokens=P, **kwargs):
    return helpers.build(dict(type='VPT', num_tokens=num_tokens, deep=deep), tasks, **kwargs)


@pytest.mark.parametrize('deep', [False, True])
def test_prompts_change_every_output(deep):
    model = build(deep)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        outs, ref = model(x), frozen_copy(model)(x)
    for t in range(len(TASKS)):
        for a, b in zip(rows(outs, t), ref):
            assert a.shape == b.shape
            assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize('deep', [False, True])
def test_prompt_init_range(deep):
    model = build(deep, num_tokens=50)
    for prompt, info in zip(model.tuner.prompts, model.layer_infos):
        bound = math.sqrt(6 / (3 * 4 * 4 + info.dim))  # VPT: xavier over a 4x4 patch
        assert prompt.shape == (len(TASKS), 50, info.dim)
        assert prompt.abs().max() <= bound and prompt.abs().max() > 0.9 * bound
    assert len(model.tuner.prompts) == (8 if deep else 1)


def swin_bias(table, ws):
    """Relative position bias of a ws x ws window, from the token coordinates (Swin eq.)."""
    coords = [(i // ws, i % ws) for i in range(ws * ws)]
    index = torch.tensor([[(yi - yj + ws - 1) * (2 * ws - 1) + (xi - xj + ws - 1)
                           for yj, xj in coords] for yi, xi in coords])
    return table[index].permute(2, 0, 1)  # heads, N, N


@pytest.mark.parametrize('deep,layer_index', [(False, 0), (True, 0), (True, 2)])
def test_one_window_equals_hand_written_attention_with_prompts(deep, layer_index):
    """Oracle for the top-left window (no shift): [prompts; window] attention by hand."""
    model = build(deep).double()  # float64: the oracle sums in another order
    info = model.layer_infos[layer_index]
    block = model.get_submodule(info.name)
    C, heads, ws, H = info.dim, info.num_heads, info.window_size, 8
    torch.manual_seed(2)
    x = torch.randn(len(TASKS), H * H, C, dtype=torch.float64)  # one image per task: 4 windows
    with torch.no_grad():
        out, _ = model._layer(TaskContext.all_tasks(len(TASKS)), info, block, x, (H, H), None)
        wmsa = block.attn.w_msa
        for t in range(len(TASKS)):
            win = x[t].view(H, H, C)[:ws, :ws].reshape(ws * ws, C)
            seq = block.norm1(torch.cat([model.tuner.prompts[layer_index if deep else 0][t], win]))
            L = seq.shape[0]
            qkv = seq @ wmsa.qkv.weight.T + wmsa.qkv.bias
            q, k, v = qkv.view(L, 3, heads, C // heads).permute(1, 2, 0, 3)  # heads, L, dh
            logits = q @ k.transpose(1, 2) / math.sqrt(C // heads)
            logits[:, P:, P:] += swin_bias(wmsa.relative_position_bias_table, ws)
            attn = (logits.softmax(-1) @ v).transpose(0, 1).reshape(L, C)
            y = win + (attn @ wmsa.proj.weight.T + wmsa.proj.bias)[P:]  # prompts dropped
            y = y + block.ffn.layers(block.norm2(y))
            got = out[t].view(H, H, C)[:ws, :ws].reshape(ws * ws, C)
            torch.testing.assert_close(got, y, **helpers.EXACT)


def test_shallow_prompts_stop_at_the_first_patch_merging():
    """Oracle: the upstream frozen stages 1-3, run on VPT's stage-0 output, give VPT's
    stage 1-3 outputs (no prompt reaches them)."""
    model = build(deep=False).double()
    x = torch.randn(B, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
        h = outs[0].flatten(2).transpose(1, 2)
        h, hw = model.stages[0].downsample(h, outs[0].shape[2:])
        for i in (1, 2, 3):
            h, hw, out, out_hw = model.stages[i](h, hw)  # upstream SwinBlockSequence
            ref = out.view(-1, *out_hw, out.shape[-1]).permute(0, 3, 1, 2)
            torch.testing.assert_close(outs[i], ref, **helpers.EXACT)


@pytest.mark.parametrize('deep', [False, True])
def test_which_layers_see_which_prompts(deep):
    model = build(deep)
    calls, hook = [], model.tuner.layer_prompts

    def spy(ctx, layer, carried, batch_size):
        out = hook(ctx, layer, carried, batch_size)
        calls.append((layer.index, carried, out))
        return out

    model.tuner.layer_prompts = spy
    with torch.no_grad():
        model(torch.randn(B, 3, 64, 64))
    assert [c[0] for c in calls] == list(range(8))
    dims = [info.dim for info in model.layer_infos]
    for index, carried, out in calls:
        if deep:  # fresh prompts everywhere, nothing carried
            assert carried is None
            expected = model.tuner.prompts[index].repeat_interleave(B, dim=0)
            assert torch.equal(out, expected)  # task-major rows
        elif index == 0:
            assert carried is None and out.shape == (len(TASKS) * B, P, dims[0])
        elif index == 1:  # layer 0's prompt outputs go on to layer 1
            assert carried.shape == (len(TASKS) * B, P, dims[0]) and out is carried
        else:  # dropped at the patch merging
            assert carried is None and out is None


def test_deep_prompts_act_from_their_layer_on():
    model = build(deep=True)
    x = torch.randn(B, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.tuner.prompts[2].add_(torch.randn_like(model.tuner.prompts[2]))  # stage 1, layer 0
        new = model(x)
    assert torch.equal(new[0], ref[0])
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(new[1:], ref[1:]))


@pytest.mark.parametrize('deep', [False, True])
def test_one_step_trains_only_the_prompts(deep):
    model = build(deep)
    changed, before = sgd_step_on_every_parameter(model)
    assert changed == {f'tuner.prompts.{i}' for i in range(8 if deep else 1)}
    for n, p in model.named_parameters():
        if n.startswith('tuner.'):
            assert all(not torch.equal(p[t], before[n][t]) for t in range(len(TASKS)))


@pytest.mark.parametrize('deep', [False, True])
def test_tasks_are_independent(deep):
    model = build(deep)
    assert_task_1_moves_alone(model, model.tuner.prompts)


@pytest.mark.parametrize('deep', [False, True])
def test_stacked_equals_loop(deep):
    model = build(deep, tasks=ALL_TASKS)
    assert_stacked_equals_loop(model, torch.randn(B, 3, 60, 76))


@pytest.mark.parametrize('cfg,deep', [(dict(type='VPT'), False), (dict(type='VPTShallow'), False),
                                      (dict(type='VPT', deep=True), True),
                                      (dict(type='VPTDeep'), True)])
def test_swin_t_trainable_count(cfg, deep):
    model = MODELS.build(dict(type='PolyhistorSwin', tuner=cfg, tasks=ALL_TASKS, **SWIN_T))
    assert isinstance(model.tuner, VPT) and model.tuner.deep == deep
    assert model.tuner.carries_prompts == (not deep)
    dims = SWIN_T_WIDTHS
    per_task = 50 * (sum(dims) if deep else dims[0])  # 50 tokens of width d_l per layer
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * per_task
    assert trainable == (883200 if deep else 19200)  # paper Table 1: 0.88M / 0.02M
