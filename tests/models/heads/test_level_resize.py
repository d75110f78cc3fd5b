"""``resize_level``: mmseg's bilinear ``resize`` with the gradient handed to the CPU
upsampling backward dense in channels-last. The oracle is mmseg's own path: the same values,
strides and gradients bit for bit, alone and inside both decoders (mmseg's SegformerHead,
and HRNetFuseHead with plain ``resize``)."""
import pytest
import torch
from mmseg.models.decode_heads import SegformerHead
from mmseg.models.utils import resize

from mmpoly.models.heads import HRNetFuseHead
from mmpoly.models.heads import multi_task_hrnet_head
from mmpoly.models.heads.base_multi_task_head import ChannelLayerNorms
from mmpoly.models.heads.level_resize import resize_level
from mmpoly.models.heads.multi_task_segformer_head import SegformerDecoder

WIDTHS = [16, 24, 32, 40]


def channels_last_slice_grad(shape, dtype, seed):
    """The gradient a decoder's concatenation hands a level: a channel slice of a
    channels-last tensor (dense in neither layout)."""
    n, c, h, w = shape
    full = torch.randn(n, 3 * c, h, w, dtype=dtype,
                       generator=torch.Generator().manual_seed(seed))
    return full.contiguous(memory_format=torch.channels_last)[:, c:2 * c]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('src,dst', [(5, 17), (8, 32), (13, 13), (16, 11)])
def test_same_values_strides_and_gradient_as_mmseg_resize(dtype, batch, align_corners, src,
                                                          dst):
    x = torch.randn(batch, 8, src, src, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    grad = channels_last_slice_grad((batch, 8, dst, dst), dtype, seed=src + dst)
    outs, grads = [], []
    for fn in (lambda t: resize(t, size=(dst, dst), mode='bilinear',
                                align_corners=align_corners),
               lambda t: resize_level(t, (dst, dst), align_corners)):
        leaf = x.clone().requires_grad_()
        out = fn(leaf)
        out.backward(grad)
        outs.append(out)
        grads.append(leaf.grad)
    assert 'DenseChannelsLastGrad' in outs[1].grad_fn.name()  # the fast path is taken
    assert torch.equal(outs[0], outs[1])
    assert outs[0].stride() == outs[1].stride()  # the concatenation picks its layout by them
    assert torch.equal(grads[0], grads[1])
    assert grads[0].stride() == grads[1].stride()


def test_nchw_bfloat16_and_gradient_free_inputs_are_left_to_mmseg_resize():
    x = torch.randn(2, 4, 6, 6, requires_grad=True)  # NCHW: its gradient is NCHW already
    assert 'Upsample' in resize_level(x, (12, 12), False).grad_fn.name()
    half = torch.randn(2, 4, 6, 6, dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    assert 'Upsample' in resize_level(half, (12, 12), False).grad_fn.name()
    with torch.no_grad():
        y = x.contiguous(memory_format=torch.channels_last)
        assert resize_level(y, (12, 12), False).grad_fn is None


def pyramid(batch, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size // 2**i, size // 2**i, generator=g)
            for i, c in enumerate(WIDTHS)]


def step(head, norms, feats, weight, seed=1):
    """Output norms (channels-last outputs, as in the model), the head, a weighted sum
    backward: its output and every gradient."""
    head.train()
    norms.zero_grad()
    head.zero_grad()
    leaves = [f.clone().requires_grad_() for f in feats]
    torch.manual_seed(seed)  # the heads' dropout
    out = head(norms(leaves))
    (out * weight).sum().backward()
    return out.detach(), [x.grad for x in leaves], \
        {n: p.grad.clone() for n, p in [*head.named_parameters(), *norms.named_parameters()]}


def assert_same_step(a, b):
    assert torch.equal(a[0], b[0])
    assert all(torch.equal(p, q) for p, q in zip(a[1], b[1]))
    assert a[2].keys() == b[2].keys()
    differing = [n for n in a[2] if not torch.equal(a[2][n], b[2][n])]
    assert not differing, differing


@pytest.mark.parametrize('batch', [1, 2])
def test_segformer_decoder_is_mmseg_segformer_head_bit_for_bit(batch):
    kw = dict(in_channels=WIDTHS, in_index=[0, 1, 2, 3], channels=32, num_classes=5,
              norm_cfg=dict(type='BN', requires_grad=True),
              loss_decode=dict(type='CrossEntropyLoss'))
    torch.manual_seed(0)
    reference = SegformerHead(**kw)
    ours = SegformerDecoder(**kw)
    ours.load_state_dict(reference.state_dict())
    norms = ChannelLayerNorms(WIDTHS)
    feats = pyramid(batch, 32)
    weight = torch.randn(batch, 5, 32, 32)
    assert_same_step(step(reference, norms, feats, weight), step(ours, norms, feats, weight))


def test_hrnet_fuse_head_is_the_plain_resize_bit_for_bit(monkeypatch):
    torch.manual_seed(0)
    head = HRNetFuseHead(in_channels=WIDTHS, level_channels=(4, 6, 8, 10), num_classes=3,
                         norm_cfg=dict(type='BN', requires_grad=True),
                         loss_decode=dict(type='CrossEntropyLoss'))
    norms = ChannelLayerNorms(WIDTHS)
    feats = pyramid(1, 32)
    weight = torch.randn(1, 3, 32, 32)
    ours = step(head, norms, feats, weight)
    monkeypatch.setattr(multi_task_hrnet_head, 'resize_level', lambda x, size, align_corners:
                        resize(x, size=size, mode='bilinear', align_corners=align_corners))
    assert_same_step(step(head, norms, feats, weight), ours)
