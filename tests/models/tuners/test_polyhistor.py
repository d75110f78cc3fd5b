"""Polyhistor (method.md section 4): decomposed per-layer hypernetworks."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmpoly.models.tuners.base import LayerInfo
from mmpoly.models.tuners.polyhistor import decomposed_rank
from mmseg.registry import MODELS
from . import helpers
from .helpers import (SWIN_T, assert_adam_step_changes_only_the_tuner,
                      assert_gradients_reach_every_tuner_parameter,
                      assert_only_task_1_of_3_moved, assert_stacked_equals_loop,
                      assert_step_and_load_refresh_the_cache, assert_tasks_equal_frozen,
                      frozen_copy, per_task, tuner_params)

TASKS = ('semseg', 'human_parts', 'sal', 'normals')


def build(tasks=TASKS[:2], seed=0, task_batching='stacked', **tuner):
    tuner = dict(dict(type='Polyhistor', reduction=2), **tuner)
    return helpers.build(tuner, tasks, seed=seed, perturb=None, task_batching=task_batching)


def plain_rank(n, ratio):
    return max(1, math.floor(n * ratio + 0.5))


# ------------------------------------------------------------------ (a) initialisation
def test_zero_generators_give_the_frozen_backbone_exactly():
    assert_tasks_equal_frozen(build(init_std=0.0), rtol=0)


def test_default_init_generates_small_weights_of_the_predicted_size():
    # c_t is LayerNorm'd (|c|^2 = k), generator weights ~ N(0, std^2): every generated entry
    # ~ N(0, std^2 k); a product of factors sums r such products: var r (std^2 k)^2
    model = build(tasks=TASKS, task_embed_dim=64, reduction=1)  # n = d: many entries
    std, k = 1e-2, 64
    weights = model.tuner.current_weights()
    ranks = model.tuner.ranks()
    downs = torch.cat([w.down.flatten() / math.sqrt(ranks[key]) for key, w in weights.items()])
    biases = torch.cat([w.up_bias.flatten() for w in weights.values()])
    norm_w = torch.cat([w.norm_weight.flatten() for w in weights.values()])
    assert downs.std().item() == pytest.approx(std * std * k, rel=0.2)
    assert biases.std().item() == pytest.approx(std * math.sqrt(k), rel=0.2)
    assert norm_w.mean().item() == pytest.approx(1.0, abs=0.02)  # starts as a plain LN
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.equal(model(x)[0][:2], frozen_copy(model, TASKS)(x)[0])


# ------------------------------------------------------------------ (b) one step
def test_one_step_changes_only_the_tuner():
    assert_adam_step_changes_only_the_tuner(build())


def test_gradients_reach_every_generator_and_embedding():
    model = build(tasks=TASKS)
    assert_gradients_reach_every_tuner_parameter(model)
    assert {n.split('.')[1] for n in tuner_params(model)} == {'task_embed', 'projector',
                                                              'generator'}


# ------------------------------------------------------------------ (c) task isolation
@pytest.mark.parametrize('generate_norms', [True, False])
def test_task_output_depends_only_on_its_own_parameters(generate_norms):
    model = build(tasks=TASKS[:3], generate_norms=generate_norms)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = per_task(model(x), 3)
        model.tuner.task_embed[1].add_(1.0)  # task 1's parameters
        if not generate_norms:
            for norms in model.tuner.norms:
                norms.weight[1].mul_(2.0)
        after = per_task(model(x), 3)
    assert_only_task_1_of_3_moved(before, after)


# ------------------------------------------------------------------ (d) stacked == loop
def test_stacked_forward_equals_per_task_loop():
    model = build(tasks=TASKS)
    loop = build(tasks=TASKS, task_batching='loop')
    assert_stacked_equals_loop(model, torch.randn(2, 3, 64, 64), loop)


# ------------------------------------------------------------------ (e) parameter count
def expected_swin_t_count(T=4, k=64, lam=16, ratio=0.25, rank=None, hidden=128,
                          norms=True, share=False):
    """method.md s. 4, per layer: two generators k -> r (d + n) (or one pair
    k -> r (d + 2n)), bias generators k -> n and k -> d, norm generators k -> d twice (or a
    plain per-task LayerNorm, 2 d T), every linear map with its bias; shared: T task
    embeddings of k, the projector k -> hidden -> k and its LayerNorm."""
    total = T * k + (k * hidden + hidden) + (hidden * k + k) + 2 * k
    for d, depth in zip((96, 192, 384, 768), (2, 2, 6, 2)):
        n = d // lam
        r = rank or plain_rank(n, ratio)
        outputs = (r * (d + 2 * n) if share else 2 * r * (d + n)) + n + d
        per_layer = (k + 1) * (outputs + (2 * d if norms else 0)) + (0 if norms else 2 * d * T)
        total += depth * per_layer
    return total


@pytest.mark.parametrize('cfg', [
    dict(),  # the paper's setting: lambda 16, r = n/4, k 64
    dict(rank=1),
    dict(rank_ratio=0.125),
    dict(rank_ratio=0.5),
    dict(share_left_factor=True),
    dict(generate_norms=False),
])
def test_swin_t_trainable_count(cfg):
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T, tasks=TASKS,
                              tuner=dict(type='Polyhistor', **cfg)))
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ratio, rank = cfg.get('rank_ratio', 0.25), cfg.get('rank')
    assert count == expected_swin_t_count(
        ratio=ratio, rank=rank, norms=cfg.get('generate_norms', True),
        share=cfg.get('share_left_factor', False))
    if not cfg:
        assert count == 5_563_540  # paper (Table 1): 6.41M


def test_rank_rule():
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T, tasks=TASKS[:1],
                              tuner=dict(type='Polyhistor')))
    ranks = model.tuner.ranks()
    # n = 6, 12, 24, 48: r = n/4 rounded half up = 2, 3, 6, 12
    assert [ranks[('mlp', i)] for i in (0, 2, 4, 10)] == [2, 3, 6, 12]
    # half rounds up (n = 10, r = 2.5 -> 3), never below 1, an explicit rank overrides
    assert decomposed_rank(10, 0.25) == 3 and decomposed_rank(3, 0.125) == 1
    assert decomposed_rank(48, 0.25, rank=1) == 1


# ------------------------------------------------------------------ the generator itself
def test_generated_matrices_have_rank_at_most_r():
    model = build(tasks=TASKS[:2], rank=2, init_std=1.0)
    for key, w in model.tuner.current_weights().items():
        for t in range(2):
            assert torch.linalg.matrix_rank(w.down[t]).item() == 2, key
            assert torch.linalg.matrix_rank(w.up[t]).item() == 2, key


def test_shared_left_factor_spans_both_halves():
    # eq. (3) as one pair: [W_down, W_up^T] = P Q^T has rank <= r as a whole
    model = build(tasks=TASKS[:1], rank=2, share_left_factor=True, init_std=1.0)
    for w in model.tuner.current_weights().values():
        joint = torch.cat([w.down[0], w.up[0].T], dim=1)
        assert torch.linalg.matrix_rank(joint).item() == 2


def test_one_layer_matches_a_plain_computation():
    d, lam, r, k, T = 12, 3, 2, 8, 2
    n = d // lam
    layers = [LayerInfo(index=0, stage=0, index_in_stage=0, dim=d, num_heads=1,
                        mlp_hidden=4 * d, scale=1, name='l0')]
    torch.manual_seed(0)
    tuner = MODELS.build(
        dict(type='Polyhistor', reduction=lam, rank=r, task_embed_dim=k, projector_hidden=16,
             init_std=0.3), default_args=dict(layers=layers, tasks=TASKS[:T]))
    with torch.no_grad():
        tuner.projector.norm.weight.normal_()
        tuner.projector.norm.bias.normal_()
        tuner.generator.bias.normal_()
    w = tuner.generate_weights()[('mlp', 0)]

    pj = tuner.projector
    for t in range(T):
        e = tuner.task_embed[t]
        h = torch.relu(pj.fc1.weight @ e + pj.fc1.bias)
        c = F.layer_norm(pj.fc2.weight @ h + pj.fc2.bias, (k, ), pj.norm.weight, pj.norm.bias)
        out = tuner.generator.weight @ c + tuner.generator.bias
        sizes = [d * r, r * n, n * r, r * d, n, d, d, d]
        assert out.numel() == sum(sizes)
        p_d, q_d, p_u, q_u, b_d, b_u, ln_w, ln_b = out.split(sizes)
        expected = dict(down=p_d.view(d, r) @ q_d.view(r, n), up=p_u.view(n, r) @ q_u.view(r, d),
                        down_bias=b_d, up_bias=b_u, norm_weight=ln_w, norm_bias=ln_b)
        for name, value in expected.items():
            torch.testing.assert_close(getattr(w, name)[t], value, atol=1e-5, rtol=1e-5)


def test_one_generator_call_per_training_forward():
    model = build(tasks=TASKS)
    model.train()
    calls = []
    model.tuner.generator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    model(torch.randn(2, 3, 64, 64))
    assert calls == [torch.Size([4, 64])]  # all tasks and layers at once


# ------------------------------------------------------------------ eval-mode cache
def test_eval_cache_is_reused_and_refreshed():
    model = build()
    tuner = model.tuner
    x = torch.randn(1, 3, 64, 64)
    calls = []
    tuner.generator.register_forward_hook(lambda m, i, o: calls.append(1))

    def same(a, b):
        return all(torch.equal(getattr(a[key], f), getattr(b[key], f))
                   for key in a for f in ('down', 'up', 'down_bias', 'norm_weight'))

    with torch.no_grad():
        model(x)
        cached = tuner.current_weights()
        model(x)
        assert len(calls) == 1 and tuner.current_weights() is cached
        assert same(cached, tuner.generate_weights())

    # an optimiser step refreshes it, and so does load_state_dict
    assert_step_and_load_refresh_the_cache(model, tuner_params(model).values(), x, cached, same,
                                           build)
    with torch.no_grad():
        # a dtype move refreshes it
        model.double()
        assert tuner.current_weights()[('mlp', 0)].down.dtype == torch.float64

    # never cached while training or recording gradients
    model.float()
    model.train()
    assert tuner.current_weights() is not tuner.current_weights()
    model.eval()
    assert tuner.current_weights() is not tuner.current_weights()  # grad enabled


def test_houlsby_position_adapts_both_sublayers(monkeypatch):
    """after_attn_and_mlp: in every layer the attention output and the MLP output each go
    through their own generated adapter, out + scale * A(out), A written plainly (eq. 1 in
    the tuner's LayerNorm form), and the blocks go on with what the adapters return."""
    model = build(tasks=TASKS[:1], position='after_attn_and_mlp')
    tuner = model.tuner
    helpers.randomize_tuner(model, 0.1)  # the post-norm gains start at zero: make A act
    keys = set(tuner.current_weights())
    assert keys == {(site, i) for i in range(8) for site in ('attn', 'mlp')}
    calls = []
    for site in ('attn', 'mlp'):
        def record(layer, x, out, hook=getattr(tuner, f'{site}_branch'), site=site):
            result = hook(layer, x, out)
            calls.append((site, layer.index, out, result))
            return result
        monkeypatch.setattr(tuner, f'{site}_branch', record)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        adapted = model(x)
        weights = tuner.current_weights()
    assert sorted(c[:2] for c in calls) == sorted(keys)
    post = getattr(tuner, 'adapter_norm', 'pre') == 'post'
    for site, index, out, result in calls:
        w = weights[(site, index)]
        d = out.shape[-1]
        down, up = w.down[0], w.up[0]
        db = 0 if w.down_bias is None else w.down_bias[0]
        ub = 0 if w.up_bias is None else w.up_bias[0]
        if post:
            a = F.layer_norm(tuner.act(out @ down + db) @ up + ub, (d, ), w.norm_weight[0],
                             w.norm_bias[0])
        else:
            a = tuner.act(F.layer_norm(out, (d, ), w.norm_weight[0], w.norm_bias[0]) @ down
                          + db) @ up + ub
        expected = out + tuner.scale * a
        torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-5,
                                   msg=f'{site} adapter of layer {index}')
        assert (result - out).abs().max() > 1e-3, (site, index)  # the adapter acts
    # the blocks use the adapted outputs: the backbone's output moved off the frozen one
    with torch.no_grad():
        frozen = frozen_copy(model, TASKS[:1])(x)
    assert not torch.allclose(adapted[0], frozen[0], atol=1e-3)
