"""Adapter, Low-rank adapter, Shared Adapter; and the checks every adapter-style tuner shares.

The ``check_*`` helpers (also used by test_phm.py and test_hyperformer.py) compare a tuned
tiny Swin against the frozen one, against the per-task loop, and each adapter branch against
eq. (1) computed plainly from the oracle weights a test writes for its method.
"""
import pytest
import torch

from mmseg.registry import MODELS
from . import helpers
from .helpers import B, SWIN_T, SWIN_T_WIDTHS
from .helpers import rows as task_rows
from .hypernet_helpers import check_branches

TASKS = ('semseg', 'normals')  # two tasks keep the tiny checks fast
ALL_TASKS = ('semseg', 'human_parts', 'sal', 'normals')  # the paper's four, for budgets
# the sums the Swin-T counts below are written with
assert sum(SWIN_T_WIDTHS) == 4416 and sum(d * d for d in SWIN_T_WIDTHS) == 2156544


# ------------------------------------------------------------------ shared helpers
def build(tuner, tasks=TASKS, **kwargs):
    return helpers.build(tuner, tasks, perturb=None, **kwargs)


def images(seed=1):
    return torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run(model, x):
    return model(x)


@torch.no_grad()
def randomize_(module, std=0.2, seed=2):
    """Move every parameter away from its init (W_up = 0 would hide the adapters)."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(torch.randn(p.shape, generator=g) * std)


def frozen_copy(model, tasks=TASKS):
    """The same backbone weights with no tuner (and none missing)."""
    return helpers.frozen_copy(model, tasks, check_missing=True)


def check_init_equals_frozen(cfg):
    model = build(cfg)
    x = images()
    ours, ref = run(model, x), run(frozen_copy(model), x)
    assert ours[0].shape[0] == len(TASKS) * B
    for t in range(len(TASKS)):
        for a, b in zip(task_rows(ours, t), ref):
            torch.testing.assert_close(a, b)


def check_one_step_trains_only_tuner(cfg):
    model = build(cfg)
    model.train()
    tuner_names = {f'tuner.{n}' for n, _ in model.tuner.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert set(trainable) == tuner_names
    params = dict(model.named_parameters())
    opt = torch.optim.SGD([params[n] for n in trainable], lr=0.1)
    loss = sum((o**2).mean() for o in model(images()))
    loss.backward()
    opt.step()
    changed = set()
    for n, p in model.named_parameters():
        if n in tuner_names:
            if not torch.equal(p, before[n]):
                changed.add(n)
            elif p.grad is not None:
                assert p.grad.abs().max() == 0, f'{n} has a gradient but did not change'
        else:
            assert p.grad is None and torch.equal(p, before[n]), n
    assert changed
    return changed


def check_task_isolation(cfg, task_params, u=1):
    """Perturb task u's rows of ``task_params(tuner)``: only task u's features move."""
    model = build(cfg).double()  # float64: the untouched tasks' rows equal to 1e-10
    randomize_(model.tuner)
    x = images().double()
    before = run(model, x)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in task_params(model.tuner):
            p[u].add_(torch.randn(p[u].shape, generator=g) * 0.5)
    after = run(model, x)
    for t in range(len(TASKS)):
        for a, b in zip(task_rows(before, t), task_rows(after, t)):
            if t == u:
                assert (a - b).abs().max() > 1e-4
            else:
                torch.testing.assert_close(a, b, **helpers.EXACT)


def check_stacked_equals_loop(cfg):
    model = build(cfg)
    randomize_(model.tuner)
    loop = build(cfg, task_batching='loop')
    loop.load_state_dict(model.state_dict())
    x = images()
    for a, b in zip(run(model, x), run(loop, x)):
        assert a.shape == (len(TASKS) * B, ) + b.shape[1:]
        torch.testing.assert_close(a, b)


def check_branches_against_eq1(cfg, oracle, randomize=True):
    """Every hook of every layer against eq. (1) written plainly, one task at a time.

    ``oracle(tuner, site, layer, t)`` -> (LayerNorm weight, LayerNorm bias, W_down, b_down,
    W_up, b_up) of task t, computed plainly from the method's parameters.
    """
    tuner = build(cfg).tuner
    if randomize:
        randomize_(tuner)
    check_branches(tuner, oracle, len(TASKS))


def swin_t_trainable(cfg, tasks=ALL_TASKS):
    """Trainable parameters of the full Swin-T with ``cfg`` (all of them in the tuner)."""
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=tasks, tuner=cfg, **SWIN_T))
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == sum(p.numel() for p in model.tuner.parameters())
    return count


def check_old_checkpoint_refused(tuner_type, old_keys, tasks=TASKS):
    """A checkpoint of the pre-change default (rebuilt by ``old_keys``) does not fit the new
    default: the checkpoint loader's check raises CheckpointMismatchError naming tuner keys
    and a strict load fails (no partial load); it fits the model ``old_keys`` build. On the
    tiny Swin at width 32 (every old and new form's PHM dimension divides its widths)."""
    from mmpoly.checkpoint.adapter import CheckpointMismatchError, check_fits

    def on_swin(tuner, seed):
        torch.manual_seed(seed)
        cfg = dict(helpers.TINY, embed_dims=32)
        model = MODELS.build(dict(type='PolyhistorSwin', tasks=tasks, tuner=tuner, **cfg))
        model.init_weights()
        return model

    old = on_swin(dict(type=tuner_type, **old_keys), 0)
    checkpoint = {'state_dict': old.state_dict()}
    new = on_swin(dict(type=tuner_type), 1)
    with pytest.raises(CheckpointMismatchError, match='tuner.'):
        check_fits(new, checkpoint, 'old.pth')
    with pytest.raises(RuntimeError):
        new.load_state_dict(checkpoint['state_dict'])
    again = on_swin(dict(type=tuner_type, **old_keys), 1)
    check_fits(again, checkpoint, 'old.pth')
    again.load_state_dict(checkpoint['state_dict'])


# ------------------------------------------------------------------ oracles
def adapter_oracle(tuner, site, layer, t):
    a = tuner.adapters[f'{site}_{layer.index}']
    return a.norm_weight[t], a.norm_bias[t], a.down[t], a.down_bias[t], a.up[t], a.up_bias[t]


def shared_oracle(tuner, site, layer, t):
    a = tuner.adapters[f'{site}_{layer.index}']  # weights and biases: one row for every task
    return a.norm_weight[t], a.norm_bias[t], a.down[0], a.down_bias[0], a.up[0], a.up_bias[0]


def low_rank_oracle(tuner, site, layer, t):
    a = tuner.adapters[f'{site}_{layer.index}']
    r = a.down_left.shape[-1]
    down = sum(torch.outer(a.down_left[t][:, j], a.down_right[t][j]) for j in range(r))
    up = sum(torch.outer(a.up_left[t][:, j], a.up_right[t][j]) for j in range(r))
    return a.norm_weight[t], a.norm_bias[t], down, a.down_bias[t], up, a.up_bias[t]


CASES = {
    'Adapter': (dict(type='Adapter'), adapter_oracle),
    'SharedAdapter': (dict(type='SharedAdapter'), shared_oracle),
    'LowRankAdapter': (dict(type='LowRankAdapter'), low_rank_oracle),
    'LowRankAdapter-r3-houlsby': (dict(type='LowRankAdapter', rank=3, reduction=4,
                                       position='after_attn_and_mlp'), low_rank_oracle),
    # the text-only form: rank-1 products beside the MLP
    'LowRankAdapter-r1-parallel': (dict(type='LowRankAdapter', rank=1,
                                        position='parallel_mlp'), low_rank_oracle),
    'Adapter-after-mlp': (dict(type='Adapter', reduction=8, position='after_mlp',
                               scale=0.5), adapter_oracle),
}


def task_rows_params(tuner):
    """Parameters with a task axis: all of them, except the Shared Adapter's shared ones."""
    return [p for p in tuner.parameters() if p.shape[0] == tuner.num_tasks]


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize('name', list(CASES))
def test_init_equals_frozen_backbone(name):
    check_init_equals_frozen(CASES[name][0])


@pytest.mark.parametrize('name', list(CASES))
def test_branches_match_eq1(name):
    cfg, oracle = CASES[name]
    check_branches_against_eq1(cfg, oracle)


@pytest.mark.parametrize('name', ['Adapter', 'SharedAdapter', 'LowRankAdapter'])
def test_one_step_changes_only_tuner(name):
    changed = check_one_step_trains_only_tuner(CASES[name][0])
    # W_up = 0 at init: only the up-projection (and its bias) get a gradient in step one
    assert all(n.rsplit('.', 1)[1] in ('up', 'up_bias', 'up_right') for n in changed)


@pytest.mark.parametrize('name', ['Adapter', 'SharedAdapter', 'LowRankAdapter'])
def test_task_isolation(name):
    check_task_isolation(CASES[name][0], task_rows_params)


def test_shared_adapter_shares_weights_not_norms():
    tuner = build(dict(type='SharedAdapter')).tuner
    for name, p in tuner.named_parameters():
        rows = len(TASKS) if name.rsplit('.', 1)[1].startswith('norm') else 1
        assert p.shape[0] == rows, name
    # a shared weight moves every task
    model = build(dict(type='SharedAdapter'))
    randomize_(model.tuner)
    x = images()
    before = run(model, x)
    with torch.no_grad():
        model.tuner.adapters['mlp_0'].up.add_(0.5)
    after = run(model, x)
    for t in range(len(TASKS)):
        assert (task_rows(before, t)[0] - task_rows(after, t)[0]).abs().max() > 1e-4


@pytest.mark.parametrize('name', ['Adapter', 'SharedAdapter', 'LowRankAdapter',
                                  'LowRankAdapter-r3-houlsby'])
def test_stacked_equals_loop(name):
    check_stacked_equals_loop(CASES[name][0])


def test_reduction_sets_hidden_width():
    tuner = build(dict(type='Adapter', reduction=8)).tuner
    assert [tuner.adapters[f'mlp_{i}'].down.shape for i in (0, 7)] == [(2, 16, 2),
                                                                       (2, 128, 16)]
    with pytest.raises(ValueError, match='rank'):
        build(dict(type='LowRankAdapter', rank=0))


# ------------------------------------------------------------------ Swin-T budgets (Table 1)
def test_adapter_count_swin_t():
    # per layer and task (lambda = 2, n = d/2): LayerNorm 2d + W_down d n + b_down n
    # + W_up n d + b_up d = d^2 + 3.5 d
    expected = 4 * sum(2 * d + d * (d // 2) + d // 2 + (d // 2) * d + d for d in SWIN_T_WIDTHS)
    assert expected == 4 * sum(d * d + 3.5 * d for d in SWIN_T_WIDTHS) == 8_688_000
    assert swin_t_trainable(dict(type='Adapter')) == expected
    assert round(expected / 1e6, 2) == 8.69  # Table 1
    # the lambda sweep: n = d / 4
    assert swin_t_trainable(dict(type='Adapter', reduction=4)) == 4 * sum(
        2 * d + 2 * d * (d // 4) + d // 4 + d for d in SWIN_T_WIDTHS)


def test_shared_adapter_count_swin_t():
    # one W_down, b_down, W_up, b_up per layer (d^2 + 1.5 d) + a LayerNorm (2d) per task
    expected = sum(d * d + 1.5 * d for d in SWIN_T_WIDTHS) + 4 * sum(2 * d for d in SWIN_T_WIDTHS)
    assert expected == 2_198_496
    assert swin_t_trainable(dict(type='SharedAdapter')) == expected
    assert round(expected / 1e6, 2) == 2.20  # Table 1


def test_low_rank_adapter_defaults():
    tuner = build(dict(type='LowRankAdapter')).tuner
    assert (tuner.rank, tuner.reduction, tuner.position) == (2, 2, 'after_attn_and_mlp')
    assert {k.split('_')[0] for k in tuner.adapters} == {'attn', 'mlp'}
    a = tuner.adapters['mlp_0']  # d = 16, n = 8, r = 2
    assert a.down_left.shape == (2, 16, 2) and a.down_right.shape == (2, 2, 8)
    assert a.up_left.shape == (2, 8, 2) and a.up_right.shape == (2, 2, 16)


def low_rank_count(rank, sites, reduction=2, widths=SWIN_T_WIDTHS, tasks=4):
    """Per adapter and task: LayerNorm 2d + biases n + d + rank (d + n) per projection."""
    return tasks * sites * sum(2 * d + d // reduction + d + 2 * rank * (d + d // reduction)
                               for d in widths)


def test_low_rank_adapter_count_swin_t():
    # authors' form (method.md section 8): rank 2, after attention and after the MLP,
    # lambda = 2: 2 x (2d + 1.5d + 2 x 2 x 1.5d) = 19 d per layer and task
    expected = low_rank_count(rank=2, sites=2)
    assert expected == 4 * 19 * 4416 == 335_616
    assert swin_t_trainable(dict(type='LowRankAdapter')) == expected
    assert round(expected / 1e6, 2) == 0.34  # Table 1
    # the text-only form: rank 1 beside the MLP, 6.5 d per layer and task (0.11M)
    text_form = low_rank_count(rank=1, sites=1)
    assert text_form == 4 * 6.5 * 4416 == 114_816
    assert swin_t_trainable(dict(type='LowRankAdapter', rank=1,
                                 position='parallel_mlp')) == text_form


def test_per_backbone_adapter_configs():
    """The paper's per-backbone lambda (method.md section 8): Adapter 16 on Swin-B, Swin-B-22k
    and PVT-S; Low-rank adapter 8 on PVT-S. Counts from the layer widths."""
    from mmengine.config import Config
    from mmpoly.utils.param_count import build_model_without_weights, count_parameters
    swin_b = [128] * 2 + [256] * 2 + [512] * 18 + [1024] * 2
    pvt_s = [64] * 3 + [128] * 4 + [320] * 6 + [512] * 3

    def adapter(widths, lam):  # LayerNorm 2d, W_down d n + n, W_up n d + d
        return 4 * sum(2 * d + 2 * d * (d // lam) + d // lam + d for d in widths)

    expected = {
        'adapter_swin-t': adapter(SWIN_T_WIDTHS, 2),
        'adapter_moby-t': adapter(SWIN_T_WIDTHS, 2),
        'adapter_swin-b': adapter(swin_b, 16),
        'adapter_swin-b-in22k': adapter(swin_b, 16),
        'adapter_pvt-s': adapter(pvt_s, 16),
        'low_rank_adapter_swin-b': low_rank_count(2, 2, 2, swin_b),
        'low_rank_adapter_swin-b-in22k': low_rank_count(2, 2, 2, swin_b),
        'low_rank_adapter_moby-t': low_rank_count(2, 2, 2, SWIN_T_WIDTHS),
        'low_rank_adapter_pvt-s': low_rank_count(2, 2, 8, pvt_s),
    }
    assert expected['adapter_swin-b'] == 3_637_184 and expected['adapter_pvt-s'] == 790_288
    assert expected['low_rank_adapter_pvt-s'] == 253_760
    for name, count in expected.items():
        model = build_model_without_weights(Config.fromfile(f'configs/{name}.py'))
        assert count_parameters(model)['encoder'] == count, name


def test_old_low_rank_checkpoint_does_not_load_into_the_new_default():
    # the pre-change default: rank 1, beside the MLP
    check_old_checkpoint_refused('LowRankAdapter', dict(rank=1, position='parallel_mlp'))
