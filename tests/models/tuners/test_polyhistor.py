"""Polyhistor (method.md sections 4 and 8): decomposed per-layer hypernetworks."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmpoly.models.tuners.base import LayerInfo
from mmpoly.models.tuners.polyhistor import decomposed_rank
from mmseg.registry import MODELS
from . import helpers
from .helpers import (SWIN_T, SWIN_T_WIDTHS, assert_adam_step_changes_only_the_tuner,
                      assert_gradients_reach_every_tuner_parameter,
                      assert_only_task_1_of_3_moved, assert_stacked_equals_loop,
                      assert_step_and_load_refresh_the_cache, assert_tasks_equal_frozen,
                      frozen_copy, per_task, tuner_params)
from .hypernet_helpers import (assert_every_parameter_gets_a_gradient,
                               assert_init_equals_frozen, assert_old_checkpoint_refused,
                               check_branches, layout_digest, plain_projector,
                               wake_norm_generators)

TASKS = ('semseg', 'human_parts', 'sal', 'normals')
#: the pre-change default (the text's form): rebuilds its layout and count
OLD_FORM = dict(adapter_norm='pre', per_layer_projector=False, embed_dim=None,
                rank_rounding='half_up')


def build(tasks=TASKS[:2], seed=0, task_batching='stacked', wake=True, **tuner):
    tuner = dict(dict(type='Polyhistor', reduction=2), **tuner)
    model = helpers.build(tuner, tasks, seed=seed, perturb=None, task_batching=task_batching)
    if wake:  # the post-norm LayerNorm generators start at 0: make the adapters act
        wake_norm_generators(model.tuner)
    return model


def floor_rank(n, ratio):
    return max(1, math.floor(n * ratio))


def half_up_rank(n, ratio):
    return max(1, math.floor(n * ratio + 0.5))


# ------------------------------------------------------------------ (a) initialisation
@pytest.mark.parametrize('backbone', ['PolyhistorSwin', 'PolyhistorPVT'])
def test_init_equals_frozen_backbone(backbone):
    # the post-norm LayerNorm's generators start at zero: every adapter outputs exactly 0
    assert_init_equals_frozen(backbone, dict(type='Polyhistor', reduction=2))


def test_every_parameter_gets_a_gradient_at_init():
    assert_every_parameter_gets_a_gradient(build(tasks=TASKS, wake=False))


def test_zero_generators_give_the_frozen_backbone_exactly_pre_norm():
    assert_tasks_equal_frozen(build(init_std=0.0, adapter_norm='pre'), rtol=0)


def test_default_init_generates_small_weights_of_the_predicted_size():
    # c_t is LayerNorm'd (|c|^2 = k), generator weights ~ N(0, std^2): every generated entry
    # ~ N(0, std^2 k); a product of factors sums r such products: var r (std^2 k)^2
    model = build(tasks=TASKS, task_embed_dim=64, reduction=1, wake=False)  # n = d
    std, k = 1e-2, 64
    weights = model.tuner.current_weights()
    ranks = model.tuner.ranks()
    downs = torch.cat([w.down.flatten() / math.sqrt(ranks[key]) for key, w in weights.items()])
    biases = torch.cat([w.up_bias.flatten() for w in weights.values()])
    assert downs.std().item() == pytest.approx(std * std * k, rel=0.2)
    assert biases.std().item() == pytest.approx(std * math.sqrt(k), rel=0.2)
    for w in weights.values():  # post-norm: the generated LayerNorm starts at exactly 0
        assert not w.norm_weight.any() and not w.norm_bias.any()
    # pre-norm: the generated LayerNorm starts as a plain one and the model near the frozen
    model = build(tasks=TASKS, reduction=1, wake=False, adapter_norm='pre')
    norm_w = torch.cat([w.norm_weight.flatten() for w in model.tuner.current_weights().values()])
    assert norm_w.mean().item() == pytest.approx(1.0, abs=0.02)
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
                                                              'generators'}


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
@pytest.mark.parametrize('cfg', [dict(), OLD_FORM, dict(position='after_attn_and_mlp')])
def test_stacked_forward_equals_per_task_loop(cfg):
    model = build(tasks=TASKS, **cfg)
    loop = build(tasks=TASKS, task_batching='loop', **cfg)
    assert_stacked_equals_loop(model, torch.randn(2, 3, 64, 64), loop)


# ------------------------------------------------------------------ (e) parameter count
def expected_swin_t_count(T=4, k=64, lam=16, ratio=0.25, rank=None, hidden=128, E=512,
                          per_layer_projector=True, rounding=floor_rank, norms=True,
                          share=False):
    """method.md s. 8, from the layer widths: T task embeddings of E; a projector
    E -> hidden -> k + LayerNorm(k) per layer (or one); per adapter two generators
    k -> r (d + n) (or one pair k -> r (d + 2n)), bias generators k -> n and k -> d, norm
    generators k -> d twice (or a plain per-task LayerNorm, 2 d T), every linear map with
    its bias; r = floor(n * ratio), at least 1."""
    projector = (E * hidden + hidden) + (hidden * k + k) + 2 * k
    total = T * E + (0 if per_layer_projector else projector)
    for d in SWIN_T_WIDTHS:
        n = d // lam
        r = rank or rounding(n, ratio)
        outputs = (r * (d + 2 * n) if share else 2 * r * (d + n)) + n + d
        total += (k + 1) * (outputs + (2 * d if norms else 0)) + (0 if norms else 2 * d * T)
        total += projector if per_layer_projector else 0
    return total


def swin_t_count(cfg):
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T, tasks=TASKS,
                              tuner=dict(type='Polyhistor', **cfg)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('cfg, paper', [
    (dict(), 6_410_684),  # Table 1 (6.41M): lambda 16, r = n/4, k 64
    (dict(rank=1), 2_379_644),  # Table 5: 2.38M
    (dict(rank_ratio=0.125), 4_076_924),  # 4.08M
    (dict(rank_ratio=0.5), 11_078_204),  # 11.08M
])
def test_swin_t_count_is_the_papers(cfg, paper):
    assert (512 * 128 + 128) + (128 * 64 + 64) + 2 * 64 == 74_048  # one projector
    expected = expected_swin_t_count(ratio=cfg.get('rank_ratio', 0.25), rank=cfg.get('rank'))
    assert expected == paper
    assert swin_t_count(cfg) == expected


@pytest.mark.parametrize('cfg', [
    dict(share_left_factor=True),
    dict(generate_norms=False),
    dict(per_layer_projector=False),
    dict(embed_dim=None),
    dict(rank_rounding='half_up'),
    OLD_FORM,
])
def test_swin_t_count_of_the_other_forms(cfg):
    expected = expected_swin_t_count(
        E=64 if 'embed_dim' in cfg else 512,
        per_layer_projector=cfg.get('per_layer_projector', True),
        rounding=half_up_rank if cfg.get('rank_rounding') == 'half_up' else floor_rank,
        norms=cfg.get('generate_norms', True), share=cfg.get('share_left_factor', False))
    assert swin_t_count(cfg) == expected
    if cfg == OLD_FORM:
        assert expected == 5_563_540  # the pre-change default


def test_rank_rule():
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T, tasks=TASKS[:1],
                              tuner=dict(type='Polyhistor')))
    ranks = model.tuner.ranks()
    # n = 6, 12, 24, 48: r = floor(n / 4) = 1, 3, 6, 12 (method.md s. 8)
    assert [ranks[('mlp', i)] for i in (0, 2, 4, 10)] == [1, 3, 6, 12]
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T, tasks=TASKS[:1],
                              tuner=dict(type='Polyhistor', rank_ratio=0.125)))
    assert [model.tuner.ranks()[('mlp', i)] for i in (0, 2, 4, 10)] == [1, 1, 3, 6]
    # floor, never below 1; half up on request; an explicit rank overrides
    assert decomposed_rank(10, 0.25) == 2 and decomposed_rank(3, 0.125) == 1
    assert decomposed_rank(6, 0.25) == 1 and decomposed_rank(6, 0.25, rounding='half_up') == 2
    assert decomposed_rank(10, 0.25, rounding='half_up') == 3
    assert decomposed_rank(48, 0.25, rank=1) == 1
    with pytest.raises(ValueError, match='rank_rounding'):
        decomposed_rank(6, 0.25, rounding='nearest')


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


@pytest.mark.parametrize('per_layer_projector', [True, False])
def test_one_layer_matches_a_plain_computation(per_layer_projector):
    d, lam, r, k, T = 12, 3, 2, 8, 2
    n = d // lam
    layers = [LayerInfo(index=0, stage=0, index_in_stage=0, dim=d, num_heads=1,
                        mlp_hidden=4 * d, scale=1, name='l0')]
    torch.manual_seed(0)
    tuner = MODELS.build(
        dict(type='Polyhistor', reduction=lam, rank=r, task_embed_dim=k, embed_dim=10,
             projector_hidden=16, init_std=0.3, per_layer_projector=per_layer_projector),
        default_args=dict(layers=layers, tasks=TASKS[:T])).double()  # float64: exact oracle
    gen = tuner.generators[0] if per_layer_projector else tuner.generator
    with torch.no_grad():
        tuner.projector.norm.weight.normal_()
        tuner.projector.norm.bias.normal_()
        gen.weight.normal_()
        gen.bias.normal_()
    w = tuner.generate_weights()[('mlp', 0)]

    weight, bias = (gen.weight[0], gen.bias[0]) if per_layer_projector else (gen.weight,
                                                                             gen.bias)
    for t in range(T):
        c = plain_projector(tuner.projector, tuner.task_embed[t],
                            0 if per_layer_projector else None)
        out = weight @ c + bias
        sizes = [d * r, r * n, n * r, r * d, n, d, d, d]
        assert out.numel() == sum(sizes) and tuner.task_embed.shape == (T, 10)
        p_d, q_d, p_u, q_u, b_d, b_u, ln_w, ln_b = out.split(sizes)
        expected = dict(down=p_d.view(d, r) @ q_d.view(r, n), up=p_u.view(n, r) @ q_u.view(r, d),
                        down_bias=b_d, up_bias=b_u, norm_weight=ln_w, norm_bias=ln_b)
        for name, value in expected.items():
            torch.testing.assert_close(getattr(w, name)[t], value, **helpers.EXACT)


def polyhistor_oracle(tuner, site, layer, t):
    """(g, b, W_down, b_down, W_up, b_up) of task t, plainly from the parameters."""
    g = next(g for g, (_, slots) in enumerate(tuner.groups) if (site, layer) in slots)
    j = [slot for slot in tuner.groups[g][1]].index((site, layer))
    d, n = layer.dim, tuner.hidden(layer)
    r = tuner.ranks()[(site, layer.index)]
    c = plain_projector(tuner.projector, tuner.task_embed[t], tuner.layers.index(layer))
    gen = tuner.generators[g]
    out = gen.weight[j] @ c + gen.bias[j]
    p_d, q_d, p_u, q_u, b_d, b_u, ln_w, ln_b = out.split(
        [d * r, r * n, n * r, r * d, n, d, d, d])
    return ln_w, ln_b, p_d.view(d, r) @ q_d.view(r, n), b_d, p_u.view(n, r) @ q_u.view(r, d), b_u


@pytest.mark.parametrize('cfg', [dict(), dict(position='after_attn_and_mlp'),
                                 dict(position='after_mlp', adapter_norm='pre')])
def test_adapters_match_the_plain_formula(cfg):
    check_branches(build(**cfg).tuner, polyhistor_oracle, 2)


def test_one_generator_call_per_stage_per_training_forward():
    model = build(tasks=TASKS)
    model.train()
    calls = []
    for gen in model.tuner.generators:
        gen.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    model.tuner.projector.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    model(torch.randn(2, 3, 64, 64))
    # the 8 layers' projectors at once, then one batched call per stage (2 layers each)
    assert calls == [torch.Size([8, 4, 64])] + [torch.Size([2, 4, 64])] * 4


# ------------------------------------------------------------------ eval-mode cache
def test_eval_cache_is_reused_and_refreshed():
    model = build()
    tuner = model.tuner
    x = torch.randn(1, 3, 64, 64)
    calls = []
    tuner.generators[0].register_forward_hook(lambda m, i, o: calls.append(1))

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
    model = build(tasks=TASKS[:1], position='after_attn_and_mlp').double()  # exact oracle
    tuner = model.tuner
    helpers.randomize_tuner(model, 0.1)  # the post-norm gains start at zero: make A act
    keys = set(tuner.current_weights())
    assert keys == {(site, i) for i in range(8) for site in ('attn', 'mlp')}
    calls = []
    for site in ('attn', 'mlp'):
        def record(ctx, layer, x, out, hook=getattr(tuner, f'{site}_branch'), site=site):
            result = hook(ctx, layer, x, out)
            calls.append((site, layer.index, out, result))
            return result
        monkeypatch.setattr(tuner, f'{site}_branch', record)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
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
        torch.testing.assert_close(result, expected, **helpers.EXACT,
                                   msg=f'{site} adapter of layer {index}')
        assert (result - out).abs().max() > 1e-3, (site, index)  # the adapter acts
    # the blocks use the adapted outputs: the backbone's output moved off the frozen one
    with torch.no_grad():
        frozen = frozen_copy(model, TASKS[:1])(x)
    assert not torch.allclose(adapted[0], frozen[0], atol=1e-3)


# ------------------------------------------------------------------ old checkpoints
def test_old_form_keys_rebuild_the_pre_change_layout():
    assert layout_digest(dict(type='Polyhistor', **OLD_FORM)) == ('bd1fc41aa740e7da', 214_042)


def test_old_checkpoint_does_not_load_into_the_new_default():
    assert_old_checkpoint_refused('Polyhistor', OLD_FORM)
