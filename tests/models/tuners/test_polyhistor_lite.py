"""Polyhistor-Lite (method.md sections 5 and 8): one shared decomposed hypernetwork + scaling
kernels."""
import math

import pytest
import torch

from mmpoly.models.tuners.base import LayerInfo
from mmseg.registry import MODELS
from . import helpers
from .helpers import (SWIN_T, assert_adam_step_changes_only_the_tuner,
                      assert_gradients_reach_every_tuner_parameter,
                      assert_only_task_1_of_3_moved, assert_stacked_equals_loop,
                      assert_step_and_load_refresh_the_cache, assert_tasks_equal_frozen,
                      frozen_copy, per_task)
from .hypernet_helpers import (assert_every_parameter_gets_a_gradient,
                               assert_init_equals_frozen, assert_old_checkpoint_refused,
                               layout_digest, plain_projector, wake_norm_generators)

# the tiny Swin of tests/models/backbones/test_polyhistor_swin.py has C = 16, scales 1, 2, 4, 8
TASKS = ('semseg', 'human_parts', 'sal', 'normals')
#: the pre-change default (the text's form): rebuilds its layout and count
OLD_FORM = dict(adapter_norm='pre', embed_dim=None, task_specific_kernels=True,
                per_vector_kernels=True, rank_rounding='half_up')


def build(tasks=TASKS[:2], seed=0, task_batching='stacked', wake=True, **tuner):
    tuner = dict(dict(type='PolyhistorLite', task_embed_dim=16), **tuner)
    model = helpers.build(tuner, tasks, seed=seed, perturb=None, task_batching=task_batching)
    if wake:  # the post-norm LayerNorm generators start at 0: make the adapters act
        wake_norm_generators(model.tuner)
    return model


def explicit_kron_sum(left, right):
    return sum(torch.kron(left[i], right[i]) for i in range(left.shape[0]))


# ------------------------------------------------------------------ (a) initialisation
@pytest.mark.parametrize('backbone', ['PolyhistorSwin', 'PolyhistorPVT'])
def test_init_equals_frozen_backbone(backbone):
    # the post-norm LayerNorm's generator starts at zero: every adapter outputs exactly 0
    # (PVT: scales 1, 2, 5, 8)
    assert_init_equals_frozen(backbone, dict(type='PolyhistorLite', task_embed_dim=16))


def test_every_parameter_gets_a_gradient_at_init():
    assert_every_parameter_gets_a_gradient(build(tasks=TASKS, wake=False))


def test_zero_generator_gives_the_frozen_backbone_exactly_pre_norm():
    assert_tasks_equal_frozen(build(init_std=0.0, adapter_norm='pre'), rtol=0)


@pytest.mark.parametrize('cfg', [dict(), dict(per_vector_kernels=True),
                                 dict(task_specific_kernels=True)])
def test_every_stage_layer_norm_starts_where_stage_1_does(cfg):
    # pre-norm with zero generator weights: the LayerNorm-weight template is exactly 1 (its
    # generator's bias) and every stage's expanded weight must be exactly 1 too
    tuner = build(tasks=TASKS[:3], init_std=0.0, adapter_norm='pre', wake=False, **cfg).tuner
    for (site, index), w in tuner.generate_weights().items():
        assert torch.equal(w.norm_weight, torch.ones_like(w.norm_weight)), index
        assert not w.norm_bias.any()
    # with random templates, the expansion interleaves the s templates of the layer:
    # entry j s + i of stage s is entry j of template i, whatever the stage
    tuner = build(tasks=TASKS[:3], init_std=0.5, adapter_norm='pre', wake=False, **cfg).tuner
    tpl = tuner.generate_templates()
    weights = tuner.generate_weights()
    for layer in tuner.layers:
        s = layer.scale
        _, _, rows = tuner.locate('mlp', layer.index)
        for name in ('norm_weight', 'norm_bias'):
            got = getattr(weights[('mlp', layer.index)], name)  # (T, d s)
            for i in range(s):
                torch.testing.assert_close(got[:, i::s], tpl[name][:, rows][:, i])
    # the check can fail: a sum of s random kernels does not start at 1
    with torch.no_grad():
        for kernels in tuner.vector_kernels.values():
            kernels.normal_()
        tuner.generator.weight.zero_()
    w = tuner.generate_weights()[('mlp', 7)].norm_weight
    assert not torch.allclose(w, torch.ones_like(w))


def test_default_init_statistics():
    # templates: entries ~ N(0, std^2 k) (LayerNorm'd condition, |c|^2 = k); the bias kernels
    # start standard normal, so an expanded stage-1 vector keeps std * sqrt(k) and a stage-b
    # one, a sum of s such terms times N(0, 1), has std std * sqrt(k s)
    model = build(tasks=TASKS, task_embed_dim=64, wake=False)
    std, k = 1e-2, 64
    w = model.tuner.current_weights()
    stage1 = torch.cat([w[('mlp', i)].up_bias.flatten() for i in (0, 1)])
    stage4 = torch.cat([w[('mlp', i)].up_bias.flatten() for i in (6, 7)])
    # (16 generator rows: a loose tolerance)
    assert stage1.std().item() == pytest.approx(std * math.sqrt(k), rel=0.35)
    assert stage4.std().item() == pytest.approx(std * math.sqrt(k * 8), rel=0.35)
    for v in w.values():  # post-norm: the generated LayerNorm starts at exactly 0
        assert not v.norm_weight.any() and not v.norm_bias.any()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)[0][:1], frozen_copy(model, TASKS)(x)[0])
        wake_norm_generators(model.tuner)
        assert not torch.allclose(model(x)[0][:1], frozen_copy(model, TASKS)(x)[0])


# ------------------------------------------------------------------ (b) one step
def test_one_step_changes_only_the_tuner():
    assert_adam_step_changes_only_the_tuner(build())


def test_gradients_reach_hypernetwork_embeddings_and_kernels():
    model = build(tasks=TASKS)
    params = assert_gradients_reach_every_tuner_parameter(model)
    groups = {n.split('.')[1] for n in params}
    assert groups == {'task_embed', 'layer_embed', 'projector', 'generator', 'scale_kernels',
                      'vector_kernels'}
    # every layer's kernels and every layer embedding row get a gradient
    assert (model.tuner.scale_kernels['s8'].grad.flatten(2).abs().sum(2) > 0).all()
    assert (model.tuner.vector_kernels['s8'].grad.flatten(3).abs().sum(3) > 0).all()
    assert (model.tuner.layer_embed.grad.abs().sum(1) > 0).all()


# ------------------------------------------------------------------ (c) task isolation
@pytest.mark.parametrize('task_specific_kernels', [False, True])
def test_task_output_depends_only_on_its_own_parameters(task_specific_kernels):
    model = build(tasks=TASKS[:3], task_specific_kernels=task_specific_kernels)
    tuner = model.tuner
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = per_task(model(x), 3)
        tuner.task_embed[1].add_(1.0)  # every task-specific parameter of task 1
        if task_specific_kernels:
            for kernels in (*tuner.scale_kernels.values(), *tuner.vector_kernels.values()):
                kernels[1].mul_(-1.5)
        after = per_task(model(x), 3)
    assert_only_task_1_of_3_moved(before, after)


def test_shared_kernels_are_shared_across_tasks():
    model = build(tasks=TASKS[:3])  # the default: kernels shared by the tasks
    tuner = model.tuner
    assert all(k.shape[0] == 1 for k in tuner.scale_kernels.values())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = per_task(model(x), 3)
        tuner.scale_kernels['s8'].mul_(-1.5)
        after = per_task(model(x), 3)
    for t in range(3):  # a shared kernel moves every task's deepest stage
        assert not torch.allclose(before[t][3], after[t][3])
        assert torch.equal(before[t][2], after[t][2])


# ------------------------------------------------------------------ (d) stacked == loop
@pytest.mark.parametrize('task_specific_kernels', [True, False])
def test_stacked_forward_equals_per_task_loop(task_specific_kernels):
    model = build(tasks=TASKS, task_specific_kernels=task_specific_kernels)
    loop = build(tasks=TASKS, task_batching='loop', task_specific_kernels=task_specific_kernels)
    assert_stacked_equals_loop(model, torch.randn(2, 3, 64, 64), loop)


# ------------------------------------------------------------------ (e) parameter count
def expected_swin_t_count(T=4, k=64, lam=2, ratio=0.25, hidden=128, E=512, norms=True,
                          task_kernels=False, per_vector=False, half_up=False):
    """method.md s. 8, from the layer scales: ONE generator sized for stage 1 (d = 96,
    n = 48, r = floor(n / 4) = 12): two decomposed generators k -> r (d + n), bias
    generators k -> n and k -> d, norm generators k -> d twice (each with its bias); T task
    embeddings and one layer embedding per layer per Kronecker term (sum_l s(l) = 46), each
    of E; ONE projector 2E -> hidden -> k and its LayerNorm; per layer with s > 1: s scaling
    kernels s x s and two vector kernels of s per term (biases; LayerNorm), shared by the
    tasks. Text-only forms: E = k/2, a vector kernel per generated vector (4), per-task
    kernels, half-up rank."""
    d, scales = 96, [1] * 2 + [2] * 2 + [4] * 6 + [8] * 2
    n = d // lam
    r = max(1, math.floor(n * ratio + (0.5 if half_up else 0)))
    vectors = (4 if norms else 2) if per_vector else (2 if norms else 1)
    K = T if task_kernels else 1
    total = (T + sum(scales)) * E
    total += (2 * E * hidden + hidden) + (hidden * k + k) + 2 * k
    total += (k + 1) * (2 * r * (d + n) + n + d + (2 * d if norms else 0))
    total += K * sum(s ** 3 + vectors * s * s for s in scales if s > 1)
    if not norms:  # plain per-task LayerNorm per adapter, width s d
        total += T * sum(2 * s * d for s in scales)
    return total


def swin_t_count(cfg):
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T, tasks=TASKS,
                              tuner=dict(type='PolyhistorLite', **cfg)))
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('k, paper', [(64, 413_552), (16, 225_248), (32, 288_016)])
def test_swin_t_count_is_the_papers(k, paper):
    # Table 1 (0.41M) and Table 2's task-embedding sizes (0.23 / 0.29M)
    model, count = swin_t_count(dict(task_embed_dim=k))
    assert expected_swin_t_count(k=k) == paper
    assert count == paper
    assert model.tuner.template_rank == 12 and model.tuner.layer_embed.shape == (46, 512)


@pytest.mark.parametrize('cfg', [
    dict(embed_dim=None),
    dict(task_specific_kernels=True),
    dict(per_vector_kernels=True),
    dict(rank_ratio=0.3, rank_rounding='half_up'),  # n 48: 14.4 either way -> 14
    dict(generate_norms=False),
    dict(generate_norms=False, per_vector_kernels=True),
    OLD_FORM,
])
def test_swin_t_count_of_the_other_forms(cfg):
    _, count = swin_t_count(cfg)
    k = 64
    expected = expected_swin_t_count(
        k=k, E=k // 2 if 'embed_dim' in cfg else 512, ratio=cfg.get('rank_ratio', 0.25),
        norms=cfg.get('generate_norms', True),
        task_kernels=cfg.get('task_specific_kernels', False),
        per_vector=cfg.get('per_vector_kernels', False),
        half_up=cfg.get('rank_rounding') == 'half_up')
    assert count == expected
    if cfg == OLD_FORM:
        assert count == 274_192  # the pre-change default


# ------------------------------------------------------------------ templates and kernels
def test_templates_have_rank_at_most_r():
    model = build(tasks=TASKS[:2], reduction=2, rank=3, init_std=1.0)  # d 16, n 8, r 3
    tpl = model.tuner.generate_templates()
    assert tpl['down'].shape == (2, 2 * 1 + 2 * 2 + 2 * 4 + 2 * 8, 16, 8)
    ranks = torch.linalg.matrix_rank(tpl['down'])
    assert (ranks == 3).all() and (torch.linalg.matrix_rank(tpl['up']) == 3).all()


@pytest.mark.parametrize('cfg', [dict(), OLD_FORM])
def test_expanded_weights_equal_explicit_kron_loop(cfg):
    model = build(tasks=TASKS[:2], init_std=0.5, **cfg)
    assert model.tuner.vector_kernels['s2'].shape[2] == (4 if cfg else 2)
    tuner = model.tuner
    tpl = tuner.generate_templates()
    weights = tuner.generate_weights()
    d, n = 16, 8
    for layer in tuner.layers:
        s, w = layer.scale, weights[('mlp', layer.index)]
        g, j, rows = tuner.locate('mlp', layer.index)
        assert w.down.shape == (2, d * s, n * s) and w.up.shape == (2, n * s, d * s)
        assert w.down_bias.shape == (2, n * s) and w.norm_weight.shape == (2, d * s)
        for t in range(2):
            if s == 1:  # stage 1 uses the template directly
                torch.testing.assert_close(w.down[t], tpl['down'][t, rows][0])
                torch.testing.assert_close(w.up_bias[t], tpl['up_bias'][t, rows][0])
                continue
            K = t if tuner.task_specific_kernels else 0
            alpha = tuner.scale_kernels[f's{s}'][K, j]
            torch.testing.assert_close(w.down[t], explicit_kron_sum(tpl['down'][t, rows], alpha))
            torch.testing.assert_close(w.up[t], explicit_kron_sum(tpl['up'][t, rows], alpha))
            for name in tuner.vector_names:
                # one kernel for both biases, one for the LayerNorm (per vector: its own)
                v = tuner.vector_kernel_of[name]
                beta = tuner.vector_kernels[f's{s}'][K, j, v]  # (s terms, s)
                torch.testing.assert_close(
                    getattr(w, name)[t], explicit_kron_sum(tpl[name][t, rows], beta))


def test_one_task_and_unit_scales_reduce_to_a_shared_decomposed_hypernetwork():
    d, lam, r, k = 12, 3, 2, 8
    n = d // lam
    layers = [LayerInfo(index=i, stage=0, index_in_stage=i, dim=d, num_heads=1,
                        mlp_hidden=4 * d, scale=1, name=f'l{i}') for i in range(3)]
    torch.manual_seed(0)
    tuner = MODELS.build(
        dict(type='PolyhistorLite', reduction=lam, rank=r, task_embed_dim=k,
             projector_hidden=16, init_std=0.3),
        default_args=dict(layers=layers, tasks=('semseg', ))).double()  # exact oracle
    assert len(tuner.scale_kernels) == 0 and tuner.layer_embed.shape == (3, 512)
    with torch.no_grad():
        tuner.projector.norm.weight.normal_()
        tuner.generator.bias.normal_()
    weights = tuner.generate_weights()

    pj, gen = tuner.projector, tuner.generator
    for i in range(3):
        e = torch.cat([tuner.task_embed[0], tuner.layer_embed[i]])  # [V~^t ; V~_l]
        c = plain_projector(pj, e)
        out = gen.weight @ c + gen.bias
        p_d, q_d, p_u, q_u, b_d, b_u, ln_w, ln_b = out.split(
            [d * r, r * n, n * r, r * d, n, d, d, d])
        w = weights[('mlp', i)]
        expected = dict(down=p_d.view(d, r) @ q_d.view(r, n), up=p_u.view(n, r) @ q_u.view(r, d),
                        down_bias=b_d, up_bias=b_u, norm_weight=ln_w, norm_bias=ln_b)
        for name, value in expected.items():
            torch.testing.assert_close(getattr(w, name)[0], value, **helpers.EXACT)


def test_one_generator_call_over_all_tasks_and_terms():
    model = build(tasks=TASKS)
    model.train()
    calls = []
    model.tuner.generator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    model(torch.randn(2, 3, 64, 64))
    assert calls == [torch.Size([4, 30, 16])]  # T x sum_l s(l) conditioning vectors of k


def test_layer_width_must_be_scale_times_stage1_width():
    layers = [LayerInfo(index=0, stage=0, index_in_stage=0, dim=16, num_heads=1,
                        mlp_hidden=64, scale=1, name='a'),
              LayerInfo(index=1, stage=1, index_in_stage=0, dim=24, num_heads=1,
                        mlp_hidden=96, scale=2, name='b')]
    with pytest.raises(ValueError, match='scale'):
        MODELS.build(dict(type='PolyhistorLite'), default_args=dict(layers=layers))
    with pytest.raises(ValueError, match='even'):
        MODELS.build(dict(type='PolyhistorLite', task_embed_dim=15, embed_dim=None),
                     default_args=dict(layers=layers[:1]))
    MODELS.build(dict(type='PolyhistorLite', task_embed_dim=15),  # E = 512: any k
                 default_args=dict(layers=layers[:1]))


# ------------------------------------------------------------------ eval-mode cache
def test_eval_cache_is_reused_and_refreshed():
    model = build()
    tuner = model.tuner
    x = torch.randn(1, 3, 64, 64)

    def same(a, b):
        return all(torch.equal(getattr(a[key], f), getattr(b[key], f))
                   for key in a for f in ('down', 'up', 'up_bias', 'norm_bias'))

    with torch.no_grad():
        model(x)
        cached = tuner.current_weights()
        assert tuner.current_weights() is cached
        assert same(cached, tuner.generate_weights())
    # an optimiser step on the scaling kernels alone refreshes it, and so does load_state_dict
    assert_step_and_load_refresh_the_cache(model, [tuner.scale_kernels['s4']], x, cached, same,
                                           build)


# ------------------------------------------------------------------ old checkpoints
def test_old_form_keys_rebuild_the_pre_change_layout():
    assert layout_digest(dict(type='PolyhistorLite', **OLD_FORM)) == ('c85ce9ed467170a5',
                                                                      31_288)


def test_old_checkpoint_does_not_load_into_the_new_default():
    assert_old_checkpoint_refused('PolyhistorLite', OLD_FORM)
