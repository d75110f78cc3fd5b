"""``through_task_A``: every task's input through its own ``A``, with ``A``'s gradient taken
in the faster layout. Oracles: autograd's ``bmm`` (values and the input's gradient bit for
bit; ``A``'s gradient to float64 rounding) and ``gradcheck``."""
import pytest
import torch

from mmpoly.models.tuners.merging import through_task_A


def reference(x, A):
    return torch.bmm(x, A.transpose(1, 2))


def product_and_gradients(fn, x, A, grad=None, autocast=False):
    """``fn(x, A)`` on fresh leaves (under CPU bfloat16 autocast if asked), backward with
    ``grad`` (default ones): the output and both gradients."""
    xs, As = x.clone().requires_grad_(), A.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        out = fn(xs, As)
    out.backward(torch.ones_like(out) if grad is None else grad)
    return out, xs.grad, As.grad


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_values_and_input_gradient_are_autograds_bits(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 24, dtype=dtype, generator=g)
    A = torch.randn(3, 4, 24, dtype=dtype, generator=g)
    grad = torch.randn(3, 50, 4, dtype=dtype, generator=g)
    out0, gx0, gA0 = product_and_gradients(reference, x, A, grad)
    out1, gx1, gA1 = product_and_gradients(through_task_A, x, A, grad)
    assert torch.equal(out0, out1)
    assert torch.equal(gx0, gx1)
    assert gA1.shape == A.shape and gA1.is_contiguous()
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(gA1, gA0, rtol=tol, atol=tol)
    # A's gradient is the formula: sum over rows of grad^T x, per task
    torch.testing.assert_close(gA1, torch.einsum('tmr,tmd->trd', grad, x), rtol=tol, atol=tol)


def test_gradcheck_and_partial_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    A = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(through_task_A, (x, A))
    # only one of the two needs a gradient: the other is not computed
    (gA, ) = torch.autograd.grad(through_task_A(x.detach(), A).sum(), A)
    (gx, ) = torch.autograd.grad(through_task_A(x, A.detach()).sum(), x)
    torch.testing.assert_close(gA, x.detach().sum(1)[:, None].expand(2, 3, 5))
    torch.testing.assert_close(gx, A.detach().sum(1)[:, None].expand(2, 7, 5))


def test_under_cpu_autocast_as_autograds_bmm():
    """bfloat16 autocast: the product in bfloat16, gradients back in the inputs' float32 (the
    backward runs outside autocast and must get the operands the product used)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 40, 16, generator=g)
    A = torch.randn(2, 4, 16, generator=g)
    out0, gx0, gA0 = product_and_gradients(reference, x, A, autocast=True)
    out1, gx1, gA1 = product_and_gradients(through_task_A, x, A, autocast=True)
    assert out1.dtype == torch.bfloat16 and torch.equal(out0, out1)
    assert gx1.dtype == gA1.dtype == torch.float32
    assert torch.equal(gx0, gx1)
    torch.testing.assert_close(gA1, gA0, rtol=2e-2, atol=2e-2)  # bfloat16 sums, other order
