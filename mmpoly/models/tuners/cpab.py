"""1-D CPAB transformations (continuous piecewise-affine based diffeomorphisms of [0, 1]).

What DiTASK warps its singular values with (Martinez et al., ``difw``; Freifeld et al.,
CPAB), re-written in closed form so that it runs in float64, on any device and with autograd
through theta (``difw`` casts to float32 and compiles C++ at import). Facts followed:
imartinezl/difw ``difw/core/tessellation.py`` (the 'rref' basis) and
``difw/backend/pytorch/transformer_slow.py`` (the cell-by-cell closed form); no code copied.

The velocity field: [0, 1] cut into ``nc`` equal cells, ``v(x) = a_c x + b_c`` in cell c,
continuous at the ``nc - 1`` inner vertices and (``zero_boundary``) zero at 0 and 1. Its
``(a_c, b_c)`` are ``B theta`` (row-major ``(nc, 2)``), ``B`` a basis of that constraint
space: ``d = nc - 1`` parameters with a zero boundary, ``nc + 1`` without.

The transformation ``phi(x) = x(time)`` of ``dx/dt = v(x)``, ``x(0) = x``: inside a cell the
ODE is linear, ``psi(x, t) = e^{ta} x + (e^{ta} - 1) b / a`` (``x + t b`` if a = 0), written
here as ``x + t v(x) h(t a)``, ``h(z) = (e^z - 1) / z``; a trajectory that reaches the cell's
boundary in its direction of travel at time ``t_hit = log(v(x_c) / v(x)) / a``
(``(x_c - x) / b`` if a = 0), written as ``(x_c - x) / v(x) * g(a (x_c - x) / v(x))``,
``g(u) = log(1 + u) / u``, goes on from the boundary in the next cell with the time left.
A 1-D trajectory never turns, so at most ``nc`` hops. With a zero boundary the ends stay put
and ``phi`` is an increasing map of [0, 1] onto itself.

``transform_data`` resamples a signal ``(batch, width, channels)`` given on
``linspace(0, 1, width)`` at ``phi(linspace(0, 1, outsize))`` by linear interpolation (difw's
``transform_data``): a warp of the index axis, not of the values.
"""
from typing import Dict, Tuple

import torch
from torch import Tensor

#: below this |z| the Taylor series of h and g (their error ~z^3 / 24 is far below float64's
#: resolution), so their value and gradient are right at z = 0 (theta = 0)
_SMALL = 1e-5


def rref_basis(nc: int, zero_boundary: bool = True, dtype=torch.float64) -> Tensor:
    """``(2 nc, d)`` basis of the continuous piecewise-affine velocity fields on [0, 1] with
    ``nc`` equal cells: difw's 'rref' basis (columns scaled to max-norm 1), ``d = nc - 1``
    with ``zero_boundary``, else ``nc + 1``. Row ``2c`` holds the slopes a_c, ``2c + 1`` the
    intercepts b_c."""
    if not isinstance(nc, int) or isinstance(nc, bool) or nc < (2 if zero_boundary else 1):
        raise ValueError(f'CPAB: the tessellation needs at least {2 if zero_boundary else 1} '
                         f'cells (nc) {"with a zero boundary" if zero_boundary else ""}, '
                         f'got {nc!r}')
    s = 1.0 / nc
    if zero_boundary:
        # vector k (1 <= k < nc): v = s x on [0, k s], then down to 0 at (k + 1) s: a hat
        rows = torch.zeros(nc - 1, 2 * nc, dtype=torch.float64)
        rows[:, 0] = s
        for k in range(1, nc):
            rows[k - 1, 2:2 * k:2] = s
            rows[k - 1, 2 * k] = -(k / nc)
            rows[k - 1, 2 * k + 1] = (k / nc) * ((k + 1) / nc)
        basis = rows.T / rows.abs().amax(dim=1)
    else:
        rows = torch.zeros(nc + 1, 2 * nc, dtype=torch.float64)
        rows[0, 0] = -1.0
        rows[0, 1] = s
        rows[-2, ::2] = 1.0
        rows[-1, -2] = 1.0
        rows[-1, -1] = -((nc - 1) / nc)
        for k in range(1, nc - 1):
            rows[k, :2 * k:2] = s
            rows[k, 2 * k] = -(k / nc)
            rows[k, 2 * k + 1] = (k / nc) * ((k + 1) / nc)
        basis = rows.T / rows.abs().amax(dim=1)
        basis[::2, -2] = 1.0 / nc  # difw's max-norm variant of the constant-slope vector
    return basis.to(dtype)


def _h(z: Tensor) -> Tensor:
    """(e^z - 1) / z, 1 at z = 0, with the right gradient there."""
    small = z.abs() < _SMALL
    zs = torch.where(small, torch.ones_like(z), z)
    return torch.where(small, 1 + z / 2 + z * z / 6, torch.expm1(zs) / zs)


def _g(u: Tensor) -> Tensor:
    """log(1 + u) / u, 1 at u = 0 (u > -1)."""
    small = u.abs() < _SMALL
    us = torch.where(small, torch.ones_like(u), u)
    return torch.where(small, 1 - u / 2 + u * u / 3, torch.log1p(us) / us)


class Cpab1d:
    """A 1-D CPAB transformation family on [0, 1] with ``nc`` cells.

    Not a module: it holds no parameters (theta belongs to its user), only the constant
    basis, kept per dtype and device.

    Args:
        nc: number of cells of the tessellation (difw's ``tess_size``).
        zero_boundary: the velocity is zero at 0 and 1 (phi fixes both ends).
        basis: 'rref' (difw's default; the only one offered).
    """

    def __init__(self, nc: int, zero_boundary: bool = True, basis: str = 'rref'):
        if basis != 'rref':
            raise ValueError(f"CPAB: basis must be 'rref' (difw's default), got {basis!r}")
        self.nc, self.zero_boundary, self.basis_name = nc, zero_boundary, basis
        self._basis64 = rref_basis(nc, zero_boundary)
        self._bases: Dict[Tuple, Tensor] = {}

    @property
    def dim(self) -> int:
        """d, the number of parameters theta (difw's ``params.d``)."""
        return self._basis64.shape[1]

    def basis(self, dtype=torch.float64, device=None) -> Tensor:
        key = (dtype, str(device))
        if key not in self._bases:
            with torch.inference_mode(False):  # usable by autograd whatever mode made it
                self._bases[key] = self._basis64.to(dtype=dtype, device=device)
        return self._bases[key]

    def __repr__(self) -> str:
        return (f'Cpab1d(nc={self.nc}, zero_boundary={self.zero_boundary}, '
                f'basis={self.basis_name!r}, d={self.dim})')

    # ------------------------------------------------------------------ fields
    def affine(self, theta: Tensor) -> Tensor:
        """``(N, nc, 2)``: (a_c, b_c) of every cell for each of the N thetas ``(N, d)``."""
        if theta.dim() != 2 or theta.shape[1] != self.dim:
            raise ValueError(f'CPAB(nc={self.nc}): theta must be (N, {self.dim}), got '
                             f'{tuple(theta.shape)}')
        B = self.basis(theta.dtype, theta.device)
        return (theta @ B.T).view(theta.shape[0], self.nc, 2)

    def cell(self, x: Tensor) -> Tensor:
        """The cell of each point (points outside [0, 1] belong to the end cells)."""
        return torch.floor(x * self.nc).clamp(0, self.nc - 1).long()

    def velocity(self, grid: Tensor, theta: Tensor) -> Tensor:
        """``(N, n)``: v at the points ``grid`` (``(n,)`` or ``(N, n)``)."""
        A = self.affine(theta)
        x = grid.expand(theta.shape[0], grid.shape[-1])
        c = self.cell(x)
        a = torch.gather(A[..., 0], 1, c)
        b = torch.gather(A[..., 1], 1, c)
        return a * x + b

    # ------------------------------------------------------------------ integration
    def transform_grid(self, grid: Tensor, theta: Tensor, time: float = 1.0) -> Tensor:
        """``(N, n)``: phi_theta(grid) for each theta, in closed form (differentiable in
        theta; ``grid``: ``(n,)`` or ``(N, n)``, in theta's dtype)."""
        N, n = theta.shape[0], grid.shape[-1]
        x = grid.to(theta.dtype).expand(N, n).reshape(-1)
        owner = torch.arange(N, device=theta.device).repeat_interleave(n)
        return self.transform_points(x, owner, theta, time).view(N, n)

    def transform_points(self, x: Tensor, owner: Tensor, theta: Tensor,
                         time: float = 1.0) -> Tensor:
        """``(P,)``: phi of each point ``x[i]`` under ``theta[owner[i]]`` (one integration for
        points of many thetas, e.g. grids of different lengths)."""
        A = self.affine(theta).reshape(-1, 2)
        x = x.to(theta.dtype)
        c = self.cell(x)
        a, b = A[owner * self.nc + c].unbind(1)
        direction = torch.sign(a * x + b).detach()  # a trajectory never turns
        t = torch.full_like(x, float(time))
        total = x.shape[0]
        index = torch.arange(total, device=x.device)
        parts, where = [], []
        for _ in range(self.nc + 1):
            a, b = A[owner * self.nc + c].unbind(1)
            v = a * x + b
            moving = (torch.sign(v) == direction) & (direction != 0)
            step = direction.long()
            nxt = c + step
            boundary = (c + (step > 0).long()).to(x.dtype) / self.nc
            leaves = moving & (nxt >= 0) & (nxt < self.nc)
            delta = boundary - x
            delta = torch.where(direction > 0, delta.clamp(min=0), delta.clamp(max=0))
            v_safe = torch.where(moving, v, torch.ones_like(v))
            u = a * delta / v_safe
            reaches = leaves & (u > -1)
            u = torch.where(reaches, u, torch.zeros_like(u))
            t_hit = delta / v_safe * _g(u)
            hops = reaches & (t_hit < t)
            stays = ~hops
            # the end point inside this cell: x + t v h(t a)
            parts.append((x + t * v * _h(t * a))[stays])
            where.append(index[stays])
            if not bool(hops.any()):
                break
            x, c, t = boundary[hops], nxt[hops], (t - t_hit)[hops]
            owner, direction, index = owner[hops], direction[hops], index[hops]
        else:  # pragma: no cover - at most nc hops by construction
            raise RuntimeError(f'CPAB(nc={self.nc}): a trajectory crossed more than nc cells')
        phi = torch.cat(parts)
        out = torch.zeros(total, dtype=phi.dtype, device=phi.device)
        return out.index_copy(0, torch.cat(where), phi)

    def uniform_meshgrid(self, n: int, dtype=torch.float64, device=None) -> Tensor:
        return torch.linspace(0, 1, n, dtype=dtype, device=device)

    def transform_data(self, data: Tensor, theta: Tensor, outsize: int,
                       time: float = 1.0) -> Tensor:
        """``(N, outsize, C)``: each signal ``data[i]`` (``(N, width, C)``, sampled on
        ``linspace(0, 1, width)``) read at ``phi_theta_i(linspace(0, 1, outsize))`` by linear
        interpolation (clamped at the ends): difw's ``transform_data``."""
        if data.dim() != 3 or data.shape[0] != theta.shape[0]:
            raise ValueError(f'CPAB.transform_data: data must be (N, width, C) with N = '
                             f'{theta.shape[0]} thetas, got {tuple(data.shape)}')
        grid = self.uniform_meshgrid(outsize, theta.dtype, theta.device)
        return resample(data, self.transform_grid(grid, theta, time))


def resample(data: Tensor, phi: Tensor) -> Tensor:
    """``(N, n, C)``: each signal ``data[i]`` (``(N, width, C)``, sampled on
    ``linspace(0, 1, width)``) read at the points ``phi[i]`` (``(N, n)``, the images of
    ``linspace(0, 1, n)``) by linear interpolation, clamped at the ends.

    The sample positions are taken as ``j (width - 1) / (n - 1)`` plus the displacement
    ``(phi_j - x_j) (width - 1)``: equal to difw's ``phi_j (width - 1)`` up to rounding, and
    exactly the grid (so the signal itself) when phi is the identity and ``n == width``."""
    width, n = data.shape[1], phi.shape[1]
    grid = torch.linspace(0, 1, n, dtype=phi.dtype, device=phi.device)
    steps = torch.arange(n, dtype=phi.dtype, device=phi.device)
    pos = steps * (width - 1) / max(n - 1, 1) + (phi - grid) * (width - 1)
    lo = torch.floor(pos).clamp(0, width - 1)
    frac = (pos - lo).unsqueeze(-1).to(data.dtype)
    i0 = lo.long()
    i1 = (i0 + 1).clamp(max=width - 1)
    channels = data.shape[2]
    y0 = torch.gather(data, 1, i0.unsqueeze(-1).expand(-1, -1, channels))
    y1 = torch.gather(data, 1, i1.unsqueeze(-1).expand(-1, -1, channels))
    return (1 - frac) * y0 + frac * y1


__all__ = ['Cpab1d', 'rref_basis', 'resample']
