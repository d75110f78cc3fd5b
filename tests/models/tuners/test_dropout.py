"""``branch_dropout`` (the LoRA-family methods' input dropout, counter-based keep bits on the
CPU) against ``F.dropout``'s definition: kept values ``x * noise`` with torch's own noise
value, drop rate within a binomial bound, the backward through the same bits, reproducible
under ``torch.manual_seed``; and the fork helpers (``split_streams``, ``add_low_rank``)
against the indexing / elementwise forms they replace (float64)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmpoly.models.tuners.base import split_streams
from mmpoly.models.tuners.dropout import branch_dropout
from mmpoly.models.tuners.merging import add_low_rank


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_kept_values_are_torch_dropouts(dtype):
    torch.manual_seed(0)
    x = torch.randn(300, 500, dtype=dtype)
    p = 0.05
    ours, ref = branch_dropout(x, p, True), F.dropout(x, p, True)
    both = (ours != 0) & (ref != 0)
    assert both.sum() > 0.85 * x.numel()
    # torch's kept value: x * noise, noise = 1 / (1 - p) in x's dtype
    assert torch.equal(ours[both], ref[both])
    assert torch.equal(ours[ours == 0], torch.zeros_like(ours[ours == 0]))
    assert ours.dtype == dtype and ours.shape == x.shape


@pytest.mark.parametrize('p', [0.05, 0.5, 0.9])
def test_drop_rate_within_a_binomial_bound(p):
    torch.manual_seed(1)
    n = 1_000_000
    dropped = int((branch_dropout(torch.ones(n), p, True) == 0).sum())
    # 6 standard deviations: a wrong threshold (e.g. keep = p) is thousands of sigmas off
    assert abs(dropped - n * p) < 6 * math.sqrt(n * p * (1 - p)), dropped
    # the bits of neighbouring elements are not correlated (a counter hash gone wrong would)
    torch.manual_seed(2)
    kept = (branch_dropout(torch.ones(n), p, True) != 0).double()
    corr = torch.corrcoef(torch.stack([kept[:-1], kept[1:]]))[0, 1]
    assert abs(float(corr)) < 6 / math.sqrt(n)


def test_backward_uses_the_forward_bits():
    torch.manual_seed(3)
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    g = torch.randn(64, 33, dtype=torch.float64)
    y = branch_dropout(x, 0.3, True)
    y.backward(g)
    scale = 1 / (1 - 0.3)  # F.dropout's noise value
    kept = y.detach() != 0
    assert torch.equal(x.grad, torch.where(kept, g * scale, torch.zeros_like(g)))
    # a non-contiguous input and gradient: the same function of the elements
    xt = x.detach().t().requires_grad_()
    torch.manual_seed(4)
    yt = branch_dropout(xt, 0.3, True)
    yt.backward(g.t())
    kept = yt.detach() != 0
    assert torch.equal(yt.detach()[kept], xt.detach()[kept] * scale)
    assert torch.equal(xt.grad, torch.where(kept, g.t() * scale, torch.zeros_like(g.t())))


def test_reproducible_and_fresh_per_call():
    x = torch.randn(1000, 40)
    torch.manual_seed(5)
    a, b = branch_dropout(x, 0.1, True), branch_dropout(x, 0.1, True)
    torch.manual_seed(5)
    assert torch.equal(branch_dropout(x, 0.1, True), a)
    assert not torch.equal(a != 0, b != 0)


def test_identity_and_fallbacks():
    x = torch.randn(10, 10)
    assert branch_dropout(x, 0.05, False) is x and branch_dropout(x, 0.0, True) is x
    assert torch.equal(branch_dropout(x, 1.0, True), torch.zeros_like(x))  # F.dropout's
    xb = x.bfloat16()  # not a kernel dtype: F.dropout
    yb = branch_dropout(xb, 0.5, True)
    assert yb.dtype == torch.bfloat16 and set(torch.unique(yb / xb).tolist()) <= {0.0, 2.0}


def test_split_streams_and_add_low_rank_equal_their_plain_forms():
    torch.manual_seed(6)
    h = torch.randn(5, 7, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 7, 3, dtype=torch.float64)
    shared, tasks = split_streams(h)
    assert torch.equal(shared, h[0]) and torch.equal(tasks, h[1:])
    (grad, ) = torch.autograd.grad((shared * w[0]).sum() + (tasks * w[1:]).sum() * 2, h)
    assert torch.equal(grad, torch.cat([w[:1], 2 * w[1:]]))

    base = torch.randn(4, 6, 8, dtype=torch.float64, requires_grad=True)
    low = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    B = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    out = add_low_rank(base, low, B, 2.5)
    ref = base + 2.5 * low @ B.t()
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=0)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (base, low, B), g),
                    torch.autograd.grad(ref, (base, low, B), g)):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_checkpointed_recomputation_draws_the_same_bits():
    """The seed comes from torch's generator, whose state activation checkpointing restores
    for the recomputation: the checkpointed layer's output and gradients equal the plain
    one's (a seed drawn elsewhere would give the backward another mask)."""
    from torch.utils.checkpoint import checkpoint
    W = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    x = torch.randn(64, 16, dtype=torch.float64, requires_grad=True)

    def layer(h):
        return (branch_dropout(h, 0.3, True) @ W).tanh()

    results = []
    for run in (layer, lambda h: checkpoint(layer, h, use_reentrant=False)):
        torch.manual_seed(0)
        out = run(x)
        results.append((out, *torch.autograd.grad(out.sum(), (x, W))))
    for a, b in zip(*results):
        assert torch.equal(a, b)
