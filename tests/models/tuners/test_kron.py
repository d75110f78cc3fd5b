import torch

from mmpoly.models.tuners.kron import kron_sum, kron_vec_sum


def explicit_kron_sum(left, right):
    return sum(torch.kron(left[i], right[i]) for i in range(left.shape[0]))


def test_kron_sum_matches_torch_kron_loop():
    torch.manual_seed(0)
    for s, (a, b), (p, q) in [(1, (3, 5), (1, 1)), (2, (4, 6), (2, 2)), (4, (3, 2), (4, 4)),
                              (3, (2, 5), (3, 2))]:
        left, right = torch.randn(s, a, b), torch.randn(s, p, q)
        out = kron_sum(left, right)
        assert out.shape == (a * p, b * q)
        torch.testing.assert_close(out, explicit_kron_sum(left, right))


def test_kron_sum_batched_and_broadcast():
    torch.manual_seed(1)
    left, right = torch.randn(5, 2, 3, 4), torch.randn(1, 2, 2, 2)  # tasks x terms, shared kernels
    out = kron_sum(left, right)
    assert out.shape == (5, 6, 8)
    for t in range(5):
        torch.testing.assert_close(out[t], explicit_kron_sum(left[t], right[0]))


def test_block_identity_down_and_up_halves_expand_separately():
    # [A, B] (x) alpha == [A (x) alpha, B (x) alpha]: the two adapter halves expand apart
    torch.manual_seed(2)
    A, B, alpha = torch.randn(1, 4, 3), torch.randn(1, 4, 5), torch.randn(1, 2, 2)
    joint = kron_sum(torch.cat([A, B], dim=-1), alpha)
    torch.testing.assert_close(joint, torch.cat([kron_sum(A, alpha), kron_sum(B, alpha)], -1))


def test_kron_vec_sum():
    torch.manual_seed(3)
    u, v = torch.randn(3, 4), torch.randn(3, 2)
    torch.testing.assert_close(kron_vec_sum(u, v), sum(torch.kron(u[i], v[i]) for i in range(3)))
