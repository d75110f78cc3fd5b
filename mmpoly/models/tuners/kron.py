"""Kronecker-product helpers shared by PHM / Compacter and Polyhistor-Lite (method.md eq. 4).

``kron_sum(A, B)`` = sum_i A_i (x) B_i, batched over any leading dims, with ``torch.kron``'s
convention: (A (x) B)[i * p + k, j * q + l] = A[i, j] * B[k, l].
"""
from torch import Tensor
import torch


def kron_sum(left: Tensor, right: Tensor) -> Tensor:
    """Sum of Kronecker products over the term axis.

    Args:
        left: (..., S, a, b) the S left factors (e.g. template kernels).
        right: (..., S, p, q) the S right factors (e.g. scaling kernels).

    Returns:
        (..., a * p, b * q). Leading dims broadcast.
    """
    out = torch.einsum('...sab,...spq->...apbq', left, right)
    *lead, a, p, b, q = out.shape
    return out.reshape(*lead, a * p, b * q)


def kron_vec_sum(left: Tensor, right: Tensor) -> Tensor:
    """Sum of Kronecker products of vectors: (..., S, a) and (..., S, p) -> (..., a * p)."""
    return kron_sum(left.unsqueeze(-1), right.unsqueeze(-1)).squeeze(-1)
