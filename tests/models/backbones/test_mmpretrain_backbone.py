"""mmpretrain backbones, unmodified, as multi-task encoders (``MMPretrainBackbone``).

Oracles, none of them this project's forward: mmpretrain's own ``VisionTransformer`` run
alone with edited weights (LoRA without its input norm is the weight W + s B_t A_t; BitFit is
the biases b + db_t), mmpretrain's own position-table resizing (its load hook), and today's
``PolyhistorSwin`` for the Swin V1 cross-check. Equalities in float64."""
import copy
import os.path as osp

import pytest
import torch

mmpretrain = pytest.importorskip('mmpretrain')

import mmpoly  # noqa: E402,F401
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmpoly.models.backbones.mmpretrain_backbone import TunedLinear  # noqa: E402
from mmpoly.utils.param_count import count_parameters  # noqa: E402
from .test_pretrained_url import served  # noqa: E402,F401  (the local HTTP server fixture)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TASKS = ('semseg', 'depth', 'normals')
VIT = dict(type='VisionTransformer', arch=dict(embed_dims=24, num_layers=3, num_heads=2,
                                               feedforward_channels=48),
           img_size=56, patch_size=14, layer_scale_init_value=0.1, out_type='featmap',
           out_indices=-1, drop_path_rate=0.0)
NECK = dict(type='Feature2Pyramid', embed_dim=24, rescales=[4, 2, 1, 0.5],
            norm_cfg=dict(type='BN'))
SWIN = dict(type='SwinTransformer', arch=dict(embed_dims=16, depths=[2, 2, 2, 2],
                                              num_heads=[1, 2, 2, 4]),
            img_size=160, window_size=4, drop_path_rate=0.0, out_indices=(0, 1, 2, 3))


def build(tuner='NoTuner', encoder=VIT, neck=None, **kwargs):
    init_default_scope('mmseg')
    tuner = dict(type=tuner) if isinstance(tuner, str) else tuner
    model = MODELS.build(dict(type='MMPretrainBackbone', encoder=encoder, tasks=TASKS,
                              tuner=tuner, neck=neck, **kwargs))
    model.init_weights()
    return model


def upstream(encoder=VIT):
    """mmpretrain's own class, by name from its module (no registry scope in between)."""
    from mmpretrain.models import backbones
    kwargs = copy.deepcopy(encoder)
    return getattr(backbones, kwargs.pop('type'))(**kwargs)


def randomise(module, std=0.2):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)


def test_the_encoder_is_mmpretrains_class_with_its_own_keys():
    from mmpretrain.models.backbones import VisionTransformer
    model = build('LoRA')
    assert type(model.encoder) is VisionTransformer
    assert type(model.encoder).forward is VisionTransformer.forward  # its own forward runs
    ref = upstream()
    assert set(model.encoder.state_dict()) == set(ref.state_dict())
    qkv = model.encoder.layers[1].attn.qkv
    assert isinstance(qkv, TunedLinear) and qkv.weight is qkv.frozen.weight
    assert [layer.dim for layer in model.layer_infos] == [24] * 3
    assert [layer.scale for layer in model.layer_infos] == [1] * 3


@pytest.mark.parametrize('tuner', ['NoTuner', 'FrozenTaskStacked'])
def test_identity_tuners_give_upstream_output(tuner):
    torch.manual_seed(0)
    model = build(tuner).double().eval()
    ref = upstream().double()
    ref.eval()  # (mmpretrain's train() returns None: no chaining)
    ref.load_state_dict(model.encoder.state_dict())
    x = torch.randn(2, 3, 56, 70, dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
        (expected, ) = ref(x)
    rows = len(TASKS) if tuner == 'FrozenTaskStacked' else 1
    assert len(ours) == 1 and ours[0].shape == (rows * 2, 24, 4, 5)
    torch.testing.assert_close(ours[0], expected.repeat(rows, 1, 1, 1), rtol=0, atol=1e-12)


def _per_task_upstream(model, edit):
    """For each task t: mmpretrain's own ViT with the frozen weights, ``edit(ref, t)`` applied."""
    refs = []
    for t in range(len(TASKS)):
        ref = upstream().double()
        ref.eval()
        ref.load_state_dict(model.encoder.state_dict())
        with torch.no_grad():
            edit(ref, t)
        refs.append(ref)
    return refs


def test_lora_is_the_upstream_vit_with_the_updated_weight():
    torch.manual_seed(1)
    model = build(dict(type='LoRA', rank=2, scale=3.0, input_norm=False,
                       targets=('qkv', 'proj'))).double().eval()
    randomise(model.tuner)  # B starts at zero: make every update count
    lora = model.tuner

    def edit(ref, t):
        for i, layer in enumerate(ref.layers):
            for name in ('qkv', 'proj'):
                linear = getattr(layer.attn, name)
                delta = lora.lora_B[f'{name}{i}'][t] @ lora.lora_A[f'{name}{i}'][t]
                linear.weight += lora.scale * delta

    x = torch.randn(2, 3, 56, 56, dtype=torch.float64)
    with torch.no_grad():
        (ours, ) = model(x)
        expected = torch.cat([ref(x)[0] for ref in _per_task_upstream(model, edit)])
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)
    assert (ours[:2] - ours[2:4]).abs().max() > 1e-3  # the tasks differ


def test_mtlora_shared_is_the_upstream_vit_with_one_updated_weight_for_every_task():
    """MTLoRA's TA-LoRA without the fork: W + s B A in every linear, the same for every
    task; it trains the patch embedding and the ViT's norms (ln1, ln2, the final ln1)."""
    torch.manual_seed(7)
    model = build(dict(type='MTLoRAShared', rank=2, shared_scale=3.0))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trained if not n.startswith('tuner.')} == {
        n for n, _ in model.named_parameters()
        if n.startswith(('encoder.patch_embed.', 'encoder.ln1.'))
        or '.ln1.' in n or '.ln2.' in n}
    model.double().eval()
    randomise(model.tuner)
    assert not model.per_task_features
    mt = model.tuner
    sites = dict(qkv=('attn', 'qkv'), proj=('attn', 'proj'), fc1=('ffn', None),
                 fc2=('ffn', None))

    def edit(ref, t):
        for i, layer in enumerate(ref.layers):
            for name, (part, attr) in sites.items():
                if name == 'fc1':
                    linear = layer.ffn.layers[0][0]
                elif name == 'fc2':
                    linear = layer.ffn.layers[1]
                else:
                    linear = getattr(getattr(layer, part), attr)
                linear.weight += 3.0 * mt.shared_B[f'{name}{i}'] @ mt.shared_A[f'{name}{i}']

    x = torch.randn(2, 3, 56, 56, dtype=torch.float64)
    with torch.no_grad():
        (ours, ) = model(x)
        (expected, ) = _per_task_upstream(model, edit)[0](x)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match='MTLoRAShared fixes'):
        build(dict(type='MTLoRAShared', shared_mode='matrix'))


def test_bitfit_is_the_upstream_vit_with_shifted_biases():
    torch.manual_seed(2)
    model = build('BitFit').double().eval()
    randomise(model.tuner)
    biases = model.tuner.biases
    assert len(biases) == sum(1 for m in model.encoder.modules()
                              if isinstance(getattr(m, 'bias', None), torch.nn.Parameter))

    def edit(ref, t):
        for name, module in ref.named_modules():
            key = f'encoder_{name}'.replace('.', '_')
            if isinstance(getattr(module, 'bias', None), torch.nn.Parameter):
                module.bias += biases[key][t]

    x = torch.randn(1, 3, 56, 56, dtype=torch.float64)
    with torch.no_grad():
        (ours, ) = model(x)
        expected = torch.cat([ref(x)[0] for ref in _per_task_upstream(model, edit)])
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize('tuner', ['Adapter', 'PolyhistorLite', 'Polyhistor', 'LoRA', 'BitFit'])
def test_stacked_pass_equals_the_per_task_loop_with_the_neck_in_training(tuner):
    """The task-stacked T x B batch and T separate passes agree, also for the neck's
    BatchNorm in training mode (one neck pass per task group, no statistics shared)."""
    torch.manual_seed(3)
    stacked = build(tuner, neck=NECK).double()
    randomise(stacked.tuner)
    loop = build(tuner, neck=NECK, task_batching='loop').double()
    loop.load_state_dict(stacked.state_dict())
    x = torch.randn(2, 3, 56, 56, dtype=torch.float64)
    a, b = stacked.train()(x), loop.train()(x)
    assert [tuple(o.shape) for o in a] == [(6, 24, 16, 16), (6, 24, 8, 8), (6, 24, 4, 4),
                                           (6, 24, 2, 2)]
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-10)
    # the tuner changed the features: without it every task's rows would be equal
    assert (a[2][:2] - a[2][2:4]).abs().max() > 1e-6


def test_adapter_gradients_reach_only_the_tuner_and_the_neck():
    torch.manual_seed(4)
    model = build('Adapter', neck=NECK)
    randomise(model.tuner)
    sum(o.square().mean() for o in model(torch.randn(2, 3, 56, 56))).backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(('tuner.', 'neck.')) for n in trained)
    assert any(n.startswith('tuner.') for n in trained)


@pytest.mark.parametrize('tuner,need', [('RelativeBias', 'relative_position_bias'),
                                        ('MTLoRA', 'task_forks'), ('DiTASK', 'task_forks'),
                                        ('FreeSinewich', 'task_forks')])
def test_a_method_reaching_inside_the_attention_is_refused_by_name(tuner, need):
    with pytest.raises(ValueError, match=rf'{tuner} needs {need}, which '
                       r'MMPretrainBackbone\(VisionTransformer\) does not offer'):
        build(tuner)


def test_vpt_prompts_and_swin_bitfit_tables_are_refused_not_ignored():
    with pytest.raises(ValueError, match=r'VPT adds prompt tokens, which '
                       r'MMPretrainBackbone\(VisionTransformer\) does not offer'):
        build(dict(type='VPT'))
    with pytest.raises(ValueError, match=r'BitFit adds attention logits .* '
                       r'MMPretrainBackbone\(SwinTransformer\) does not offer'):
        build('BitFit', encoder=SWIN)
    build(dict(type='BitFit', rel_pos_tables=False), encoder=SWIN)  # its biases alone


CONVNEXT = dict(type='ConvNeXt', arch=dict(depths=[1, 1, 2, 1], channels=[8, 16, 24, 32]),
                use_grn=True, layer_scale_init_value=0., gap_before_final_norm=False,
                out_indices=(0, 1, 2, 3), drop_path_rate=0.0, img_size=64)
SWINV2 = dict(type='SwinTransformerV2',
              arch=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                        extra_norm_every_n_blocks=0),
              img_size=128, window_size=[4, 4, 4, 4], drop_path_rate=0.0,
              out_indices=(0, 1, 2, 3))


@pytest.mark.parametrize('encoder', [VIT, SWIN, CONVNEXT, SWINV2],
                         ids=['vit', 'swin', 'convnext', 'swinv2'])
def test_every_tuned_linear_runs_in_the_upstream_forward(encoder):
    """An upstream forward that bypassed a linear module (``F.linear(x, m.weight)``, as
    SwinV2's qkv) would leave the tuner out silently: every TunedLinear is called once, and
    every linear a layer routes (``LayerInfo.linears``) is one of them."""
    encoder = dict(encoder)
    size = encoder['img_size']
    if encoder['type'] == 'ConvNeXt':
        encoder.pop('img_size')
    model = build('NoTuner', encoder=encoder)
    calls = []
    for name, module in model.named_modules():
        if isinstance(module, TunedLinear):
            module.register_forward_hook(lambda m, a, o, name=name: calls.append(name))
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    assert sorted(calls) == sorted(n for n, m in model.named_modules()
                                   if isinstance(m, TunedLinear))
    assert len(calls) == sum(len(layer.linears) for layer in model.layer_infos) > 0


def test_checkpointing_inside_the_encoder_is_refused():
    with pytest.raises(ValueError, match=r'SwinTransformer\): activation checkpointing'):
        build('LoRA', encoder=dict(SWIN, with_cp=True))


def _mmpretrain_checkpoint(path, encoder_state):
    """A file in mmpretrain's layout: ``meta`` and ``state_dict`` with ``backbone.`` keys
    (and a head, which the encoder ignores)."""
    state = {f'backbone.{k}': v.clone() for k, v in encoder_state.items()}
    state['head.layers.head.weight'] = torch.zeros(5, 4)
    torch.save(dict(meta=dict(mmpretrain_version='1.2.0'), state_dict=state), path)


def test_swin_v1_through_the_attachment_equals_polyhistor_swin(tmp_path):
    """The cross-check: mmpretrain's Swin V1 with LoRA attached gives today's PolyhistorSwin
    with LoRA's per-task features, on the same weights read from one mmpretrain checkpoint."""
    torch.manual_seed(5)
    source = upstream(SWIN)
    randomise(source, std=0.1)
    path = str(tmp_path / 'swin_tiny_mmpretrain.pth')
    _mmpretrain_checkpoint(path, source.state_dict())
    lora = dict(type='LoRA', rank=2, scale=4.0, targets=('qkv', 'proj'))
    ours = build(lora, encoder=SWIN, init_cfg=dict(type='Pretrained', checkpoint=path))
    today = MODELS.build(dict(
        type='PolyhistorSwin', tasks=TASKS, tuner=lora, pretrain_img_size=160, embed_dims=16,
        depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=4, drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=path)))
    today.init_weights()
    randomise(ours.tuner)
    today.tuner.load_state_dict(ours.tuner.state_dict())
    for key, value in today.state_dict().items():  # both read the same file
        torch.testing.assert_close(ours.state_dict()[f'encoder.{key}'] if not key.startswith(
            'tuner.') else ours.state_dict()[key], value, rtol=0, atol=0)
    ours.double().eval(), today.double().eval()
    x = torch.randn(2, 3, 160, 160, dtype=torch.float64)  # every stage larger than a window
    with torch.no_grad():
        a, b = ours(x), today(x)
    assert [tuple(o.shape) for o in a] == [(6, 16, 40, 40), (6, 32, 20, 20), (6, 64, 10, 10),
                                           (6, 128, 5, 5)]
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-10)
    assert (a[3][:2] - a[3][2:4]).abs().max() > 1e-4  # LoRA made the tasks differ
    # where a stage's map is no larger than a window (128 px: 4 x 4 in the last stage, as
    # Swin-T's 7 x 7 at 224 px) the two libraries differ upstream: mmpretrain's Swin drops
    # the shift there (as the official code), mmseg's keeps it with its mask
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64)
    with torch.no_grad():
        a, b = ours(x), today(x)
    for u, v in zip(a[:3], b[:3]):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-10)
    assert (a[3] - b[3]).abs().max() > 1e-3


def test_pretrained_by_url_in_mmpretrains_layout(tmp_path, served, monkeypatch):  # noqa: F811
    """A DINOv2-shaped checkpoint (a 5 x 5 position grid, as a 518 px release is 37 x 37)
    served over HTTP: every weight arrives, the position table resized as mmpretrain's own
    load hook resizes it; a checkpoint of another model is refused naming the file."""
    folder, base, _ = served
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    torch.manual_seed(6)
    released = upstream(dict(VIT, img_size=70))
    randomise(released)
    _mmpretrain_checkpoint(folder / 'vit-tiny-p14_dinov2-pre.pth', released.state_dict())
    url = f'{base}/vit-tiny-p14_dinov2-pre.pth'
    model = build('LoRA', init_cfg=dict(type='Pretrained', checkpoint=url))
    oracle = upstream()  # 4 x 4 grid; mmpretrain's pre-hook resizes the 5 x 5 table
    oracle.load_state_dict(released.state_dict())
    for key, value in oracle.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    assert model.encoder.pos_embed.shape == (1, 17, 24)
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if not n.startswith('tuner.'))

    state = released.state_dict()
    state.pop('layers.2.attn.qkv.weight')
    _mmpretrain_checkpoint(folder / 'broken.pth', state)
    with pytest.raises(KeyError, match=r'broken.pth is not a checkpoint .*layers\.2\.attn\.qkv'):
        build('LoRA', init_cfg=dict(type='Pretrained', checkpoint=f'{base}/broken.pth'))


def test_dinov2_configs_count_with_the_neck_among_the_decoders():
    from mmengine.config import Config
    from mmpoly.utils.param_count import build_model_without_weights
    counts = {}
    for method in ('decoder_ft', 'lora', 'multi_task_ft'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', f'{method}_dinov2-s.py'))
        model = build_model_without_weights(cfg, random_init=False)
        assert type(model.backbone.encoder).__module__.startswith('mmpretrain.')
        counts[method] = count_parameters(model)
    # LoRA r = 4 with its input norm: 18 d per layer and task, d = 384, 12 layers, 4 tasks
    assert counts['lora']['encoder'] == 4 * 12 * 18 * 384 == 331_776
    assert counts['decoder_ft']['encoder'] == 0
    # ViT-S/14 by hand: patch embedding 14 * 14 * 3 * 384 + 384, class token, 37 * 37 + 1
    # positions, 12 layers (2 LayerNorms, qkv, proj, fc1, fc2, 2 layer scales), final norm
    layer = 2 * 768 + (384 * 1152 + 1152) + (384 * 384 + 384) + (384 * 1536 + 1536) + (
        1536 * 384 + 384) + 2 * 384
    assert counts['multi_task_ft']['encoder'] == (
        14 * 14 * 3 * 384 + 384 + 384 + 1370 * 384 + 12 * layer + 768) == 22_056_192
    neck = counts['lora']['groups']['neck (pyramid of a plain ViT)']
    assert neck == counts['decoder_ft']['groups']['neck (pyramid of a plain ViT)'] > 0


def test_demo_trains_one_iteration(tmp_path):
    from ..tuners import helpers
    demo = osp.join(REPO, 'configs', 'demo', 'lora_vit-tiny_synthetic.py')
    model, before, after, state = helpers.train_demo_one_iteration(demo, tmp_path)
    assert type(model.backbone.encoder).__name__ == 'VisionTransformer'
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert {n for n in moved if '.tuner.lora_B.' in n} == {
        n for n in before if '.tuner.lora_B.' in n}
    assert any('.neck.' in n for n in moved)
    assert not any(n.startswith('backbone.encoder.') for n in moved)
    assert moved <= {n for n, p in after.items() if p.requires_grad}
    assert any(k.startswith('backbone.tuner.lora_B.') for k in state)
