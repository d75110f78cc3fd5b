import pytest
import torch

import mmpoly  # noqa: F401
from mmseg.models.backbones import SwinTransformer
from mmseg.registry import MODELS

TINY = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4,
            pretrain_img_size=64, drop_path_rate=0.0)


def build(**kwargs):
    model = MODELS.build(dict(type='PolyhistorSwin', **TINY, **kwargs))
    model.init_weights()
    model.eval()  # upstream Swin's train() returns None, so no chaining
    return model


def upstream_forward_without_norms(swin, x):
    """mmseg's own forward with the output norms taken out: the oracle."""
    x, hw = swin.patch_embed(x)
    outs = []
    for stage in swin.stages:
        x, hw, out, out_hw = stage(x, hw)
        outs.append(out.view(-1, *out_hw, out.shape[-1]).permute(0, 3, 1, 2))
    return outs


@pytest.mark.parametrize('size', [(64, 64), (60, 76)])
def test_identity_tuner_equals_upstream_swin(size):
    torch.manual_seed(0)
    model = build()
    upstream = SwinTransformer(**TINY)
    upstream.load_state_dict(model.state_dict(), strict=False)
    upstream.eval()
    model.double(), upstream.double()  # an equality: float64, where CPUs' rounding agrees
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
        ref = upstream_forward_without_norms(upstream, x)
    assert len(ours) == 4
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_backbone_frozen_unless_full_finetuning():
    frozen = build()
    assert not any(p.requires_grad for p in frozen.parameters())
    full = build(tuner=dict(type='FullFineTuning'))
    assert all(p.requires_grad for p in full.parameters())
    assert not hasattr(full, 'norm0')  # output norms live in the decoders


def test_layer_description():
    model = build()
    layers = model.layer_infos
    assert [l.dim for l in layers] == [16, 16, 32, 32, 64, 64, 128, 128]
    assert [l.scale for l in layers] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert [l.stage for l in layers] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert layers[3].name == 'stages.1.blocks.1' and layers[3].num_heads == 2
    assert layers[0].mlp_hidden == 64


def test_bad_task_batching():
    with pytest.raises(ValueError, match='task_batching'):
        MODELS.build(dict(type='PolyhistorSwin', task_batching='sometimes', **TINY))


@pytest.mark.parametrize('with_cp', ['yes', [4], [0, 1.0], [True]])
def test_bad_with_cp(with_cp):
    with pytest.raises(ValueError, match=r'PolyhistorSwin.with_cp must be .* \[0, 4\)'):
        MODELS.build(dict(type='PolyhistorSwin', with_cp=with_cp, **TINY))


def test_with_cp_stages():
    assert build(with_cp=True).checkpointed_stages == {0, 1, 2, 3}
    assert build(with_cp=(0, 2)).checkpointed_stages == {0, 2}
    assert not build().checkpointed_stages


@pytest.mark.parametrize('hw', [(8, 6), (7, 6)])
def test_patch_merging_gather_equals_unfold(hw):
    """The backbone's patch mergings gather their 2 x 2 neighbourhoods by a reshape
    (``NeighbourhoodUnfold``) instead of ``nn.Unfold``: only data movement differs, and the
    norm reads the same contiguous values either way, so output and input gradient are
    equal to the bit in float32 on any CPU (col2im adds each gradient to a zero: exact).
    An odd map (7 rows) is padded by upstream's PatchMerging first."""
    import copy

    from mmseg.models.utils.embed import PatchMerging

    from mmpoly.models.backbones.polyhistor_swin import NeighbourhoodUnfold
    assert all(isinstance(stage.downsample.sampler, NeighbourhoodUnfold)
               for stage in build().stages[:3])
    torch.manual_seed(0)
    upstream = PatchMerging(in_channels=5, out_channels=10, norm_cfg=dict(type='LN'))
    torch.nn.init.normal_(upstream.norm.weight)
    torch.nn.init.normal_(upstream.norm.bias)
    ours = copy.deepcopy(upstream)
    assert NeighbourhoodUnfold.replaces(upstream.sampler)
    ours.sampler = NeighbourhoodUnfold()
    x = torch.randn(3, hw[0] * hw[1], 5)
    grad = torch.randn(3, ((hw[0] + 1) // 2) * (hw[1] // 2), 10)
    results = []
    for merge in (upstream, ours):
        x_ = x.clone().requires_grad_()
        out, out_hw = merge(x_, hw)
        out.backward(grad)
        results.append((out, out_hw, x_.grad))
    (a, a_hw, ga), (b, b_hw, gb) = results
    assert a_hw == b_hw == ((hw[0] + 1) // 2, hw[1] // 2)
    assert torch.equal(a, b) and torch.equal(ga, gb)
    # an odd map given to the gather itself: Unfold's own result
    odd = torch.randn(2, 3, 5, 4)
    assert torch.equal(NeighbourhoodUnfold()(odd), torch.nn.Unfold(2, stride=2)(odd))
