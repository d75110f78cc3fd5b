"""Pretrained Swin weights from the official release, mmseg and mmpretrain layouts."""
import pytest
import torch
import torch.nn.functional as F

import mmpoly  # noqa: F401
from mmseg.models.utils.embed import PatchMerging
from mmseg.registry import MODELS
from mmpoly.models.backbones.polyhistor_swin import (convert_official_swin,
                                                     convert_swin_checkpoint)
from .test_polyhistor_swin import TINY


def official_patch_merging(x, H, W, norm_w, norm_b, reduction_w):
    """microsoft/Swin-Transformer's PatchMerging.forward, written out: the oracle."""
    B, L, C = x.shape
    x = x.view(B, H, W, C)
    x0, x1 = x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :]
    x2, x3 = x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]
    x = torch.cat([x0, x1, x2, x3], -1).view(B, -1, 4 * C)
    x = F.layer_norm(x, (4 * C, ), norm_w, norm_b)
    return x @ reduction_w.t()


def test_official_patch_merging_weights_give_the_official_output():
    torch.manual_seed(0)
    C, H, W = 8, 6, 4
    norm_w, norm_b = torch.randn(4 * C), torch.randn(4 * C)
    reduction_w = torch.randn(2 * C, 4 * C)
    official = {
        'layers.0.downsample.norm.weight': norm_w,
        'layers.0.downsample.norm.bias': norm_b,
        'layers.0.downsample.reduction.weight': reduction_w,
    }
    converted = convert_official_swin(official)
    merge = PatchMerging(in_channels=C, out_channels=2 * C, stride=2,
                         norm_cfg=dict(type='LN'))
    merge.load_state_dict({k.replace('stages.0.downsample.', ''): v
                           for k, v in converted.items()})
    x = torch.randn(2, H * W, C)
    ours, _ = merge(x, (H, W))
    torch.testing.assert_close(ours, official_patch_merging(x, H, W, norm_w, norm_b,
                                                            reduction_w))


def to_official(state_dict):
    """mmseg keys -> official keys (patch merging left in mmseg order; checked above)."""
    out = {}
    for k, v in state_dict.items():
        k = k.replace('stages.', 'layers.').replace('.attn.w_msa.', '.attn.')
        k = k.replace('.ffn.layers.0.0.', '.mlp.fc1.').replace('.ffn.layers.1.', '.mlp.fc2.')
        k = k.replace('patch_embed.projection.', 'patch_embed.proj.')
        out[k] = v
    return out


def to_mmpretrain(state_dict):
    out = {}
    for k, v in state_dict.items():
        parts = k.split('.')
        if k.startswith('stages.') and parts[2] == 'downsample':
            parts[1] = str(int(parts[1]) + 1)
        out['backbone.' + '.'.join(parts)] = v
    return out


@pytest.mark.parametrize('layout', ['mmseg', 'mmpretrain', 'official', 'moby'])
def test_pretrained_checkpoint_layouts_load_into_the_backbone(tmp_path, layout):
    torch.manual_seed(0)
    source = MODELS.build(dict(type='PolyhistorSwin', **TINY))
    source.init_weights()
    weights = {k: v for k, v in source.state_dict().items()
               if 'relative_position_index' not in k}
    if layout == 'mmseg':
        ckpt = {'state_dict': {'backbone.' + k: v for k, v in weights.items()}}
    elif layout == 'mmpretrain':
        ckpt = {'state_dict': to_mmpretrain(weights), 'meta': {}}
    else:  # official: model key, head, and patch merging in official order
        official = to_official(weights)
        for k in list(official):
            if '.downsample.reduction.' in k:
                w = official[k]
                out_c, in_c = w.shape
                official[k] = w.reshape(out_c, in_c // 4, 4)[:, :, [0, 2, 1, 3]].transpose(
                    1, 2).reshape(out_c, in_c)
            elif '.downsample.norm.' in k:
                v = official[k]
                official[k] = v.reshape(-1, 4)[:, [0, 2, 1, 3]].t().reshape(-1)
        official['head.weight'] = torch.zeros(10, 128)
        ckpt = {'model': official}
        if layout == 'moby':  # online encoder + momentum encoder + projector
            ckpt = {'model': {**{'encoder.' + k: v for k, v in official.items()},
                              **{'encoder_k.' + k: v * 0 for k, v in official.items()},
                              'projector.linear1.weight': torch.zeros(3, 3)}}
    path = str(tmp_path / f'{layout}.pth')
    torch.save(ckpt, path)
    target = MODELS.build(dict(type='PolyhistorSwin', **TINY,
                               init_cfg=dict(type='Pretrained', checkpoint=path)))
    target.init_weights()
    for k, v in weights.items():
        assert torch.equal(target.state_dict()[k], v), k
    assert convert_swin_checkpoint(ckpt).keys() >= weights.keys()


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': {'conv1.weight': torch.zeros(3)}}, path)
    model = MODELS.build(dict(type='PolyhistorSwin', **TINY,
                              init_cfg=dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(KeyError, match='resnet.pth.*missing'):
        model.init_weights()


def test_checkpoint_of_another_width_is_a_clear_error(tmp_path):
    wide = MODELS.build(dict(type='PolyhistorSwin', **dict(TINY, embed_dims=32)))
    path = str(tmp_path / 'wide.pth')
    torch.save({'state_dict': wide.state_dict()}, path)
    model = MODELS.build(dict(type='PolyhistorSwin', **TINY,
                              init_cfg=dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(ValueError, match='wide.pth.*shape'):
        model.init_weights()


def test_missing_pretrained_file_names_the_path():
    model = MODELS.build(dict(type='PolyhistorSwin', **TINY,
                              init_cfg=dict(type='Pretrained', checkpoint='no/such.pth')))
    with pytest.raises(FileNotFoundError, match='no/such.pth'):
        model.init_weights()


def test_window_size_change_resizes_relative_position_tables(tmp_path):
    source = MODELS.build(dict(type='PolyhistorSwin', **TINY))
    torch.manual_seed(0)
    with torch.no_grad():  # values that a resize can get wrong (the init leaves zeros)
        for name, p in source.named_parameters():
            p.copy_(torch.randn_like(p))
    path = str(tmp_path / 'w4.pth')
    torch.save(source.state_dict(), path)
    target = MODELS.build(dict(type='PolyhistorSwin', **dict(TINY, window_size=2),
                               init_cfg=dict(type='Pretrained', checkpoint=path)))
    target.init_weights()
    got, source_sd = target.state_dict(), source.state_dict()
    tables = [k for k in source_sd if k.endswith('relative_position_bias_table')]
    assert len(tables) == sum(TINY['depths'])
    for key in tables:
        # the (2w - 1)^2 x heads table as a (2w - 1) x (2w - 1) image per head, bicubic, as
        # mmseg's / mmpretrain's converters resize it: 7 x 7 -> 3 x 3
        old = source_sd[key]
        heads = old.shape[1]
        expected = torch.stack([
            F.interpolate(old[:, h].reshape(1, 1, 7, 7), size=(3, 3), mode='bicubic',
                          align_corners=False).reshape(9) for h in range(heads)], dim=1)
        assert got[key].shape == (9, heads)
        torch.testing.assert_close(got[key], expected, rtol=0, atol=1e-6, msg=key)
    assert got['stages.0.blocks.0.attn.w_msa.relative_position_bias_table'].shape == (9, 1)
    # everything else is loaded as it is
    for key, value in source_sd.items():
        if key not in tables and 'relative_position_index' not in key:
            assert torch.equal(got[key], value), key
