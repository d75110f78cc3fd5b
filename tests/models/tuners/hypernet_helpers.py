"""Checks shared by the hypernetwork tuners' tests (Hyperformer, Polyhistor, Polyhistor-Lite).

The authors' form (method.md s. 8) is post-norm, h + s LN_t(A(h)), with the LayerNorm's
generators starting at zero: at init every adapter outputs exactly 0. So that the tests see
the adapters act, :func:`wake_norm_generators` draws those generator rows at random (as after
some training); the init tests run without it.
"""
import hashlib

import pytest
import torch
import torch.nn.functional as F

import mmpoly  # noqa: F401
from mmpoly.models.tuners import TaskContext
from mmpoly.models.tuners.hypernet import LinearGenerators
from mmpoly.checkpoint.adapter import CheckpointMismatchError, check_fits
from mmseg.registry import MODELS
from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
from .helpers import TINY as SWIN_TINY

BACKBONES = {'PolyhistorSwin': SWIN_TINY, 'PolyhistorPVT': PVT_TINY}
TASKS = ('semseg', 'human_parts')


@torch.no_grad()
def wake_norm_generators(tuner, std=0.1, seed=5):
    """Draw the generator rows that start at zero (the post-norm LayerNorm's weight and bias)
    from N(0, std^2), and plain post-norm LayerNorms likewise: the adapters then act."""
    g = torch.Generator().manual_seed(seed)
    for module in tuner.modules():
        if isinstance(module, LinearGenerators):
            for name, rows, bias in zip(module.pieces, module.weight.split(module.sizes, -2),
                                        module.bias.split(module.sizes, -1)):
                if name in module.zero_weight:
                    rows.copy_(torch.randn(rows.shape, generator=g) * std)
                    bias.copy_(torch.randn(bias.shape, generator=g) * std)
    for norms in getattr(tuner, 'norms', None) or ():
        if norms.weight_init == 0:
            norms.weight.copy_(torch.randn(norms.weight.shape, generator=g))
    return tuner


def build_on(backbone, tuner, tasks=TASKS, seed=0):
    """The tiny ``backbone`` ('PolyhistorSwin' or 'PolyhistorPVT') with ``tuner``; every
    backbone parameter moved by 0.1 N(0, 1) (biases and tables matter), eval mode."""
    torch.manual_seed(seed)
    model = MODELS.build(dict(type=backbone, tasks=tasks, tuner=tuner, **BACKBONES[backbone]))
    model.init_weights()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith('tuner.'):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()  # upstream Swin's train() returns None
    return model


def frozen_of(model, backbone):
    frozen = MODELS.build(dict(type=backbone, tasks=model.tuner.tasks, **BACKBONES[backbone]))
    missing, _ = frozen.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    frozen.eval()
    return frozen


def max_gap_to_frozen(model, backbone):
    """Largest difference between any task's features and the frozen backbone's."""
    T = model.tuner.num_tasks
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(x), frozen_of(model, backbone)(x)
    return max((a.view(T, *b.shape) - b).abs().max().item() for a, b in zip(ours, ref))


def assert_init_equals_frozen(backbone, tuner):
    """At init the tuned model computes the frozen backbone's features (every task), while
    the same model with its LayerNorm generators woken does not (the check can fail)."""
    model = build_on(backbone, tuner)
    assert max_gap_to_frozen(model, backbone) <= 1e-6
    wake_norm_generators(model.tuner)
    assert max_gap_to_frozen(model, backbone) > 1e-3


def assert_every_parameter_gets_a_gradient(model):
    """At init (adapters at exactly 0): one backward gives every tuner parameter a gradient
    tensor (DDP's ``find_unused_parameters=False``), the LayerNorm generators a non-zero one."""
    model.train()
    sum(o.square().mean() for o in model(torch.randn(1, 3, 64, 64))).backward()
    for name, p in model.tuner.named_parameters():
        assert p.grad is not None, name
    moved = [m.weight.grad.abs().sum() for m in model.tuner.modules()
             if isinstance(m, LinearGenerators)]
    assert moved and all(g > 0 for g in moved)


def check_branches(tuner, oracle, num_tasks, seed=4):
    """Every hook of every layer against the adapter written plainly, one task at a time:
    post-norm ``out + s LN(act(h W_down + b_down) W_up + b_up; g, b)``, pre-norm
    ``out + s (act(LN(h; g, b) W_down + b_down) W_up + b_up)``, h the sub-block's input
    (parallel) or output (sequential). ``oracle(tuner, site, layer, t)`` -> (g, b, W_down,
    b_down, W_up, b_up) of task t computed plainly from the method's parameters."""
    T, M, L = num_tasks, 3, 5
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ctx = TaskContext.all_tasks(T, tuner.before_forward())
        for layer in tuner.layers:
            x = torch.randn(T * M, L, layer.dim, generator=g)
            out = torch.randn(T * M, L, layer.dim, generator=g)
            for site, hook in (('attn', tuner.attn_branch), ('mlp', tuner.mlp_branch)):
                got = hook(ctx, layer, x, out).view(T, M, L, -1)
                if site not in tuner.sites:
                    assert torch.equal(got.view(out.shape), out)
                    continue
                source = (x if tuner.form == 'parallel' else out).view(T, M, L, -1)
                for t in range(T):
                    ln_w, ln_b, down, down_b, up, up_b = oracle(tuner, site, layer, t)
                    if tuner.adapter_norm == 'post':
                        a = F.gelu(source[t] @ down + down_b) @ up + up_b
                        a = F.layer_norm(a, (layer.dim, ), ln_w, ln_b)
                    else:
                        h = F.layer_norm(source[t], (layer.dim, ), ln_w, ln_b)
                        a = F.gelu(h @ down + down_b) @ up + up_b
                    expected = out.view(T, M, L, -1)[t] + tuner.scale * a
                    atol = 1e-5 * max(1.0, expected.abs().max().item())
                    torch.testing.assert_close(got[t], expected, rtol=1e-4, atol=atol)


def plain_projector(projector, e, layer_pos=None):
    """MLP (+ LayerNorm) of one embedding, written plainly; ``layer_pos``: that layer's
    projector of a per-layer stack."""
    def pick(p):
        return p if layer_pos is None else p[layer_pos]
    fc1, fc2 = projector.fc1, projector.fc2
    h = torch.relu(pick(fc1.weight) @ e + pick(fc1.bias))
    c = pick(fc2.weight) @ h + pick(fc2.bias)
    if isinstance(projector.norm, torch.nn.Identity):
        return c
    return F.layer_norm(c, c.shape, pick(projector.norm.weight), pick(projector.norm.bias))


def layout_digest(tuner, tasks=TASKS):
    """sha256 (16 hex digits) of the tuner's state-dict layout ('name shape' lines, in order)
    on the tiny Swin, and its parameter count: pins the pre-change layout."""
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=tasks, tuner=tuner, **SWIN_TINY))
    lines = '\n'.join(f'{k} {tuple(v.shape)}' for k, v in model.tuner.state_dict().items())
    return (hashlib.sha256(lines.encode()).hexdigest()[:16],
            sum(p.numel() for p in model.tuner.parameters()))


def assert_old_checkpoint_refused(tuner_type, old_keys, tasks=TASKS):
    """A checkpoint saved from the pre-change form (rebuilt by ``old_keys``) does not fit the
    new default model: the checkpoint loader's check raises CheckpointMismatchError naming
    tuner keys, and a strict load fails, instead of a partial load; it fits the model that
    ``old_keys`` build."""
    old = build_on('PolyhistorSwin', dict(type=tuner_type, **old_keys), tasks)
    checkpoint = {'state_dict': old.state_dict()}
    new = build_on('PolyhistorSwin', dict(type=tuner_type), tasks, seed=1)
    with pytest.raises(CheckpointMismatchError, match='tuner.'):
        check_fits(new, checkpoint, 'old.pth')
    with pytest.raises(RuntimeError):
        new.load_state_dict(checkpoint['state_dict'])
    again = build_on('PolyhistorSwin', dict(type=tuner_type, **old_keys), tasks, seed=1)
    check_fits(again, checkpoint, 'old.pth')
    again.load_state_dict(checkpoint['state_dict'])
