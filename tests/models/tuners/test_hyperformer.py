"""Hyperformer: generated adapters against eq. (2) written out, one task at a time."""
from unittest import mock

import pytest
import torch

from .test_adapter import (SWIN_T_WIDTHS, TASKS, build, check_branches_against_eq1,
                           check_init_equals_frozen, check_one_step_trains_only_tuner,
                           check_stacked_equals_loop, check_task_isolation, frozen_copy,
                           images, run, swin_t_trainable, task_rows)

CFG = dict(type='Hyperformer')


def plain_generator_rows(tuner, site, layer):
    """The generator of one adapter as (weight, bias) blocks, in the order of the method's
    description: W_hat (2dn outputs, reshaped row-major to d x 2n), b_down (n), b_up (d),
    LayerNorm weight (d) and bias (d)."""
    d, n = layer.dim, tuner.hidden(layer)
    gen = tuner.generators[f'{site}_{layer.index}']
    sizes = [d * 2 * n, n, d, d, d]
    return list(zip(gen.weight.split(sizes), gen.bias.split(sizes))), d, n


def hyperformer_oracle(tuner, site, layer, t):
    fc1, fc2 = tuner.projector.fc1, tuner.projector.fc2
    c = fc2.weight @ torch.relu(fc1.weight @ tuner.task_embed[t] + fc1.bias) + fc2.bias
    blocks, d, n = plain_generator_rows(tuner, site, layer)
    w, down_b, up_b, ln_w, ln_b = [weight @ c + bias for weight, bias in blocks]
    w = w.reshape(d, 2 * n)  # psi: W = [W_down ; W_up^T] in R^(d x 2n)
    return ln_w, ln_b, w[:, :n], down_b, w[:, n:].T, up_b


def test_generated_adapters_match_eq2_at_init():
    check_branches_against_eq1(CFG, hyperformer_oracle, randomize=False)


def test_generated_adapters_match_eq2():
    check_branches_against_eq1(CFG, hyperformer_oracle)
    check_branches_against_eq1(dict(CFG, position='parallel_mlp', reduction=4),
                               hyperformer_oracle)


def test_init_near_frozen_and_equal_without_up_generator():
    # by definition the generated W_up starts small but non-zero, so the tuned backbone
    # differs from the frozen one (test_generated_adapters_match_eq2_at_init checks by how much)
    model = build(CFG)
    x = images()
    ours, ref = run(model, x), run(frozen_copy(model), x)
    for t in range(len(TASKS)):
        for a, b in zip(task_rows(ours, t), ref):
            assert not torch.allclose(a, b)
    # zero the generators of W_up and b_up: the adapters output exactly 0
    with torch.no_grad():
        for site, layer in model.tuner.adapter_sites():
            blocks, d, n = plain_generator_rows(model.tuner, site, layer)
            (w, wb), _, (ub_w, ub_b) = blocks[:3]
            w.view(d, 2 * n, -1)[:, n:] = 0
            wb.view(d, 2 * n)[:, n:] = 0
            ub_w.zero_()
            ub_b.zero_()
    ours = run(model, x)
    for t in range(len(TASKS)):
        for a, b in zip(task_rows(ours, t), ref):
            torch.testing.assert_close(a, b)


def test_zero_generators_give_frozen_backbone():
    # init_std = 0: every generated weight and bias is 0 (the LayerNorm weight 1)
    check_init_equals_frozen(dict(CFG, init_std=0.0))


def test_one_step_changes_only_tuner():
    changed = check_one_step_trains_only_tuner(CFG)
    assert 'tuner.task_embed' in changed
    assert any(n.startswith('tuner.generators.') for n in changed)


def test_task_isolation():
    # the task embeddings are the only task-specific parameters
    check_task_isolation(CFG, lambda tuner: [tuner.task_embed])


def test_stacked_equals_loop():
    check_stacked_equals_loop(CFG)


@pytest.mark.parametrize('batching', ['stacked', 'loop'])
def test_weights_generated_once_per_forward(batching):
    model = build(CFG, task_batching=batching)
    model.train()
    tuner = model.tuner
    with mock.patch.object(tuner, 'generate_weights', wraps=tuner.generate_weights) as gen:
        model(images())
        assert gen.call_count == 1
        model.eval()
        with torch.no_grad():
            model(images())
            model(images())  # eval without grad: the constants are cached
        assert gen.call_count == 2
    # one matmul per adapter over the T task embeddings: a (T, ...) tensor per adapter
    weights = tuner.generate_weights()
    assert len(weights) == 2 * len(tuner.layers)
    assert all(w.down.shape[0] == len(TASKS) for w in weights.values())


# ------------------------------------------------------------------ Swin-T budget (Table 1)
def test_hyperformer_count_swin_t():
    k, hidden, tasks = 64, 128, 4
    per_adapter = 0
    for d in SWIN_T_WIDTHS:
        n = d // 8
        # linear generators (weight k x out + bias out): W (2dn), b_down (n), b_up (d),
        # LayerNorm weight and bias (d, d)
        per_adapter += (k + 1) * (2 * d * n + n + d + 2 * d)
    projector = (k * hidden + hidden) + (hidden * k + k)
    expected = 2 * per_adapter + tasks * k + projector  # after attention and after the MLP
    assert expected == 71_898_512
    assert swin_t_trainable(CFG) == expected
    assert abs(expected / 72.77e6 - 1) < 0.015  # Table 1: 72.77M
