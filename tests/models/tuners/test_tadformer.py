"""TADFormer on the tiny Swin, in float64, against formulas written here by hand.

Oracles: the TPC per head with GELU from erf; the static filter as a sum of shifted maps
(not a convolution); the dynamic filter from its definition (pooled map, 1x1 conv,
standardised taps, shifted maps); the forked proj and fc1 from the LoRA formula with those;
the gate, the prompt update and widening from their formulas; a whole forked block written
out from its parts (no shift: depth-1 stages). Then the model: with the
gate at -inf (sigma = 0 exactly) and B = 0 every task's stage output is the shared stream's
(read at the patch merging's input); task isolation through the filters, coupling through
the prompts; stacked = loop; gradients with checkpointing on = off; merged = unmerged; the
counts of the plan's table; the demo through the Runner.
"""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmseg.registry import MODELS
from mmpoly.models.tuners.base import Site, TaskContext
from . import helpers
from .helpers import B, SWIN_T, TASKS, per_task

X = torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO = osp.join(REPO, 'configs', 'demo', 'tadformer_swin-tiny_synthetic.py')
T = len(TASKS)
FORKED = TaskContext.shared_batch(T).fork()


def build(tasks=TASKS, seed=0, with_cp=False, **tuner):
    tuner.setdefault('dropout', 0.0)
    tuner.setdefault('rank', 4)
    return helpers.build(dict(type='TADFormer', **tuner), tasks, seed=seed,
                         with_cp=with_cp).double()


def draw(model, std=0.3):
    """Every tuner parameter away from its init (N(0, std^2), seed 1)."""
    helpers.randomize_tuner(model, std)


def gen(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def gelu(x):
    """x Phi(x), Phi from math.erf element by element (not torch's GELU)."""
    phi = torch.tensor([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.flatten().tolist()],
                       dtype=x.dtype).view(x.shape)
    return x * phi


def shifted(maps, i, j, k):
    """``maps (..., H, W)`` read at offset (i - k // 2, j - k // 2), zeros outside."""
    H, W = maps.shape[-2:]
    p = k // 2
    padded = torch.zeros(*maps.shape[:-2], H + 2 * p, W + 2 * p, dtype=maps.dtype)
    padded[..., p:p + H, p:p + W] = maps
    return padded[..., i:i + H, j:j + W]


def hand_static(tuner, key, u, hw):
    """``u (T, n, N, r)``: bias + sum over taps of the tap's weight times the shifted map."""
    Tn, n, N, r = u.shape
    k = tuner.kernel
    maps = u.transpose(2, 3).reshape(Tn, n, r, *hw)
    w, b = tuner.filter_weight[key], tuner.filter_bias[key]  # (T, r, 1, k, k), (T, r)
    out = b[:, None, :, None, None].expand(Tn, n, r, *hw).clone()
    for i in range(k):
        for j in range(k):
            out += w[:, None, :, 0, i, j, None, None] * shifted(maps, i, j, k)
    return out.reshape(Tn, n, r, N).transpose(2, 3)


def hand_dynamic(tuner, key, u, hw):
    """Per sample: kernel = FilterNorm(W mean(u) + b), taps standardised per channel."""
    Tn, n, N, r = u.shape
    k = tuner.kernel
    maps = u.transpose(2, 3).reshape(Tn, n, r, *hw)
    raw = (u.mean(2) @ tuner.filter_weight[key].T + tuner.filter_bias[key]).view(
        Tn, n, r, k * k)
    mu = raw.mean(-1, keepdim=True)
    sd = ((raw - mu)**2).sum(-1, keepdim=True).div(k * k - 1).sqrt()
    kern = (raw - mu) / (sd + 1e-10) * tuner.filter_std[key] + tuner.filter_mean[key]
    out = torch.zeros_like(maps)
    for i in range(k):
        for j in range(k):
            out += kern[..., i * k + j, None, None] * shifted(maps, i, j, k)
    return out.reshape(Tn, n, r, N).transpose(2, 3)


def hand_tpc(a, logits, heads):
    """``a (n, N, C)``, ``logits (n, heads, T, N)`` -> ``(T, n, N, C)``: head h's
    channels of token j scaled by GELU of task t's prompt logit against j in head h."""
    n, N, C = a.shape
    dh = C // heads
    out = torch.empty(logits.shape[2], n, N, C, dtype=a.dtype)
    for t in range(logits.shape[2]):
        for h in range(heads):
            out[t, :, :, h * dh:(h + 1) * dh] = \
                a[:, :, h * dh:(h + 1) * dh] * gelu(logits[:, h, t, :])[..., None]
    return out


def hand_ln(x, norm):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu)**2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def forked_layer(model, stage=1):
    info = next(i for i in model.layer_infos if i.index in model.tuner.fork_layers
                and i.stage == stage)
    return info, model.stages[info.stage].blocks[info.index_in_stage]


# --------------------------------------------------------------------------- formulas
def test_tpc_is_the_per_head_formula():
    model = build()
    info, _ = forked_layer(model)
    a, logits = gen(5, 16, info.dim), gen(5, info.num_heads, T, 16, seed=1)
    site = Site((4, 4), T, lambda: logits)
    got = model.tuner.tpc(FORKED, info, a, site)
    torch.testing.assert_close(got, hand_tpc(a, logits, info.num_heads), **helpers.EXACT)
    one = model.tuner.tpc(TaskContext.one_task(1, T).fork(), info, a, site)
    torch.testing.assert_close(one[0], got[1], **helpers.EXACT)


@pytest.mark.parametrize('filter', ['static', 'dynamic'])
def test_filters_are_their_definitions(filter):
    model = build(filter=filter)
    draw(model)
    tuner = model.tuner
    key = 'fc13'
    u = gen(T, 3, 8 * 6, 4)
    got = tuner.task_filter(FORKED, key, u, (8, 6))
    hand = (hand_static if filter == 'static' else hand_dynamic)(tuner, key, u, (8, 6))
    torch.testing.assert_close(got, hand, **helpers.EXACT)


@pytest.mark.parametrize('skip_layout', ['reference', 'tokens'])
def test_forked_proj_is_the_formula(skip_layout):
    """Shared rows ``W a + b + s B A a``; task t's grid rows ``W a + b + s B f_t(A x_t)``
    with ``x_t = LN_p(a + skip_t)``; task prompt rows = the shared ones; the side output the
    skip, in the released memory layout or token by token."""
    model = build(skip_layout=skip_layout)
    draw(model)
    tuner = model.tuner
    info, block = forked_layer(model)
    proj = block.attn.w_msa.proj
    key = f'proj{info.index}'
    P, N, n, C = T, 16, 3, info.dim
    a, logits = gen(n, P + N, C), gen(n, info.num_heads, P, N, seed=1)
    with torch.no_grad():
        site = Site((4, 4), P, lambda: logits)
        out, side = tuner.linear_at(FORKED, info, 'proj', proj, a, site)
        A, Bm, s = tuner.shared_A[key], tuner.shared_B[key], tuner.scale
        frozen = a @ proj.weight.T + proj.bias
        shared = frozen + s * (a @ A.T) @ Bm.T
        skip = hand_tpc(a[:, P:], logits, info.num_heads)
        x_t = hand_ln(a[None, :, P:] + skip, tuner.prompt_norm[str(info.index)])
        tasks = frozen[None, :, P:] + s * hand_static(tuner, key, x_t @ A.T, (4, 4)) @ Bm.T
    out = out.view(1 + T, n, P + N, C)
    torch.testing.assert_close(out[0], shared, **helpers.EXACT)
    for t in range(T):
        torch.testing.assert_close(out[1 + t, :, P:], tasks[t], **helpers.EXACT)
        torch.testing.assert_close(out[1 + t, :, :P], shared[:, :P], **helpers.EXACT)
    expected = skip if skip_layout == 'tokens' else \
        skip.transpose(2, 3).contiguous().view(T, n, N, C)  # (n, C, N) memory as (n, N, C)
    torch.testing.assert_close(side, expected.reshape(T * n, N, C), **helpers.EXACT)


def test_forked_fc1_reads_the_shared_input_for_w_and_each_stream_for_the_filter():
    model = build()
    draw(model)
    tuner = model.tuner
    info, block = forked_layer(model)
    fc1 = block.ffn.layers[0][0]
    key = f'fc1{info.index}'
    x = gen((1 + T) * B, 8 * 8, info.dim)
    with torch.no_grad():
        out = tuner.linear_at(FORKED, info, 'fc1', fc1, x, Site((8, 8)))
        h = x.view(1 + T, B, 64, -1)
        A, Bm, s = tuner.shared_A[key], tuner.shared_B[key], tuner.scale
        frozen = h[0] @ fc1.weight.T + fc1.bias
        shared = frozen + s * (h[0] @ A.T) @ Bm.T
        tasks = frozen + s * hand_static(tuner, key, h[1:] @ A.T, (8, 8)) @ Bm.T
    out = out.view(1 + T, B, 64, -1)
    torch.testing.assert_close(out[0], shared, **helpers.EXACT)
    torch.testing.assert_close(out[1:], tasks, **helpers.EXACT)


@pytest.mark.parametrize('gating', [True, False])
def test_gate_mixes_skip_and_block_in_the_task_rows(gating):
    model = build(stage_gating=gating)
    tuner = model.tuner
    with torch.no_grad():
        tuner.gates.copy_(torch.tensor([0.3, -1.2, 0.7, 2.0], dtype=torch.float64))
    info, _ = forked_layer(model)
    x, side = gen((1 + T) * B, 64, info.dim), gen(T * B, 64, info.dim, seed=1)
    got = tuner.layer_output(FORKED, info, x, side)
    g = 1 / (1 + math.exp(1.2)) if gating else 0.5
    torch.testing.assert_close(got[:B], x[:B], **helpers.EXACT)
    torch.testing.assert_close(got[B:], g * side + (1 - g) * x[B:], **helpers.EXACT)
    assert torch.equal(build(skip_connection=False).tuner.layer_output(FORKED, info, x, side),
                       x)


@pytest.mark.parametrize('rule', ['tadformer', 'vpt'])
def test_prompt_update_and_widening_are_the_formulas(rule):
    model = build(prompt_update=rule)
    draw(model)
    tuner = model.tuner
    ctx = TaskContext.shared_batch(T)
    start = tuner.stage_prompts(ctx, 0, None, B)
    assert start.shape == (B, T, 16)
    assert all(torch.equal(start[b], tuner.prompts) for b in range(B))
    for stage, d in ((1, 16), (2, 32), (3, 64)):  # (P, d) -> (P, 2d) at every merging
        p = gen(B, T, d)
        torch.testing.assert_close(tuner.stage_prompts(ctx, stage, p, B),
                                   p @ tuner.prompt_up[stage - 1].T, **helpers.EXACT)

    def mlp(p):
        return 3 * p + 1  # any map: the rule decides what it reads

    p, p_attn = gen(B, T, 16), gen(B, T, 16, seed=1)
    info = model.layer_infos[0]
    expected = p + mlp(p_attn) if rule == 'tadformer' else p + p_attn + mlp(p + p_attn)
    torch.testing.assert_close(tuner.prompt_update(ctx, info, p, p_attn, mlp), expected,
                               **helpers.EXACT)
    assert tuner.prompt_update(ctx, model.layer_infos[-1], p, p_attn, mlp) is None


def test_trunc_normal_prompts_and_init_of_the_rest():
    model = helpers.build(dict(type='TADFormer', rank=4), TASKS, perturb=None)
    tuner = model.tuner
    assert tuner.prompts.min() >= -2 and tuner.prompts.max() <= 2
    assert tuner.prompts.mean() > 0.5  # mean 1 (96 * 2 draws would be a vacuous check)
    assert all(not b.any() for b in tuner.shared_B.values())
    assert torch.equal(tuner.gates, torch.zeros(4))
    assert set(tuner.prompt_norm) == {'1', '3', '5', '7'}
    assert set(build(build_unused=True).tuner.prompt_norm) == {str(i) for i in range(8)}


# --------------------------------------------------------------------------- the model
def stage_inputs_of_the_mergings(model, x):
    """The shared stream's tokens entering each patch merging (stages 0-2)."""
    seen = []
    hooks = [stage.downsample.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].clone())) for stage in model.stages[:3]]
    try:
        with torch.no_grad():
            outs = model(x)
    finally:
        for h in hooks:
            h.remove()
    return outs, seen


def test_gate_at_minus_inf_and_b_zero_give_every_task_the_shared_stream():
    model = build()  # B = 0 at init
    with torch.no_grad():
        model.tuner.gates.fill_(-math.inf)  # sigma(-inf) = 0 exactly
    outs, shared = stage_inputs_of_the_mergings(model, X)
    for task_outs in per_task(outs, T):
        for level in range(3):
            torch.testing.assert_close(task_outs[level].flatten(2).transpose(1, 2),
                                       shared[level], **helpers.EXACT)
    # not vacuous: the gate at 0 mixes the TPC skip in
    with torch.no_grad():
        model.tuner.gates.zero_()
    outs, shared = stage_inputs_of_the_mergings(model, X)
    for task_outs in per_task(outs, T):
        assert (task_outs[1].flatten(2).transpose(1, 2) - shared[1]).abs().max() > 1e-3


def test_tasks_are_isolated_by_their_filters_and_coupled_by_the_prompts():
    model = build()
    draw(model)
    with torch.no_grad():
        before = per_task(model(X), T)
        for w in model.tuner.filter_weight.values():
            w[1].add_(1.0)
        after = per_task(model(X), T)
    for a, b in zip(before[0], after[0]):
        torch.testing.assert_close(a, b, **helpers.EXACT)
    assert (before[1][3] - after[1][3]).abs().max() > 1e-3
    with torch.no_grad():
        model.tuner.prompts[1].add_(1.0)  # task 1's prompt joins every stream's softmax
        moved = per_task(model(X), T)
    assert (moved[0][3] - after[0][3]).abs().max() > 1e-3


def test_stacked_equals_loop():
    """A fork tuner runs one shared pass whatever task_batching says: the same numbers."""
    model = build()
    draw(model)
    helpers.assert_stacked_equals_loop(model, X)


@pytest.mark.parametrize('filter', ['static', 'dynamic'])
def test_merged_equals_unmerged_and_refuses_training(filter):
    model = build(filter=filter)
    # std 0.1: at 0.3 the widened prompts grow the features to ~1e4, where float64's
    # rounding of W x + s B A x against (W + s B A) x is ~1e-8 in absolute terms
    draw(model, 0.1)
    with torch.no_grad():
        unmerged = model(X)
        model.tuner.merge()
        merged = model(X)
    # W + s B A for every shared stream but the forked proj's (its task streams need the
    # bare W), and the last block's fc1 / fc2 (their only shared rows, the prompts', are
    # not updated there); the forked fc1 / fc2 merge for the prompts' MLP
    keys = {f'{n}{i}' for n in ('qkv', 'proj', 'fc1', 'fc2') for i in range(8)}
    assert set(model.tuner._merged) == keys - {'proj1', 'proj3', 'proj5', 'proj7', 'fc17',
                                               'fc27'}
    for a, b in zip(unmerged, merged):
        torch.testing.assert_close(a, b, **helpers.EXACT)
    model.train()
    with pytest.raises(RuntimeError, match='TADFormer: cannot train while merged'):
        model(X)
    model.tuner.unmerge()
    model(X)


@pytest.mark.parametrize('filter', ['static', 'dynamic'])
def test_every_trainable_parameter_gets_a_gradient_with_cp_on_and_off(filter):
    def make(with_cp):
        model = build(seed=5, with_cp=with_cp, filter=filter)
        draw(model)
        return model

    g = helpers.assert_checkpointing_keeps_every_gradient(make, X)
    assert any('relative_position_bias_table' in n for n in g)
    assert not any('downsample.reduction' in n for n in g)  # frozen, as released


def test_refused_by_pvt():
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    with pytest.raises(ValueError, match='TADFormer needs task_forks, which PolyhistorPVT'):
        MODELS.build(dict(type='PolyhistorPVT', tasks=TASKS, tuner=dict(type='TADFormer'),
                          **PVT_TINY))


def test_bad_keys_are_named():
    for key, match in [(dict(filter='fft'), 'TADFormer.filter'),
                       (dict(skip_layout='x'), 'TADFormer.skip_layout'),
                       (dict(prompt_update='x'), 'TADFormer.prompt_update'),
                       (dict(prompt_len=2), 'TADFormer.prompt_len must be 1'),
                       (dict(filter_kernel=4), 'TADFormer.filter_kernel must be odd'),
                       (dict(filter='dynamic', filter_kernel=1), 'TADFormer.filter_kernel .*>= 3'),
                       (dict(targets=('qkv', )), "TADFormer.targets .*'proj'")]:
        with pytest.raises(ValueError, match=match):
            build(**key)


# --------------------------------------------------------------------------- counts
TASKS4 = ('semseg', 'human_parts', 'sal', 'normals')
#: docs/plans/issue24.md sec. 1.3: the dynamic build with every prompt LayerNorm, and the
#: released static one, with the reference heads
TABLE = {16: (3_557_502, 3_532_350, '3.56'), 32: (4_776_126, 4_670_526, '4.78'),
         64: (7_379_262, 6_946_878, '7.38')}


def swin_t(**tuner):
    from mmpoly.utils.param_count import count_parameters
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS4, **SWIN_T,
                              tuner=dict(type='TADFormer', **tuner)))
    return model, count_parameters(model)


@pytest.mark.parametrize('rank', [16, 32, 64])
def test_counts_are_the_hand_formulas_and_the_paper_s_totals(rank):
    S = 2 * 96 + 2 * 192 + 6 * 384 + 2 * 768  # 4,416: sum of block widths
    small = 4_896 + 23_040 + 23_322  # patch embedding, LayerNorms, position tables
    prompts = 4 * 96 + 2 * (96**2 + 192**2 + 384**2) + 4  # prompts, widening, gates
    lora = 70_656 * rank
    static, dynamic = 480 * rank, 12 * (9 * rank**2 + 27 * rank)
    used_ln, all_ln = 2 * 1_440, 2 * S
    model, counts = swin_t(rank=rank, filter='dynamic', build_unused=True)
    tuner = model.tuner
    assert sum(p.numel() for p in tuner.shared_A.values()) + sum(
        p.numel() for p in tuner.shared_B.values()) == lora == rank * 16 * S
    filters = sum(p.numel() for d in (tuner.filter_weight, tuner.filter_bias,
                                      tuner.filter_std, tuner.filter_mean)
                  for p in d.values())
    assert filters == dynamic
    assert counts['encoder'] == lora + dynamic + all_ln + prompts + small
    paper, static_total, published = TABLE[rank]
    assert counts['paper']['reference'] == paper and f'{paper / 1e6:.2f}' == published
    assert counts['paper']['published'] == published
    # the released build (static, every LN counted): short by the filter group
    _, released = swin_t(rank=rank, build_unused=True)
    assert released['paper']['reference'] == static_total == paper - dynamic + static
    # the default (only the 4 used prompt LNs built)
    _, default = swin_t(rank=rank)
    assert default['encoder'] == lora + static + used_ln + prompts + small
    assert "filter='dynamic'" in default['paper']['build']


# --------------------------------------------------------------------------- the demo
def test_demo_trains_one_iteration_through_the_runner(tmp_path):
    """The demo config as tools/train.py builds it, one iteration of the real mmengine
    Runner: B moves, the frozen projections and patch mergings do not, the checkpoint holds
    the tuner's keys."""
    model, before, after, state = helpers.train_demo_one_iteration(DEMO, tmp_path)
    tuner = model.backbone.tuner
    assert type(tuner).__name__ == 'TADFormer' and tuner.fork_layers
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert {n for n in moved if '.tuner.shared_B.' in n} == {
        n for n in before if '.tuner.shared_B.' in n}
    assert not any(n.endswith(('qkv.weight', 'proj.weight', 'fc1.weight', 'reduction.weight'))
                   and '.tuner.' not in n for n in moved)
    assert moved <= {n for n, p in after.items() if p.requires_grad}
    tuner_keys = {k.split('.tuner.')[1].split('.')[0] for k in state if '.tuner.' in k}
    assert tuner_keys == {'shared_A', 'shared_B', 'filter_weight', 'filter_bias',
                          'prompt_norm', 'prompts', 'prompt_up', 'gates'}


def test_padded_tokens_are_zeroed_before_the_proj_filter():
    """64 px on the tiny Swin: stage 3's 2 x 2 grid is padded to one 4 x 4 window, the
    others are not. The mask changes stage 3's task outputs only; by hand, the forked proj
    with a mask is the formula with the masked tokens' rank-r values zeroed."""
    outs = {}
    for mask in (True, False):
        model = build(mask_padding=mask)
        draw(model, 0.1)
        with torch.no_grad():
            outs[mask] = model(X)
    for level in range(3):
        torch.testing.assert_close(outs[True][level], outs[False][level], **helpers.EXACT)
    assert (outs[True][3] - outs[False][3]).abs().max() > 1e-6

    tuner = model.tuner
    info, block = forked_layer(model)
    proj = block.attn.w_msa.proj
    key = f'proj{info.index}'
    P, N, n, C = T, 16, 4, info.dim  # 2 images x 2 windows
    real = (torch.arange(N) % 4 < 3).double().expand(2, N)  # the last column is padding
    a, logits = gen(n, P + N, C), gen(n, info.num_heads, P, N, seed=1)
    with torch.no_grad():
        site = Site((4, 4), P, lambda: logits, lambda: real)
        out, _ = tuner.linear_at(FORKED, info, 'proj', proj, a, site)  # mask_padding=False
        assert not tuner.mask_padding
        tuner.mask_padding = True
        out, _ = tuner.linear_at(FORKED, info, 'proj', proj, a, site)
        A, Bm, s = tuner.shared_A[key], tuner.shared_B[key], tuner.scale
        frozen = a @ proj.weight.T + proj.bias
        skip = hand_tpc(a[:, P:], logits, info.num_heads)
        x_t = hand_ln(a[None, :, P:] + skip, tuner.prompt_norm[str(info.index)])
        u = (x_t @ A.T) * real.repeat(2, 1)[None, :, :, None]
        tasks = frozen[None, :, P:] + s * hand_static(tuner, key, u, (4, 4)) @ Bm.T
    out = out.view(1 + T, n, P + N, C)
    for t in range(T):
        torch.testing.assert_close(out[1 + t, :, P:], tasks[t], **helpers.EXACT)


def windows_of(x, hw, ws):
    """(B, H*W, C) -> (B * nW, ws * ws, C), windows row-major (no shift)."""
    Bn, _, C = x.shape
    H, W = hw
    x = x.view(Bn, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def image_of(w, hw, ws):
    """The inverse of ``windows_of``."""
    H, W = hw
    C = w.shape[-1]
    x = w.view(-1, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H * W, C)


def test_a_forked_block_is_the_whole_formula():
    """One forked block (depth-1 stages: no shift; stage 1: 8 x 8 tokens, four 4 x 4
    windows) run by the backbone against the block written out here from its parts:
    prompts in every window, shared LoRA, TPC, static filters, window reverse, residuals,
    the gate on the task rows, the prompts' update from the shared stream."""
    torch.manual_seed(0)
    cfg = dict(helpers.TINY, depths=(1, 1, 1, 1))
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS, **cfg,
                              tuner=dict(type='TADFormer', rank=4, dropout=0.0)))
    model.init_weights()
    model.double().eval()
    draw(model, 0.1)
    with torch.no_grad():
        model.tuner.gates.fill_(0.4)
    tuner, s = model.tuner, model.tuner.scale
    info, block = forked_layer(model)
    wmsa, ffn = block.attn.w_msa, block.ffn
    fc1, fc2 = ffn.layers[0][0], ffn.layers[1]
    C, heads, hw, ws = info.dim, info.num_heads, (8, 8), 4
    x, p = gen(B, 64, C), gen(B, T, C, seed=1)

    def lora(name, module, h):
        key = f'{name}{info.index}'
        A, Bm = tuner.shared_A[key], tuner.shared_B[key]
        return h @ module.weight.T + module.bias + s * (h @ A.T) @ Bm.T

    def task(name, module, h_shared, h_task, grid):
        key = f'{name}{info.index}'
        A, Bm = tuner.shared_A[key], tuner.shared_B[key]
        u = hand_static(tuner, key, h_task @ A.T, grid)
        return h_shared @ module.weight.T + module.bias + s * u @ Bm.T

    with torch.no_grad():
        shared_out, prompts_out, task_rows = model._run_stage_layer(
            TaskContext.shared_batch(T), info, block, x, hw, p)
        # attention, shared by every stream up to proj
        win = windows_of(block.norm1(x), hw, ws)  # (B * 4, 16, C)
        nW = win.shape[0] // B
        seq = torch.cat([block.norm1(p).repeat_interleave(nW, 0), win], 1)
        q, k, v = lora('qkv', wmsa.qkv, seq).view(-1, T + 16, 3, heads, C // heads).permute(
            2, 0, 3, 1, 4)
        table = wmsa.relative_position_bias_table[wmsa.relative_position_index.view(-1)]
        bias = torch.zeros(heads, T + 16, T + 16, dtype=x.dtype)
        bias[:, T:, T:] = table.view(16, 16, heads).permute(2, 0, 1)
        attn = ((q * wmsa.scale) @ k.transpose(-2, -1) + bias).softmax(-1)
        a = (attn @ v).transpose(1, 2).reshape(-1, T + 16, C)
        # proj: the shared stream; each task's TPC-conditioned, filtered stream
        shared = lora('proj', wmsa.proj, a)
        skip = hand_tpc(a[:, T:], q[:, :, :T] @ k[:, :, T:].transpose(-2, -1), heads)
        x_t = hand_ln(a[None, :, T:] + skip, tuner.prompt_norm[str(info.index)])
        proj_t = task('proj', wmsa.proj, a[:, T:], x_t, (4, 4))
        xs = x + image_of(shared[:, T:], hw, ws)
        xt = torch.stack([x + image_of(proj_t[t], hw, ws) for t in range(T)])
        # MLP: W reads the shared stream's input, the filter each task's
        hs = block.norm2(xs)
        g_s = F.gelu(lora('fc1', fc1, hs))
        out_s = xs + lora('fc2', fc2, g_s)
        g_t = F.gelu(task('fc1', fc1, hs, block.norm2(xt), hw))
        out_t = xt + task('fc2', fc2, g_s, g_t, hw)
        g = torch.sigmoid(tuner.gates[info.stage])
        rows = []
        for t in range(T):
            # the skip's (windows, C, N) memory read as (windows, N, C), then window reverse
            side = image_of(skip[t].transpose(1, 2).reshape(-1, 16, C), hw, ws)
            rows.append(g * side + (1 - g) * out_t[t])
        # prompts: the shared stream's, averaged over the windows, updated by the shared MLP
        p_attn = shared[:, :T].view(B, nW, T, C).mean(1)
        hp = block.norm2(p_attn)
        p_new = p + lora('fc2', fc2, F.gelu(lora('fc1', fc1, hp)))
    torch.testing.assert_close(shared_out, out_s, **helpers.EXACT)
    torch.testing.assert_close(task_rows, torch.cat(rows), **helpers.EXACT)
    torch.testing.assert_close(prompts_out, p_new, **helpers.EXACT)
