"""ConvNeXt-V2 and SwinV2 from mmpretrain, unmodified, as multi-task encoders.

Oracles, none of them this project's forward: mmpretrain's own classes run alone (with
edited weights, or block by block with the tuner's formula added where its branch goes),
sums of numel over mmpretrain's own built models, and hand formulas. Equalities in float64;
a tuner that touches nothing gives upstream's bits exactly."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

mmpretrain = pytest.importorskip('mmpretrain')

from mmpoly.models.backbones.mmpretrain_backbone import TunedLinear  # noqa: E402
from mmpoly.utils.param_count import count_parameters  # noqa: E402
from .test_mmpretrain_backbone import (REPO, TASKS, _mmpretrain_checkpoint,  # noqa: E402
                                       build, randomise, upstream)
from .test_pretrained_url import served  # noqa: E402,F401  (the local HTTP server fixture)

#: a narrow ConvNeXt-V2 (GRN, no layer scale) with ConvNeXt-V2-T's structure
CONVNEXT = dict(type='ConvNeXt', arch=dict(depths=[1, 1, 2, 1], channels=[8, 16, 24, 32]),
                use_grn=True, layer_scale_init_value=0., gap_before_final_norm=False,
                out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
#: a narrow SwinV2 (post-norm blocks, continuous position bias)
SWINV2 = dict(type='SwinTransformerV2',
              arch=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                        extra_norm_every_n_blocks=0),
              img_size=128, window_size=[4, 4, 4, 4], drop_path_rate=0.0,
              out_indices=(0, 1, 2, 3))
SIZE = {'ConvNeXt': 64, 'SwinTransformerV2': 128}


def _image(encoder, batch=2):
    size = SIZE[encoder['type']]
    return torch.randn(batch, 3, size, size, dtype=torch.float64)


def _load(module, state):
    """``load_state_dict`` as both sides get it (mmpretrain's own load hooks run: SwinV2's
    drops its derived buffers, which stay the config's)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected and all('relative_' in k for k in missing), (missing, unexpected)


def _reference(model, encoder, out_norms=False):
    """mmpretrain's own model with the encoder's weights (its output norms dropped where
    ours are: ``out_norms=False`` leaves them to the decoders)."""
    ref = upstream(encoder).double()
    ref.eval()
    if not out_norms:
        for i in ref.out_indices:
            setattr(ref, f'norm{i}', torch.nn.Identity())
    _load(ref, model.encoder.state_dict())
    return ref


@pytest.mark.parametrize('encoder', [CONVNEXT, SWINV2], ids=['convnext', 'swinv2'])
@pytest.mark.parametrize('tuner', ['NoTuner', 'FrozenTaskStacked', 'FullFineTuning'])
def test_identity_tuners_give_upstream_bits(encoder, tuner):
    torch.manual_seed(0)
    for out_norms in (False, True):
        model = build(tuner, encoder=encoder, out_norms=out_norms).double().eval()
        randomise(model.encoder)  # GRN's gamma / beta start at zero upstream
        _load(model.encoder, model.encoder.state_dict())  # the same load hooks as the oracle
        ref = _reference(model, encoder, out_norms)
        # frozen as ours (torch's matmul folds batch dims by requires_grad: another order)
        trained = dict(model.encoder.named_parameters())
        for name, param in ref.named_parameters():
            param.requires_grad_(trained[name].requires_grad)
        x = _image(encoder)
        with torch.no_grad():
            ours, expected = model(x), ref(x)
        rows = len(TASKS) if tuner == 'FrozenTaskStacked' else 1
        assert len(ours) == len(expected) == 4
        for u, v in zip(ours, expected):
            assert torch.equal(u, v.repeat(rows, 1, 1, 1))


def test_convnext_sites_are_its_pointwise_linears():
    from mmpretrain.models.backbones import ConvNeXt
    model = build('NoTuner', encoder=CONVNEXT)
    assert type(model.encoder) is ConvNeXt and type(model.encoder).forward is ConvNeXt.forward
    assert set(model.encoder.state_dict()) == set(upstream(CONVNEXT).state_dict()) - {
        f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    block = model.encoder.stages[2][1]
    assert isinstance(block.pointwise_conv1, TunedLinear) and block.pointwise_conv1.site == 'fc1'
    assert isinstance(block.pointwise_conv2, TunedLinear) and block.pointwise_conv2.site == 'fc2'
    assert [(i.dim, i.scale, i.mlp_hidden) for i in model.layer_infos] == [
        (8, 1, 32), (16, 2, 64), (24, 3, 96), (24, 3, 96), (32, 4, 128)]
    assert all(i.linears == (('fc1', i.dim, 4 * i.dim), ('fc2', 4 * i.dim, i.dim))
               for i in model.layer_infos)


def test_swinv2_routes_proj_fc1_fc2_and_its_qkv_module_never_runs():
    """WindowMSAV2 computes ``F.linear(x, qkv.weight, ...)``: a TunedLinear there would be
    skipped silently, so qkv is not routed (and the module is indeed never called)."""
    model = build('NoTuner', encoder=SWINV2)
    wmsa = model.encoder.stages[1].blocks[0].attn.w_msa
    assert not isinstance(wmsa.qkv, TunedLinear) and isinstance(wmsa.proj, TunedLinear)
    assert [name for name, _, _ in model.layer_infos[0].linears] == ['proj', 'fc1', 'fc2']
    called = []
    for m in model.encoder.modules():
        if hasattr(m, 'q_bias'):
            m.qkv.register_forward_hook(lambda *a: called.append(1))
    with torch.no_grad():
        model(_image(SWINV2).float())
    assert called == []


def _adapter(x, w, t):
    """Task t's adapter on tokens x (..., d), by its formula (method.md eq. 1): LayerNorm
    with the task's affine, down, GELU, up."""
    h = F.layer_norm(x, x.shape[-1:], w.norm_weight[t], w.norm_bias[t])
    return F.gelu(h @ w.down[t] + w.down_bias[t]) @ w.up[t] + w.up_bias[t]


def test_convnext_adapter_is_each_upstream_block_plus_the_adapter_of_its_input():
    """ConvNeXt adds ``shortcut + drop_path(branch)`` in its own forward; the parallel adapter
    joins that sum: each upstream block's output plus A_t(block input)."""
    torch.manual_seed(1)
    model = build('Adapter', encoder=CONVNEXT).double().eval()
    randomise(model.tuner)
    ref = _reference(model, CONVNEXT)
    x = _image(CONVNEXT)
    with torch.no_grad():
        ours = model(x)
        for t in range(len(TASKS)):
            h, layers, outs = x, iter(model.layer_infos), []
            for i, stage in enumerate(ref.stages):
                h = ref.downsample_layers[i](h)
                for block in stage:
                    w = model.tuner.adapter_weights(next(layers), 'mlp')
                    tokens = h.permute(0, 2, 3, 1)
                    h = block(h) + _adapter(tokens, w, t).permute(0, 3, 1, 2)
                outs.append(h)
            for u, v in zip(ours, outs):
                torch.testing.assert_close(u[2 * t:2 * t + 2], v, rtol=0, atol=1e-10)
    assert (ours[3][:2] - ours[3][2:4]).abs().max() > 1e-4  # the tasks differ


def test_convnext_bitfit_is_upstream_with_shifted_biases_and_grn_betas():
    """Every additive term: conv and linear biases, LayerNorm2d biases (channel-first in the
    stem and downsampling, channel-last in the blocks) and GRN's beta."""
    torch.manual_seed(2)
    model = build('BitFit', encoder=CONVNEXT).double().eval()
    randomise(model.tuner)
    biases = model.tuner.biases
    grn = [n for n, m in model.encoder.named_modules() if hasattr(m, 'beta')]
    assert len(grn) == 5 and all(f"encoder_{n.replace('.', '_')}" in biases for n in grn)
    x = _image(CONVNEXT, batch=1)
    shifted = set()
    with torch.no_grad():
        ours = model(x)
        for t in range(len(TASKS)):
            ref = _reference(model, CONVNEXT)
            for name, module in ref.named_modules():
                key = f"encoder_{name.replace('.', '_')}"
                param = getattr(module, 'bias', getattr(module, 'beta', None))
                if isinstance(param, torch.nn.Parameter):
                    param += biases[key][t]
                    shifted.add(key)
            for u, v in zip(ours, ref(x)):
                torch.testing.assert_close(u[t:t + 1], v, rtol=0, atol=1e-10)
    assert shifted == set(biases)  # every delta is an upstream bias, every bias has one


@pytest.mark.parametrize('encoder,tuner', [
    (CONVNEXT, 'Adapter'), (CONVNEXT, 'Polyhistor'), (CONVNEXT, 'PolyhistorLite'),
    (CONVNEXT, 'BitFit'), (SWINV2, 'Adapter'), (SWINV2, 'Polyhistor'),
    (SWINV2, 'PolyhistorLite'), (SWINV2, dict(type='Adapter', position='after_attn_and_mlp')),
    (SWINV2, dict(type='LoRA', targets='proj'))], ids=lambda v: v if isinstance(v, str) else (
        v.get('position', v.get('targets')) if 'arch' not in v else v['type']))
def test_stacked_pass_equals_the_per_task_loop(encoder, tuner):
    torch.manual_seed(3)
    stacked = build(tuner, encoder=encoder).double()
    randomise(stacked.tuner)
    loop = build(tuner, encoder=encoder, task_batching='loop').double()
    _load(loop, stacked.state_dict())
    x = _image(encoder)
    a, b = stacked.train()(x), loop.train()(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-10)
    assert (a[3][:2] - a[3][2:4]).abs().max() > 1e-6  # the tuner made the tasks differ


def test_swinv2_lora_on_proj_is_upstream_with_the_updated_weight():
    torch.manual_seed(4)
    model = build(dict(type='LoRA', rank=2, scale=3.0, input_norm=False, targets='proj'),
                  encoder=SWINV2).double().eval()
    randomise(model.tuner)
    lora, x = model.tuner, _image(SWINV2)
    with torch.no_grad():
        ours = model(x)
        for t in range(len(TASKS)):
            ref = _reference(model, SWINV2)
            blocks = [b for stage in ref.stages for b in stage.blocks]
            for i, block in enumerate(blocks):
                delta = lora.lora_B[f'proj{i}'][t] @ lora.lora_A[f'proj{i}'][t]
                block.attn.w_msa.proj.weight += lora.scale * delta
            for u, v in zip(ours, ref(x)):
                torch.testing.assert_close(u[2 * t:2 * t + 2], v, rtol=0, atol=1e-10)


def test_swinv2_adapter_branch_is_the_post_norm_output():
    """Post-norm blocks, ``x + norm2(ffn(x))``: the parallel adapter's branch joins norm2's
    output, i.e. each upstream block's output plus A_t(the FFN's input)."""
    torch.manual_seed(5)
    model = build('Adapter', encoder=SWINV2).double().eval()
    randomise(model.tuner)
    ref = _reference(model, SWINV2)
    x = _image(SWINV2)
    with torch.no_grad():
        ours = model(x)
        for t in range(len(TASKS)):
            layers, kept = iter(model.layer_infos), {}
            handles = []
            for stage in ref.stages:
                for block in stage.blocks:
                    w = model.tuner.adapter_weights(next(layers), 'mlp')
                    handles.append(block.ffn.register_forward_pre_hook(
                        lambda m, a: kept.__setitem__('h', a[0])))
                    handles.append(block.register_forward_hook(
                        lambda m, a, out, w=w: out + _adapter(kept['h'], w, t)))
            expected = ref(x)
            for h in handles:
                h.remove()
            for u, v in zip(ours, expected):
                torch.testing.assert_close(u[2 * t:2 * t + 2], v, rtol=0, atol=1e-10)


@pytest.mark.parametrize('encoder,tuner', [(CONVNEXT, 'Adapter'), (CONVNEXT, 'BitFit'),
                                           (SWINV2, 'PolyhistorLite')],
                         ids=['convnext-adapter', 'convnext-bitfit', 'swinv2-lite'])
def test_gradients_reach_the_tuner_only(encoder, tuner):
    torch.manual_seed(6)
    model = build(tuner, encoder=encoder)
    randomise(model.tuner)
    sum(o.square().mean() for o in model(_image(encoder).float())).backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith('tuner.') for n in trained)
    assert not model._residuals  # every kept stream was consumed by its branch hook


@pytest.mark.parametrize('encoder,tuner,message', [
    (CONVNEXT, 'LoRA', r"LoRA targets \['qkv'\], which MMPretrainBackbone\(ConvNeXt\) does not "
     r'route .*ConvNeXt has no attention'),
    (CONVNEXT, 'MTLoRAShared', r'MTLoRAShared targets a linear that '
     r'MMPretrainBackbone\(ConvNeXt\) does not route'),
    (CONVNEXT, dict(type='Adapter', position='after_attn_and_mlp'),
     r'Adapter adapts the attention branch, which MMPretrainBackbone\(ConvNeXt\) does not'),
    (CONVNEXT, 'VPT', r'VPT adds prompt tokens, which MMPretrainBackbone\(ConvNeXt\)'),
    (CONVNEXT, 'MTLoRA', r'MTLoRA needs task_forks, which MMPretrainBackbone\(ConvNeXt\)'),
    (SWINV2, 'LoRA', r"LoRA targets \['qkv'\], which MMPretrainBackbone\(SwinTransformerV2\) "
     r'does not route .*F\.linear'),
    (SWINV2, dict(type='BitFit', rel_pos_tables=False),
     r'BitFit is not offered on MMPretrainBackbone\(SwinTransformerV2\): its q / v biases'),
    (SWINV2, 'MTLoRAShared', r'MTLoRAShared targets a linear that '
     r'MMPretrainBackbone\(SwinTransformerV2\) does not route'),
    (SWINV2, 'RelativeBias', r'RelativeBias needs relative_position_bias, which '
     r'MMPretrainBackbone\(SwinTransformerV2\)'),
], ids=lambda v: None)
def test_refused_pairs_name_the_method_and_the_backbone(encoder, tuner, message):
    with pytest.raises(ValueError, match=message):
        build(tuner, encoder=encoder)


def test_unsupported_encoder_settings_are_refused():
    with pytest.raises(ValueError, match=r'ConvNeXt\): gap_before_final_norm=True'):
        build('NoTuner', encoder=dict(CONVNEXT, gap_before_final_norm=True))
    with pytest.raises(ValueError, match=r'ConvNeXt\): linear_pw_conv=False'):
        build('NoTuner', encoder=dict(CONVNEXT, linear_pw_conv=False))
    with pytest.raises(ValueError, match=r'ConvNeXt\): activation checkpointing'):
        build('NoTuner', encoder=dict(CONVNEXT, with_cp=True))
    with pytest.raises(ValueError, match='extra norm'):
        arch = dict(SWINV2['arch'], extra_norm_every_n_blocks=1)
        build('NoTuner', encoder=dict(SWINV2, arch=arch))


@pytest.mark.parametrize('encoder,name', [(CONVNEXT, 'convnext-v2-tiny_3rdparty-fcmae.pth'),
                                          (SWINV2, 'swinv2-tiny-w8_3rdparty.pth')],
                         ids=['convnext', 'swinv2'])
def test_pretrained_by_url_in_mmpretrains_layout(tmp_path, served, monkeypatch,  # noqa: F811
                                                 encoder, name):
    """A release-shaped file over HTTP: every encoder weight arrives; SwinV2's coordinates
    table (a buffer derived from the window size) is the config's, whatever the file holds;
    the output norms the encoder leaves to the decoders are ignored."""
    folder, base, _ = served
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    torch.manual_seed(6)
    released = upstream(encoder)
    randomise(released)
    state = released.state_dict()
    for key in [k for k in state if 'relative_coords_table' in k]:
        state[key] = torch.zeros_like(state[key])  # must not be read
    _mmpretrain_checkpoint(folder / name, state)
    model = build('Adapter', encoder=encoder,
                  init_cfg=dict(type='Pretrained', checkpoint=f'{base}/{name}'))
    fresh = upstream(encoder).state_dict()
    for key, value in model.encoder.state_dict().items():
        expected = fresh[key] if 'relative_coords_table' in key else released.state_dict()[key]
        assert torch.equal(value, expected), key
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if not n.startswith('tuner.'))
    key = 'stages.1.0.pointwise_conv1.weight' if 'ConvNeXt' == encoder['type'] else \
        'stages.1.blocks.0.ffn.layers.0.0.weight'
    state.pop(key)
    _mmpretrain_checkpoint(folder / 'broken.pth', state)
    with pytest.raises(KeyError, match=rf'broken.pth is not a checkpoint .*{key}'):
        build('NoTuner', encoder=encoder,
              init_cfg=dict(type='Pretrained', checkpoint=f'{base}/broken.pth'))


def _count(config):
    from mmengine.config import Config
    from mmpoly.utils.param_count import build_model_without_weights
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    model = build_model_without_weights(cfg, random_init=False)
    assert type(model.backbone.encoder).__module__.startswith('mmpretrain.')
    return count_parameters(model)


def _upstream_numel(encoder):
    """mmpretrain's own backbone built from the config's encoder, without the output norms
    the encoder leaves to the decoders."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', encoder))
    ref = upstream(cfg.model.backbone.encoder.to_dict())
    return sum(p.numel() for n, p in ref.named_parameters() if not n.startswith('norm'))


def test_convnextv2_t_configs_count_against_mmpretrains_model_and_by_hand():
    frozen = _upstream_numel('multi_task_ft_convnextv2-t.py')
    assert _count('multi_task_ft_convnextv2-t.py')['encoder'] == frozen == 27_864_960
    assert _count('decoder_ft_convnextv2-t.py')['encoder'] == 0
    depths, dims = (3, 3, 9, 3), (96, 192, 384, 768)
    # BitFit, per task: stem conv + LayerNorm2d; each downsampling LayerNorm2d (input width)
    # and conv; each block: depthwise conv, norm, fc1 (4d), GRN beta (4d), fc2
    stem = 2 * dims[0]
    downsampling = sum(dims[i - 1] + dims[i] for i in range(1, 4))
    blocks = sum(n * 11 * d for n, d in zip(depths, dims))
    assert _count('bitfit_convnextv2-t.py')['encoder'] == 4 * (stem + downsampling + blocks) \
        == 300_288
    # Adapter, lambda = 2: d^2 + 3.5 d per block and task
    assert _count('adapter_convnextv2-t.py')['encoder'] == 4 * sum(
        n * (d * d + 7 * d // 2) for n, d in zip(depths, dims)) == 13_032_000


def test_swinv2_t_configs_count_against_mmpretrains_model_and_by_hand():
    frozen = _upstream_numel('multi_task_ft_swinv2-t.py')
    assert _count('multi_task_ft_swinv2-t.py')['encoder'] == frozen == 27_576_618
    # Adapter and Polyhistor(-Lite) see Swin-T's widths and depths: Swin-T's counts
    assert _count('adapter_swinv2-t.py')['encoder'] == 8_688_000
    assert _count('polyhistor_lite_swinv2-t.py')['encoder'] == 413_552


def test_swinv2_model_reloads_its_own_state_strictly():
    """mmpretrain's SwinV2 drops its derived buffers from every state dict it loads; a strict
    load of this model's own state (adapter-only checkpoints load strictly) still works, and
    a missing weight still fails."""
    torch.manual_seed(7)
    source, target = build('Adapter', encoder=SWINV2), build('Adapter', encoder=SWINV2)
    randomise(source)
    target.load_state_dict(source.state_dict(), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    state = source.state_dict()
    state.pop('encoder.stages.0.blocks.0.norm1.weight')
    with pytest.raises(RuntimeError, match=r'Missing key.*stages\.0\.blocks\.0\.norm1\.weight'):
        target.load_state_dict(state, strict=True)


def _registered_tuners():
    from mmseg.registry import MODELS
    from mmpoly.models.tuners.base import BaseTuner
    return sorted(n for n, c in MODELS.module_dict.items()
                  if isinstance(c, type) and issubclass(c, BaseTuner))


@pytest.mark.parametrize('encoder', [CONVNEXT, SWINV2], ids=['convnext', 'swinv2'])
def test_every_registered_tuner_runs_or_is_refused_by_name(encoder):
    """No tuner is silently ignored nor crashes elsewhere: it runs, or the backbone refuses
    it with an error naming the tuner and the encoder."""
    options = {'PHMAdapter': dict(reduction=2)}  # (its phm_dim must divide the narrow widths)
    ran, refused = [], []
    for name in _registered_tuners():
        try:
            model = build(dict(type=name, **options.get(name, {})), encoder=encoder)
        except ValueError as error:
            assert name in str(error) and f"MMPretrainBackbone({encoder['type']})" in str(error)
            refused.append(name)
            continue
        with torch.no_grad():
            model(_image(encoder).float())
        ran.append(name)
    assert {'Adapter', 'Polyhistor', 'PolyhistorLite', 'FullFineTuning'} <= set(ran)
    assert {'LoRA', 'MTLoRAShared', 'MTLoRA', 'VPT'} <= set(refused)
