"""The closed-form 1-D CPAB transformation (``mmpoly/models/tuners/cpab.py``).

Oracles: the constraints that define the velocity space (continuity at the inner vertices,
zero at the ends), a fine fourth-order Runge-Kutta integration of the velocity field (written
here, in NumPy, float64), ``numpy.interp`` for the resampling, finite differences for the
gradient, and, when the PyPI package ``difw`` is installed (optional: skipped without it),
difw's own basis, closed form (pure-PyTorch variant, float32) and interpolation.
"""
import numpy as np
import pytest
import torch

from mmpoly.models.tuners.cpab import Cpab1d, rref_basis

EXACT = dict(atol=1e-10, rtol=1e-10)


def thetas(nc, n, scale=1.0, seed=0, zero_boundary=True):
    d = nc - 1 if zero_boundary else nc + 1
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g, dtype=torch.float64)


def rk4(cpab, grid, theta, time=1.0, steps=32000):
    """phi(grid) by RK4 on dx/dt = v(x), v read cell by cell from (a_c, b_c) (NumPy)."""
    A = cpab.affine(theta).numpy()  # (N, nc, 2)
    nc = A.shape[1]
    rows = np.arange(A.shape[0])[:, None]
    x = np.broadcast_to(grid.numpy(), (A.shape[0], grid.shape[0])).copy()

    def v(y):
        c = np.clip(np.floor(y * nc), 0, nc - 1).astype(np.int64)
        return A[rows, c, 0] * y + A[rows, c, 1]

    h = time / steps
    for _ in range(steps):
        k1 = v(x)
        k2 = v(x + h / 2 * k1)
        k3 = v(x + h / 2 * k2)
        k4 = v(x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return torch.from_numpy(x)


@pytest.mark.parametrize('nc,zero_boundary', [(64, True), (4, True), (7, False)])
def test_basis_spans_the_continuous_fields(nc, zero_boundary):
    B = rref_basis(nc, zero_boundary)
    d = nc - 1 if zero_boundary else nc + 1
    assert B.shape == (2 * nc, d) and B.dtype == torch.float64
    assert torch.linalg.matrix_rank(B) == d  # a basis: dimension of the constraint space
    A = B.T.reshape(d, nc, 2)  # every basis vector as (a_c, b_c)
    vertices = torch.arange(1, nc, dtype=torch.float64) / nc
    left = A[:, :-1, 0] * vertices + A[:, :-1, 1]
    right = A[:, 1:, 0] * vertices + A[:, 1:, 1]
    torch.testing.assert_close(left, right, atol=1e-15, rtol=0)  # continuous
    if zero_boundary:
        assert A[:, 0, 1].abs().max() == 0  # v(0) = b_0
        torch.testing.assert_close(A[:, -1, 0] + A[:, -1, 1],
                                   torch.zeros(d, dtype=torch.float64), atol=1e-15, rtol=0)
        torch.testing.assert_close(B.abs().amax(dim=0), torch.ones(d, dtype=torch.float64))
    else:  # the boundary is free: some field moves each end
        assert A[:, 0, 1].abs().max() > 0.1 and (A[:, -1, 0] + A[:, -1, 1]).abs().max() > 0.1


@pytest.mark.parametrize('nc,scale,time,zero_boundary',
                         [(64, 1.0, 1.0, True), (4, 2.0, 1.0, True), (4, 1.0, 0.5, True),
                          (7, 1.0, 1.0, False)])
def test_closed_form_equals_a_fine_rk4_integration(nc, scale, time, zero_boundary):
    cpab = Cpab1d(nc, zero_boundary)
    theta = thetas(nc, 3, scale, zero_boundary=zero_boundary)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    phi = cpab.transform_grid(grid, theta, time)
    assert phi.shape == (3, 101) and phi.dtype == torch.float64
    assert (phi - grid).abs().max() > 0.1  # the points move, across several cells
    torch.testing.assert_close(phi, rk4(cpab, grid, theta, time), **EXACT)


def test_a_diffeomorphism_of_the_interval_and_identity_at_zero():
    cpab = Cpab1d(64)
    grid = torch.linspace(0, 1, 768, dtype=torch.float64)
    phi = cpab.transform_grid(grid, thetas(64, 4, 3.0))
    assert (phi.diff(dim=1) > 0).all()  # strictly increasing
    assert (phi[:, 0] == 0).all()
    torch.testing.assert_close(phi[:, -1], torch.ones(4, dtype=torch.float64), **EXACT)
    zero = torch.zeros(2, 63, dtype=torch.float64)
    assert torch.equal(cpab.transform_grid(grid, zero), grid.expand(2, -1))
    data = torch.randn(2, 768, 3, dtype=torch.float64)
    assert torch.equal(cpab.transform_data(data, zero, 768), data)  # exactly the signal


def test_transform_data_is_linear_interpolation_at_phi():
    cpab = Cpab1d(8)
    theta = thetas(8, 2, 1.5)
    data = torch.randn(2, 50, 3, dtype=torch.float64)
    for outsize in (50, 31):
        out = cpab.transform_data(data, theta, outsize)
        phi = cpab.transform_grid(torch.linspace(0, 1, outsize, dtype=torch.float64), theta)
        samples = np.linspace(0, 1, 50)
        for i in range(2):
            for ch in range(3):
                expected = np.interp(phi[i].numpy(), samples, data[i, :, ch].numpy())
                torch.testing.assert_close(out[i, :, ch], torch.from_numpy(expected), **EXACT)


def test_gradient_through_theta_equals_finite_differences():
    cpab = Cpab1d(4)
    theta = thetas(4, 2, 1.0).requires_grad_()
    grid = torch.linspace(0, 1, 40, dtype=torch.float64)
    data = torch.randn(2, 40, 1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda th: cpab.transform_grid(grid, th), (theta, ))
    assert torch.autograd.gradcheck(lambda th: cpab.transform_data(data, th, 40), (theta, ))
    # at theta = 0 (DiTASK's 'zeros' start) the gradient is v's basis field: d phi / d theta
    # = time * B-field at x
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda th: cpab.transform_grid(grid, th), zero)
    fields = torch.stack([cpab.velocity(grid, torch.eye(3, dtype=torch.float64)[k:k + 1])[0]
                          for k in range(3)], dim=1)
    torch.testing.assert_close(jac[0, :, 0], fields, **EXACT)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='at least 2 cells'):
        Cpab1d(1)
    with pytest.raises(ValueError, match="basis must be 'rref'"):
        Cpab1d(4, basis='svd')
    with pytest.raises(ValueError, match=r'theta must be \(N, 3\)'):
        Cpab1d(4).transform_grid(torch.linspace(0, 1, 5), torch.zeros(1, 63))


# ------------------------------------------------------------------ difw (optional)
def difw_slow(nc, zero_boundary=True):
    """difw's pure-PyTorch closed form and interpolation, without its C++ build (importing
    its torch backend compiles C++ at import)."""
    difw = pytest.importorskip('difw')
    from difw.backend.pytorch import interpolation, transformer_slow
    params = difw.Cpab(nc, backend='numpy', zero_boundary=zero_boundary).params
    return params, transformer_slow, interpolation


@pytest.mark.parametrize('nc,zero_boundary', [(64, True), (4, True), (5, False)])
def test_against_difw(nc, zero_boundary):
    params, slow, interpolation = difw_slow(nc, zero_boundary)
    np.testing.assert_allclose(params.B, rref_basis(nc, zero_boundary).numpy(), rtol=0,
                               atol=1e-15)
    if not zero_boundary:
        return
    params.B = torch.from_numpy(params.B).float()
    cpab = Cpab1d(nc)
    theta = thetas(nc, 3)
    grid = torch.linspace(0, 1, 200, dtype=torch.float64)
    phi = cpab.transform_grid(grid, theta)
    # difw runs in float32 and steps eps = 1.2e-7 past each cell boundary it hits
    ref = slow.integrate_closed_form(grid.float(), theta.float(), params, 1.0)
    torch.testing.assert_close(phi, ref.double(), atol=1e-5, rtol=0)
    data = torch.randn(3, 200, 2, dtype=torch.float64)
    torch.testing.assert_close(cpab.transform_data(data, theta, 200),
                               interpolation.interpolate(data, phi, 200), **EXACT)
