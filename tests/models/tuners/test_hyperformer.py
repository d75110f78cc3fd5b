"""Hyperformer (method.md sections 3 and 8): generated adapters against eq. (2) written out,
the authors' form's counts, its start as the frozen backbone, and the text-only forms."""
from unittest import mock

import pytest
import torch
from mmengine.config import Config

from mmseg.registry import MODELS
from . import helpers
from .helpers import SWIN_T, SWIN_T_WIDTHS
from .hypernet_helpers import (assert_every_parameter_gets_a_gradient,
                               assert_init_equals_frozen, assert_old_checkpoint_refused,
                               check_branches, layout_digest, plain_projector,
                               wake_norm_generators)

TASKS = ('semseg', 'human_parts')
ALL_TASKS = ('semseg', 'human_parts', 'sal', 'normals')
CFG = dict(type='Hyperformer')
#: the pre-change default (the text's form): rebuilds its layout and count
OLD_FORM = dict(adapter_norm='pre', per_layer_projector=False, embed_dim=None,
                projector_norm=False)


def build(seed=0, task_batching='stacked', wake=True, **tuner):
    model = helpers.build(dict(CFG, **tuner), TASKS, seed=seed, perturb=None,
                          task_batching=task_batching)
    if wake:
        wake_norm_generators(model.tuner)
    return model


def plain_generator_rows(tuner, site, layer):
    """The generator of one adapter as (weight, bias) blocks, in the order of the method's
    description: W_hat (2dn outputs, reshaped row-major to d x 2n), b_down (n), b_up (d),
    LayerNorm weight (d) and bias (d)."""
    d, n = layer.dim, tuner.hidden(layer)
    gen = tuner.generators[f'{site}_{layer.index}']
    sizes = [d * 2 * n, n, d, d, d]
    return list(zip(gen.weight.split(sizes), gen.bias.split(sizes))), d, n


def hyperformer_oracle(tuner, site, layer, t):
    pos = tuner.layers.index(layer) if tuner.per_layer_projector else None
    c = plain_projector(tuner.projector, tuner.task_embed[t], pos)
    blocks, d, n = plain_generator_rows(tuner, site, layer)
    w, down_b, up_b, ln_w, ln_b = [weight @ c + bias for weight, bias in blocks]
    w = w.reshape(d, 2 * n)  # psi: W = [W_down ; W_up^T] in R^(d x 2n)
    return ln_w, ln_b, w[:, :n], down_b, w[:, n:].T, up_b


@pytest.mark.parametrize('cfg', [
    dict(),  # the authors' form: post-norm, per-layer projectors, E = 512
    dict(position='parallel_mlp', reduction=4),
    dict(adapter_norm='pre'),
    OLD_FORM,
])
def test_generated_adapters_match_eq2(cfg):
    check_branches(build(**cfg).tuner, hyperformer_oracle, len(TASKS))


# ------------------------------------------------------------------ initialisation
@pytest.mark.parametrize('backbone', ['PolyhistorSwin', 'PolyhistorPVT'])
def test_init_equals_frozen_backbone(backbone):
    # the post-norm LayerNorm's generators start at zero: every adapter outputs exactly 0
    assert_init_equals_frozen(backbone, CFG)


def test_init_generates_zero_norms_and_small_weights():
    tuner = build(wake=False).tuner
    for w in tuner.generate_weights().values():
        assert not w.norm_weight.any() and not w.norm_bias.any()
        assert 0 < w.down.abs().max() < 1  # normal(0, 1e-2) generators: small, not zero


def test_every_parameter_gets_a_gradient_at_init():
    assert_every_parameter_gets_a_gradient(build(wake=False))


def test_pre_norm_form_starts_near_the_frozen_one():
    # pre-norm: the generated LayerNorm weight starts near 1 and W_up small but non-zero
    model = build(wake=False, adapter_norm='pre')
    weights = model.tuner.generate_weights()
    norm_w = torch.cat([w.norm_weight.flatten() for w in weights.values()])
    assert norm_w.mean().item() == pytest.approx(1.0, abs=0.05)
    ref = helpers.frozen_copy(model, TASKS)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(x)[0][:2], ref(x)[0])


# ------------------------------------------------------------------ training behaviour
def test_one_step_changes_only_tuner():
    helpers.assert_adam_step_changes_only_the_tuner(build())


def test_task_isolation():
    # the task embeddings are the only task-specific parameters
    model = build()
    helpers.assert_task_1_moves_alone(model, [model.tuner.task_embed])


@pytest.mark.parametrize('cfg', [dict(), OLD_FORM])
def test_stacked_equals_loop(cfg):
    model = build(**cfg)
    helpers.assert_stacked_equals_loop(model, torch.randn(2, 3, 64, 64),
                                       build(task_batching='loop', **cfg))


@pytest.mark.parametrize('batching', ['stacked', 'loop'])
def test_weights_generated_once_per_forward(batching):
    model = build(task_batching=batching)
    model.train()
    tuner = model.tuner
    x = torch.randn(2, 3, 64, 64)
    with mock.patch.object(tuner, 'generate_weights', wraps=tuner.generate_weights) as gen:
        model(x)
        assert gen.call_count == 1
        model.eval()
        with torch.no_grad():
            model(x)
            model(x)  # eval without grad: the constants are cached
        assert gen.call_count == 2
    # the L projectors run as one stack: one call for all layers and tasks
    calls = []
    tuner.projector.fc1.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    weights = tuner.generate_weights()
    assert calls == [torch.Size([len(tuner.layers), len(TASKS), 128])]
    assert len(weights) == 2 * len(tuner.layers)
    assert all(w.down.shape[0] == len(TASKS) for w in weights.values())


# ------------------------------------------------------------------ Swin-T budget (s. 8)
def section8_count(widths, lam, adapters_per_layer, T=4, E=512, k=64, hidden=128,
                   per_layer_projector=True, projector_norm=True):
    """method.md s. 8: T task embeddings of E; a projector E -> hidden -> k (+ LayerNorm k)
    per layer (or one); per adapter, linear generators (k + 1) x (W: 2dn, b_down: n,
    b_up: d, LayerNorm weight and bias: 2d)."""
    projector = (E * hidden + hidden) + (hidden * k + k) + (2 * k if projector_norm else 0)
    total = T * E + (0 if per_layer_projector else projector)
    for d in widths:
        n = d // lam
        total += projector if per_layer_projector else 0
        total += adapters_per_layer * (k + 1) * (2 * d * n + n + d + 2 * d)
    return total


def swin_t_trainable(cfg):
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=ALL_TASKS, tuner=cfg, **SWIN_T))
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == sum(p.numel() for p in model.tuner.parameters())
    return count


@pytest.mark.parametrize('lam, paper', [(8, 72_772_304), (16, 37_692_584),
                                        (32, 20_152_724)])
def test_swin_t_count_is_the_papers(lam, paper):
    assert (512 * 128 + 128) + (128 * 64 + 64) + 2 * 64 == 74_048  # one projector
    expected = section8_count(SWIN_T_WIDTHS, lam, adapters_per_layer=2)
    assert expected == paper  # Table 1 (72.77M) and the lambda sweep (37.69 / 20.15M)
    assert swin_t_trainable(dict(CFG, reduction=lam)) == expected


def test_one_mlp_adapter_count_and_text_only_form():
    assert swin_t_trainable(dict(CFG, reduction=16, position='after_mlp')) == section8_count(
        SWIN_T_WIDTHS, 16, adapters_per_layer=1)
    # the pre-change default: k-wide embeddings, one projector without LayerNorm
    old = swin_t_trainable(dict(CFG, **OLD_FORM))
    assert old == section8_count(SWIN_T_WIDTHS, 8, 2, E=64, per_layer_projector=False,
                                 projector_norm=False) == 71_898_512


@pytest.mark.parametrize('backbone', ['swin-t', 'swin-b', 'swin-b-in22k', 'pvt-s', 'moby-t'])
def test_per_backbone_configs(backbone):
    # the paper's rows: Swin-T two adapters at lambda 8, the others one MLP-side at 16
    tuner = Config.fromfile(f'configs/hyperformer_{backbone}.py').model.backbone.tuner
    expected = (8, 'after_attn_and_mlp') if backbone == 'swin-t' else (16, 'after_mlp')
    assert (tuner.reduction, tuner.position) == expected


# ------------------------------------------------------------------ old checkpoints
def test_old_form_keys_rebuild_the_pre_change_layout():
    assert layout_digest(dict(CFG, **OLD_FORM)) == ('75146da1b956ffed', 1_626_104)


def test_old_checkpoint_does_not_load_into_the_new_default():
    assert_old_checkpoint_refused('Hyperformer', OLD_FORM)
