"""PHM layer, Compacter, Compacter++: Kronecker-sum adapters against torch.kron written out."""
import pytest
import torch

from .test_adapter import (SWIN_T_WIDTHS, build, check_branches_against_eq1,
                           check_old_checkpoint_refused,
                           check_init_equals_frozen, check_one_step_trains_only_tuner,
                           check_stacked_equals_loop, check_task_isolation, swin_t_trainable)


def phm_oracle(tuner, site, layer, t):
    """W = sum_i A_i (x) B_i with B_i = u_i v_i^T when factorised, one task at a time."""
    a = tuner.adapters[f'{site}_{layer.index}']
    rule = tuner.phm_rule[t]
    k = rule.shape[0]
    if tuner.factorized:
        down_fast = [torch.outer(a.down_left[t, i], a.down_right[t, i]) for i in range(k)]
        up_fast = [torch.outer(a.up_left[t, i], a.up_right[t, i]) for i in range(k)]
    else:
        down_fast, up_fast = a.down[t], a.up[t]
    down = sum(torch.kron(rule[i], down_fast[i]) for i in range(k))
    up = sum(torch.kron(rule[i], up_fast[i]) for i in range(k))
    return a.norm_weight[t], a.norm_bias[t], down, a.down_bias[t], up, a.up_bias[t]


CASES = {
    # the tiny Swin's stage 1 (d = 16) needs n = 16 / lambda divisible by k (2 by default)
    'PHMAdapter': dict(type='PHMAdapter', reduction=8),
    # the text's form: two adapters per layer, k = 4
    'PHMAdapter-k4-houlsby': dict(type='PHMAdapter', phm_dim=4, reduction=4,
                                  position='after_attn_and_mlp'),
    'Compacter': dict(type='Compacter'),
    'CompacterPP': dict(type='CompacterPP'),
    'PHMAdapter-k2-parallel': dict(type='PHMAdapter', phm_dim=2, reduction=4,
                                   position='parallel_mlp'),
}


def task_params(tuner):
    return [p for p in tuner.parameters() if p.shape[0] == tuner.num_tasks]


@pytest.mark.parametrize('name', list(CASES))
def test_init_equals_frozen_backbone(name):
    check_init_equals_frozen(CASES[name])


@pytest.mark.parametrize('name', list(CASES))
def test_branches_match_kron_oracle(name):
    check_branches_against_eq1(CASES[name], phm_oracle)


@pytest.mark.parametrize('name', ['PHMAdapter', 'Compacter'])
def test_one_step_changes_only_tuner(name):
    changed = check_one_step_trains_only_tuner(CASES[name])
    # W_up = 0 at init: step one moves the up-projection's fast weights and bias only
    assert all(n.rsplit('.', 1)[1] in ('up', 'up_bias', 'up_right') for n in changed)


@pytest.mark.parametrize('name', ['PHMAdapter', 'CompacterPP'])
def test_task_isolation(name):
    check_task_isolation(CASES[name], task_params)


def test_rule_is_shared_by_layers_and_per_task():
    tuner = build(CASES['Compacter']).tuner
    k = tuner.phm_dim
    assert tuner.phm_rule.shape == (tuner.num_tasks, k, k, k)
    # one rule: changing it changes the weights of every adapter
    sites = tuner.adapter_sites()
    before = [tuner.adapter_weights(layer, site).down.clone() for site, layer in sites]
    with torch.no_grad():
        tuner.phm_rule[1].add_(1.0)
    for (site, layer), down in zip(sites, before):
        after = tuner.adapter_weights(layer, site).down
        assert torch.equal(after[0], down[0]) and not torch.allclose(after[1], down[1])


@pytest.mark.parametrize('name', ['Compacter', 'PHMAdapter', 'PHMAdapter-k2-parallel'])
def test_stacked_equals_loop(name):
    check_stacked_equals_loop(CASES[name])


def test_phm_dim_must_divide_widths():
    # tiny Swin, stage 1: d = 16, n = 16 / 8 = 2, not divisible by k = 4
    with pytest.raises(ValueError, match='phm_dim=4 must divide'):
        build(dict(type='PHMAdapter', reduction=8, phm_dim=4))
    # the default lambda = 16: n = 1, not divisible by k = 2
    with pytest.raises(ValueError, match='phm_dim=2 must divide'):
        build(dict(type='PHMAdapter'))


def test_defaults():
    tuner = build(CASES['PHMAdapter']).tuner
    assert (tuner.phm_dim, tuner.position, tuner.factorized) == (2, 'after_mlp', False)
    assert PHM_DEFAULTS == dict(reduction=16, phm_dim=2, position='after_mlp')
    assert tuner.phm_rule.shape == (2, 2, 2, 2)  # per-task rule matrices
    assert set(tuner.adapters) == {f'mlp_{i}' for i in range(8)}  # one adapter per layer
    compacter, compacter_pp = build(CASES['Compacter']).tuner, build(CASES['CompacterPP']).tuner
    assert (compacter.phm_dim, compacter.position, compacter.reduction) == (
        4, 'after_attn_and_mlp', 2)
    assert (compacter_pp.phm_dim, compacter_pp.position, compacter_pp.reduction) == (
        2, 'after_mlp', 2)


# ------------------------------------------------------------------ Swin-T budgets (Table 1)
#: the PHM layer's defaults (method.md section 8)
PHM_DEFAULTS = dict(reduction=16, phm_dim=2, position='after_mlp')


def phm_count(reduction, sites, factorized, k, widths=SWIN_T_WIDTHS, tasks=4):
    """Per task: the rule (k^3) + per adapter LayerNorm 2d, biases n + d and the fast
    weights: k (d/k)(n/k) per projection (2dn / k), or k (d/k + n/k) = d + n when
    factorised."""
    total = 0
    for d in widths:
        n = d // reduction
        fast = 2 * (d + n) if factorized else 2 * d * n // k
        total += sites * (2 * d + n + d + fast)
    return tasks * (k**3 + total)


def test_phm_count_swin_t():
    # authors' form: one adapter per layer, lambda 16, k = 2, per-task rules:
    # per layer and task 3d + d/16 + d^2/16, plus 2^3 per task
    expected = phm_count(reduction=16, sites=1, factorized=False, k=2)
    assert expected == 4 * (3.0625 * 4416 + 2156544 / 16 + 8) == 593_264
    assert swin_t_trainable(dict(type='PHMAdapter')) == expected
    assert round(expected / 1e6, 2) == 0.59  # Table 1
    # the text's two adapters per layer (k = 4, lambda 8): twice the paper's figure
    text = phm_count(reduction=8, sites=2, factorized=False, k=4)
    assert text == 1_188_928
    assert swin_t_trainable(dict(type='PHMAdapter', phm_dim=4, reduction=8,
                                 position='after_attn_and_mlp')) == text


def test_compacter_count_swin_t():
    expected = phm_count(reduction=2, sites=2, factorized=True, k=4)
    assert expected == 4 * (64 + 2 * 6.5 * 4416) == 229_888
    assert swin_t_trainable(CASES['Compacter']) == expected
    assert round(expected / 1e6, 2) == 0.23  # Table 1


def test_compacter_pp_count_swin_t():
    # one adapter (6.5 d) per layer and task, k = 2: 4 x (2^3 + 6.5 x 4,416)
    expected = phm_count(reduction=2, sites=1, factorized=True, k=2)
    assert expected == 4 * (8 + 6.5 * 4416) == 114_848
    assert swin_t_trainable(CASES['CompacterPP']) == expected
    assert round(expected / 1e6, 2) == 0.11  # Table 1
    # the text's k = 4 rounds to 0.12
    k4 = phm_count(reduction=2, sites=1, factorized=True, k=4)
    assert k4 == 115_072 and swin_t_trainable(dict(type='CompacterPP', phm_dim=4)) == k4


def test_per_backbone_configs():
    """PHM / Compacter / Compacter++ configs on every backbone build, with the formula's
    count."""
    from mmengine.config import Config
    from mmpoly.utils.param_count import build_model_without_weights, count_parameters
    swin_b = [128] * 2 + [256] * 2 + [512] * 18 + [1024] * 2
    pvt_s = [64] * 3 + [128] * 4 + [320] * 6 + [512] * 3
    widths = {'swin-t': SWIN_T_WIDTHS, 'moby-t': SWIN_T_WIDTHS, 'swin-b': swin_b,
              'swin-b-in22k': swin_b, 'pvt-s': pvt_s}
    forms = {'phm': (16, 1, False, 2), 'compacter': (2, 2, True, 4),
             'compacter_pp': (2, 1, True, 2)}
    for backbone, w in widths.items():
        for method, (lam, sites, factorized, k) in forms.items():
            model = build_model_without_weights(Config.fromfile(
                f'configs/{method}_{backbone}.py'))
            assert count_parameters(model)['encoder'] == phm_count(
                lam, sites, factorized, k, w), (method, backbone)


@pytest.mark.parametrize('tuner_type,old_keys', [
    ('PHMAdapter', dict(phm_dim=4, reduction=8, position='after_attn_and_mlp')),
    ('CompacterPP', dict(phm_dim=4)),
])
def test_old_checkpoint_does_not_load_into_the_new_default(tuner_type, old_keys):
    check_old_checkpoint_refused(tuner_type, old_keys)
