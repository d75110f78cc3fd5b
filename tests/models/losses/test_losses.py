"""Losses against hand-computed values, ignore handling and gradients."""
import math

import numpy as np
import pytest
import torch

from mmseg.registry import MODELS

from mmpoly.models.losses import BalancedBCELoss, NormalL1Loss, PixelCrossEntropyLoss


def _grad_of(loss_fn, pred, target):
    pred = pred.clone().requires_grad_(True)
    loss = loss_fn(pred, target)
    loss.backward()
    return loss, pred.grad


# ------------------------------------------------------------------ cross-entropy
def test_ce_hand_computed_and_ignore():
    # 3 classes, 3 pixels in a 1x3 map; the third pixel is ignored.
    logits = torch.tensor([[0., 2., 50.], [0., 0., -50.], [0., 0., 0.]]).view(1, 3, 1, 3)
    target = torch.tensor([[[0, 0, 255]]])
    # -log softmax: pixel 1 = log 3, pixel 2 = log(e^2 + 2) - 2
    expected = (math.log(3) + math.log(math.e**2 + 2) - 2) / 2
    loss_fn = PixelCrossEntropyLoss(loss_weight=2.0)
    assert loss_fn(logits, target).item() == pytest.approx(2 * expected, rel=1e-6)
    # (N, 1, H, W) labels are accepted as well
    assert loss_fn(logits, target[:, None]).item() == pytest.approx(2 * expected, rel=1e-6)
    assert loss_fn.loss_name == 'loss_ce'


def test_ce_ignore_index_override_and_registry():
    logits = torch.zeros(1, 3, 1, 2)
    target = torch.tensor([[[0, 7]]])
    loss_fn = MODELS.build(dict(type='PixelCrossEntropyLoss', loss_name='loss_parts'))
    assert loss_fn.loss_name == 'loss_parts'
    assert loss_fn(logits, target, ignore_index=7).item() == pytest.approx(math.log(3))


def test_ce_all_ignored_is_zero_and_differentiable():
    logits = torch.randn(2, 7, 4, 4)
    target = torch.full((2, 4, 4), 255, dtype=torch.long)
    loss, grad = _grad_of(PixelCrossEntropyLoss(), logits, target)
    assert loss.item() == 0.0 and loss.requires_grad
    assert torch.count_nonzero(grad) == 0


def test_ce_gradient_finite():
    logits = torch.randn(2, 21, 5, 5) * 30
    target = torch.randint(0, 21, (2, 5, 5))
    target[0, 0] = 255
    loss, grad = _grad_of(PixelCrossEntropyLoss(), logits, target)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


# ------------------------------------------------------------------- balanced BCE
def test_bce_hand_computed_with_ignore():
    # p = sigmoid(x) = 0.5, 0.75, 0.25 on the valid pixels; the 4th pixel is ignored.
    x = torch.tensor([0., math.log(3), -math.log(3), 5.]).view(1, 1, 2, 2)
    y = torch.tensor([1, 1, 0, 255]).view(1, 1, 2, 2)
    w = 1 / 3  # one negative among three valid pixels
    expected = (w * (-math.log(0.5) - math.log(0.75)) + (1 - w) * -math.log(0.75)) / 3
    loss_fn = BalancedBCELoss(loss_weight=5.0)
    assert loss_fn(x, y).item() == pytest.approx(5 * expected, rel=1e-6)
    assert loss_fn(x, y[:, 0]).item() == pytest.approx(5 * expected, rel=1e-6)
    assert loss_fn.loss_name == 'loss_bce'


def test_bce_weight_is_per_batch_like_reference():
    """No ignored pixel: equals the reference formula (w over the batch, sum / numel)."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 3, 4).double()
    y = torch.zeros(2, 1, 3, 4, dtype=torch.long)
    y[0, 0, :2] = 1  # 8 positives in image 0, none in image 1
    xn, yn = x.numpy().ravel(), y.numpy().ravel().astype(np.float64)
    p = 1 / (1 + np.exp(-xn))
    w = (1 - yn).sum() / yn.size
    ref = (w * -(yn * np.log(p)).sum() + (1 - w) * -((1 - yn) * np.log(1 - p)).sum()) \
        / yn.size
    assert BalancedBCELoss()(x, y).item() == pytest.approx(ref, rel=1e-5)


def test_bce_stable_and_all_ignored():
    x = torch.tensor([100., -100., 100., -100.]).view(1, 1, 1, 4)
    y = torch.tensor([1, 1, 0, 0]).view(1, 1, 1, 4)
    loss, grad = _grad_of(BalancedBCELoss(), x, y)
    # w = 1/2: the two wrong pixels each cost 100 (log-sigmoid of -100 is -100)
    assert loss.item() == pytest.approx((0.5 * 100 + 0.5 * 100) / 4, rel=1e-5)
    assert torch.isfinite(grad).all()
    loss, grad = _grad_of(BalancedBCELoss(), torch.randn(2, 1, 3, 3),
                          torch.full((2, 1, 3, 3), 255))
    assert loss.item() == 0.0 and loss.requires_grad
    assert torch.count_nonzero(grad) == 0


# ------------------------------------------------------------------------ normals
def test_normal_l1_hand_computed():
    pred = torch.tensor([[2., 0., 9.], [0., 3., 9.], [0., 4., 9.]]).view(1, 3, 1, 3)
    gt = torch.tensor([[1., 0., 0.], [0., 0., 0.], [0., 1., 0.]]).view(1, 3, 1, 3)
    # pixel 1: (1,0,0) vs (1,0,0) -> 0; pixel 2: (0,.6,.8) vs (0,0,1) -> .6 + .2;
    # pixel 3: zero label -> invalid. Mean over 2 valid pixels x 3 components.
    expected = (0 + 0.8) / 6
    loss_fn = NormalL1Loss(loss_weight=10.0)
    assert loss_fn(pred, gt).item() == pytest.approx(10 * expected, rel=1e-6)
    assert loss_fn.loss_name == 'loss_normal'


def test_normal_l1_all_invalid_and_gradient():
    loss, grad = _grad_of(NormalL1Loss(), torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    assert torch.count_nonzero(grad) == 0
    gt = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4), dim=1)
    gt[:, :, 0] = 0
    loss, grad = _grad_of(NormalL1Loss(), torch.randn(2, 3, 4, 4), gt)
    assert torch.isfinite(loss) and torch.isfinite(grad).all() and loss.item() > 0
    assert torch.count_nonzero(grad[:, :, 0]) == 0  # invalid rows get no gradient


# ------------------------------------------------------------------- masked mean
@pytest.mark.parametrize('expanded', [False, True])
def test_masked_mean_is_the_indexed_mean_bit_for_bit(expanded):
    """The losses' masked mean against its definition, ``values[mask].sum() / count``: the
    same value and gradient to the bit (the same elements summed in the same order), for a
    contiguous mask and for the normals loss's mask expanded over channels."""
    from mmpoly.models.losses.utils import masked_mean
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(3, 3, 17, 23, generator=gen, dtype=torch.float32)
    if expanded:
        mask = (torch.rand(3, 1, 17, 23, generator=gen) > 0.3).expand_as(values)
    else:
        mask = torch.rand(3, 3, 17, 23, generator=gen) > 0.3
    ours = values.clone().requires_grad_(True)
    oracle = values.clone().requires_grad_(True)
    got = masked_mean(ours, mask)
    want = oracle[mask].sum() / mask.sum().to(torch.float32)
    got.backward()
    want.backward()
    assert torch.equal(got, want)
    assert torch.equal(ours.grad, oracle.grad)
    # nothing selected: an exact 0, still differentiable, zero gradient
    empty = values.clone().requires_grad_(True)
    zero = masked_mean(empty, torch.zeros_like(mask))
    zero.backward()
    assert zero.item() == 0.0 and torch.count_nonzero(empty.grad) == 0
