import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmpoly  # noqa: F401
from mmpoly.models.backbones.polyhistor_pvt import convert_official_pvt
from mmpoly.models.tuners import BaseTuner, TaskContext
from mmseg.models.backbones import SwinTransformer
from mmseg.registry import MODELS

# heads divide the widths; scales 1, 2, 5, 8 as PVT-Small's 64, 128, 320, 512
TINY = dict(pretrain_img_size=64, embed_dims=(16, 32, 80, 128), depths=(1, 2, 1, 1),
            num_heads=(1, 2, 5, 8), mlp_ratios=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1),
            drop_path_rate=0.0)
TASKS = ('semseg', 'human_parts', 'sal')


def build(**kwargs):
    cfg = dict(type='PolyhistorPVT', tasks=TASKS, **TINY)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def perturb_(module, std=0.2):
    """Random values for every parameter (so zero-initialised parts act)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)


# ----------------------------------------------------------------------------------------
# The oracle: PVT v1 as whai362/PVT classification/pvt.py builds it (module names, cls token,
# head, eps), with the dense forward of its detection/pvt.py (pos_embed4[:, 1:], no norm).
class OfficialAttention(nn.Module):

    def __init__(self, dim, num_heads, sr_ratio):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x_ = x.permute(0, 2, 1).reshape(B, C, H, W)
            x_ = self.sr(x_).reshape(B, C, -1).permute(0, 2, 1)
            x_ = self.norm(x_)
            kv = self.kv(x_).reshape(B, -1, 2, self.num_heads,
                                     C // self.num_heads).permute(2, 0, 3, 1, 4)
        else:
            kv = self.kv(x).reshape(B, -1, 2, self.num_heads,
                                    C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class OfficialMlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class OfficialBlock(nn.Module):

    def __init__(self, dim, num_heads, mlp_ratio, sr_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = OfficialAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = OfficialMlp(dim, int(dim * mlp_ratio))

    def forward(self, x, H, W):
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x))


class OfficialPatchEmbed(nn.Module):

    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.H = self.W = img_size // patch_size
        self.num_patches = self.H * self.W
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        B, C, H, W = x.shape
        x = self.norm(self.proj(x).flatten(2).transpose(1, 2))
        return x, (H // self.patch_size, W // self.patch_size)


class OfficialPVT(nn.Module):

    def __init__(self, img_size, embed_dims, depths, num_heads, mlp_ratios, sr_ratios,
                 num_classes=10, **unused):
        super().__init__()
        for i in range(4):
            pe = OfficialPatchEmbed(img_size if i == 0 else img_size // (2**(i + 1)),
                                    4 if i == 0 else 2, 3 if i == 0 else embed_dims[i - 1],
                                    embed_dims[i])
            num_patches = pe.num_patches if i != 3 else pe.num_patches + 1
            setattr(self, f'patch_embed{i + 1}', pe)
            setattr(self, f'pos_embed{i + 1}',
                    nn.Parameter(torch.zeros(1, num_patches, embed_dims[i])))
            setattr(self, f'block{i + 1}', nn.ModuleList([
                OfficialBlock(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i])
                for _ in range(depths[i])
            ]))
        self.norm = nn.LayerNorm(embed_dims[3], eps=1e-6)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[3]))
        self.head = nn.Linear(embed_dims[3], num_classes)

    def _get_pos_embed(self, pos_embed, patch_embed, H, W):
        if H * W == self.patch_embed1.num_patches:
            return pos_embed
        return F.interpolate(
            pos_embed.reshape(1, patch_embed.H, patch_embed.W, -1).permute(0, 3, 1, 2),
            size=(H, W), mode='bilinear').reshape(1, -1, H * W).permute(0, 2, 1)

    def forward_dense(self, x):
        B, outs = x.shape[0], []
        for i in range(4):
            patch_embed = getattr(self, f'patch_embed{i + 1}')
            pos_embed = getattr(self, f'pos_embed{i + 1}')
            x, (H, W) = patch_embed(x)
            x = x + self._get_pos_embed(pos_embed[:, 1:] if i == 3 else pos_embed,
                                        patch_embed, H, W)
            for blk in getattr(self, f'block{i + 1}'):
                x = blk(x, H, W)
            x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


def official_checkpoint(tmp_path, wrap=True):
    torch.manual_seed(0)
    official = OfficialPVT(img_size=TINY['pretrain_img_size'], **TINY)
    perturb_(official)
    path = str(tmp_path / 'pvt_tiny_official.pth')
    state_dict = official.state_dict()
    torch.save(dict(model=state_dict) if wrap else state_dict, path)
    return official.eval(), path


# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('size', [(64, 64), (72, 56)])
def test_identity_tuner_on_official_checkpoint_equals_official_pvt(tmp_path, size):
    official, path = official_checkpoint(tmp_path)
    model = build(init_cfg=dict(type='Pretrained', checkpoint=path))
    model.double(), official.double()  # an equality: float64, where CPUs' rounding agrees
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        ours, ref = model(x), official.forward_dense(x)
    assert len(ours) == 4
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_official_conversion_keys(tmp_path):
    official, _ = official_checkpoint(tmp_path)
    sd = official.state_dict()
    converted = convert_official_pvt(sd)
    model = build()
    own = {k for k in model.state_dict() if not k.startswith('tuner.')}
    assert set(converted) == own  # cls token, final norm and head dropped, nothing missing
    torch.testing.assert_close(converted['pos_embed4'], sd['pos_embed4'][:, 1:])
    torch.testing.assert_close(converted['pos_embed1'], sd['pos_embed1'])
    assert convert_official_pvt(converted).keys() == converted.keys()  # our keys: a no-op
    # plain state dicts and DDP prefixes load too
    plain = tmp_path / 'plain.pth'
    torch.save({f'module.{k}': v for k, v in sd.items()}, plain)
    loaded = build(init_cfg=dict(type='Pretrained', checkpoint=str(plain)))
    torch.testing.assert_close(loaded.block2[1].attn.kv.weight, sd['block2.1.attn.kv.weight'])


def official_resize(pos_embed, src, dst):
    """The official PVT's ``_get_pos_embed``: (1, h*w, C) on an (h, w) grid, bilinear."""
    C = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, src, src, C).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=(dst, dst), mode='bilinear').reshape(1, C, dst * dst) \
        .permute(0, 2, 1)


def test_pos_embed_resized_to_another_pretrain_size(tmp_path):
    official, path = official_checkpoint(tmp_path)
    model = build(pretrain_img_size=96, init_cfg=dict(type='Pretrained', checkpoint=path))
    sd = official.state_dict()
    # 64 px pretraining -> 96 px: grids 16 -> 24, 8 -> 12, 4 -> 6, 2 -> 3 (stage 4 without
    # the cls token's row)
    for i, (src, dst) in enumerate([(16, 24), (8, 12), (4, 6), (2, 3)], start=1):
        table = sd[f'pos_embed{i}']
        table = table[:, 1:] if i == 4 else table
        got = getattr(model, f'pos_embed{i}')
        assert got.shape == (1, dst * dst, TINY['embed_dims'][i - 1])
        torch.testing.assert_close(got.data, official_resize(table, src, dst), rtol=0,
                                   atol=1e-6, msg=f'pos_embed{i}')
        assert not torch.equal(got.data[:, :src * src], table)  # really resampled


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    swin = SwinTransformer(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                           window_size=4, pretrain_img_size=64)
    path = str(tmp_path / 'swin.pth')
    torch.save(dict(state_dict=swin.state_dict()), path)
    with pytest.raises(KeyError, match=r'swin\.pth.*\d+ weights are missing.*block1\.0\.attn'):
        build(init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        build(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nowhere.pth')))


def test_backbone_frozen_unless_full_finetuning():
    frozen = build()
    assert not any(p.requires_grad for p in frozen.parameters())
    full = build(tuner=dict(type='FullFineTuning'))
    assert all(p.requires_grad for p in full.parameters())
    adapter = build(tuner=dict(type='Adapter'))
    for name, p in adapter.named_parameters():
        assert p.requires_grad == name.startswith('tuner.'), name
    assert not hasattr(full, 'norm') and not hasattr(full, 'cls_token')


def test_layer_description():
    layers = build().layer_infos
    assert [l.dim for l in layers] == [16, 32, 32, 80, 128]
    assert [l.scale for l in layers] == [1, 2, 2, 5, 8]
    assert [l.stage for l in layers] == [0, 1, 1, 2, 3]
    assert [l.index_in_stage for l in layers] == [0, 0, 1, 0, 0]
    assert layers[2].name == 'block2.1' and layers[2].num_heads == 2
    assert layers[2].mlp_hidden == 64
    assert all(l.window_size == 0 for l in layers)


class RecordingTuner(BaseTuner):
    """Records the ``linear`` calls: (layer name, projection, rows of its input)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def linear(self, ctx, layer, name, module, x):
        self.calls.append((layer.name, name, x.shape[1]))
        return module(x)


def test_linear_hook_names():
    """Every linear of a PVT layer goes through the hook: the attention's q, kv, proj and the
    MLP's fc1, fc2 (before the shared layer skeleton, PVT ran its MLP past the hook, so a
    tuner on fc1 / fc2 silently did nothing)."""
    model = build(tuner=dict(type=RecordingTuner))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    calls = model.tuner.calls
    names = {name for name, _, _ in model.layer_infos[0].linears}
    assert {name for _, name, _ in calls} == names == {'q', 'kv', 'proj', 'fc1', 'fc2'}
    # block1: 16x16 tokens, keys / values from (16/8)^2 reduced tokens
    assert [c for c in calls if c[0] == 'block1.0'] == [
        ('block1.0', 'q', 256), ('block1.0', 'kv', 4), ('block1.0', 'proj', 256),
        ('block1.0', 'fc1', 256), ('block1.0', 'fc2', 256)]
    info = model.layer_infos[0]
    assert info.linears == (('q', 16, 16), ('kv', 16, 32), ('proj', 16, 16),
                            ('fc1', 16, info.mlp_hidden), ('fc2', info.mlp_hidden, 16))
    block = model.block1[0]
    assert (block.mlp.fc1.in_features, block.mlp.fc1.out_features) == (16, info.mlp_hidden)


class Fc1LoRA(BaseTuner):
    """A task-specific low-rank update of every layer's fc1, written here (LoRA's own targets
    are the attention's): ``fc1(x) + s B_t A_t x``."""
    task_specific = True

    def __init__(self, rank=2, scale=0.5, **kwargs):
        super().__init__(**kwargs)
        T = self.num_tasks
        self.scale = scale
        self.A = nn.ParameterList(
            [nn.Parameter(torch.randn(T, rank, layer.dim)) for layer in self.layers])
        self.B = nn.ParameterList(
            [nn.Parameter(torch.randn(T, layer.mlp_hidden, rank)) for layer in self.layers])

    def delta(self, layer, t):
        return self.scale * self.B[layer.index][t] @ self.A[layer.index][t]

    def linear(self, ctx, layer, name, module, x):
        out = module(x)
        if name != 'fc1':
            return out
        h = ctx.per_task(x)
        A = ctx.select(self.A[layer.index])
        B = ctx.select(self.B[layer.index])
        update = torch.einsum('tmd,trd->tmr', h.flatten(1, -2), A)
        update = torch.einsum('tmr,tor->tmo', update, B).reshape(*h.shape[:-1], -1)
        return out + self.scale * update.reshape(out.shape)


@pytest.mark.parametrize('backbone', ['PolyhistorPVT', 'PolyhistorSwin'])
def test_lora_on_fc1_changes_the_output(backbone):
    """A tuner on 'fc1' acts on PVT as on Swin. Oracles (float64): the output differs from
    the frozen backbone's, and task t's rows equal a frozen backbone whose every fc1 weight
    is W + s B_t A_t."""
    from tests.models.tuners.helpers import EXACT
    if backbone == 'PolyhistorPVT':
        arch = dict(TINY)
    else:
        arch = dict(pretrain_img_size=64, embed_dims=16, depths=[1, 1], num_heads=[1, 2],
                    window_size=4, out_indices=(0, 1))
    torch.manual_seed(0)
    tuned = MODELS.build(dict(type=backbone, tasks=TASKS, tuner=dict(type=Fc1LoRA), **arch))
    tuned.init_weights()
    frozen = MODELS.build(dict(type=backbone, tasks=TASKS, **arch))
    for model in tuned, frozen:  # mmseg's Swin.train() returns None: no chaining
        model.double()
        model.eval()
    own = {k: v for k, v in tuned.state_dict().items() if not k.startswith('tuner.')}
    frozen.load_state_dict(own)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        outs = tuned(x)
        plain = frozen(x)
        assert all(o.shape[0] == len(TASKS) * 2 for o in outs)
        assert (outs[-1][:2] - plain[-1]).abs().max() > 1e-3
        assert len(fc1_modules(frozen)) == len(tuned.layer_infos)
        for t in range(len(TASKS)):
            edited = copy.deepcopy(frozen)
            for layer, fc1 in zip(tuned.layer_infos, fc1_modules(edited)):
                fc1.weight += tuned.tuner.delta(layer, t)
            for level, ref in zip(outs, edited(x)):
                torch.testing.assert_close(level[2 * t:2 * t + 2], ref, **EXACT)


def fc1_modules(backbone):
    """Every layer's fc1, in layer order (PVT: ``mlp.fc1``; mmseg's Swin: ``ffn.layers.0.0``)."""
    return [m for n, m in backbone.named_modules()
            if n.endswith('mlp.fc1') or n.endswith('ffn.layers.0.0')]


@pytest.mark.parametrize('tuner', [
    dict(type='Adapter'),
    dict(type='VPT', num_tokens=3, deep=True),
    dict(type='VPT', num_tokens=3, deep=False),
])
def test_stacked_equals_loop(tuner):
    stacked = build(tuner=tuner)
    perturb_(stacked.tuner)
    loop = build(tuner=tuner, task_batching='loop')
    loop.load_state_dict(stacked.state_dict())
    stacked.double(), loop.double()  # an equality: float64, where CPUs' rounding agrees
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    with torch.no_grad():
        a, b, plain = stacked(x), loop(x), build().double()(x)
    for level_a, level_b, level_plain in zip(a, b, plain):
        assert level_a.shape[0] == len(TASKS) * 2  # T * B rows, task-major
        torch.testing.assert_close(level_a, level_b, atol=1e-10, rtol=1e-10)
    per_task = a[3].chunk(len(TASKS))
    assert not torch.allclose(per_task[0], per_task[1])  # the tuner acts per task


def prompted_block_reference(blk, x, prompts, H, W):
    """One PVT layer with prompts joining the queries and the keys / values, the spatial
    reduction acting on the image tokens only; written with plain ops."""
    B, N, C = x.shape
    P, heads = prompts.shape[1], blk.attn.num_heads
    h, p = blk.norm1(x), blk.norm1(prompts)
    reduced = F.conv2d(h.transpose(1, 2).reshape(B, C, H, W), blk.attn.sr.weight,
                       blk.attn.sr.bias, stride=blk.attn.sr_ratio).flatten(2).transpose(1, 2)
    reduced = blk.attn.norm(reduced)
    tokens, kv_tokens = torch.cat([p, h], 1), torch.cat([p, reduced], 1)
    q = F.linear(tokens, blk.attn.q.weight, blk.attn.q.bias)
    k, v = F.linear(kv_tokens, blk.attn.kv.weight, blk.attn.kv.bias).chunk(2, dim=-1)
    split = lambda t: t.reshape(B, t.shape[1], heads, C // heads).transpose(1, 2)  # noqa
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    out = blk.attn.proj(out.transpose(1, 2).reshape(B, P + N, C))[:, P:]
    x = x + out
    return x + blk.mlp(blk.norm2(x))


def test_prompts_join_queries_and_reduced_keys():
    model = build(tuner=dict(type='VPT', num_tokens=3, deep=True))
    perturb_(model)
    tuner, layer, blk = model.tuner, model.layer_infos[0], model.block1[0]
    x = torch.randn(len(TASKS), 16 * 12, 16)  # one image per task, task-major
    with torch.no_grad():
        ctx = TaskContext.all_tasks(len(TASKS))
        ours, _ = model._layer(ctx, layer, blk, x, (16, 12), None)
        prompts = tuner.layer_prompts(ctx, layer, None, x.shape[0])
        ref = prompted_block_reference(blk, x, prompts, 16, 12)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


class NeedsWindows(BaseTuner):
    needs = ('windows', )


class UndeclaredBias(BaseTuner):

    def attn_bias(self, ctx, layer):
        return torch.zeros(1, layer.num_heads, 1, 1)


def test_tuners_that_need_swin_are_refused():
    with pytest.raises(ValueError, match='relative.position.bias'):
        build(tuner=dict(type='RelativeBias'))
    with pytest.raises(ValueError, match='NeedsWindows needs windows, which PolyhistorPVT does not have'):
        build(tuner=dict(type=NeedsWindows))
    model = build(tuner=dict(type=UndeclaredBias))
    with pytest.raises(NotImplementedError, match='no relative position bias'):
        model(torch.randn(1, 3, 64, 64))


def test_bad_config():
    with pytest.raises(ValueError, match='task_batching'):
        MODELS.build(dict(type='PolyhistorPVT', task_batching='sometimes', **TINY))
    with pytest.raises(ValueError, match='sr_ratios'):
        MODELS.build(dict(type='PolyhistorPVT', **dict(TINY, sr_ratios=(8, 4, 2))))


def test_with_cp_stages_same_gradients():
    plain = build(tuner=dict(type='Adapter'))
    perturb_(plain.tuner)
    cp = build(tuner=dict(type='Adapter'), with_cp=[1, 2])
    cp.load_state_dict(plain.state_dict())
    assert cp.checkpointed_stages == {1, 2}
    x = torch.randn(1, 3, 64, 64)
    grads = []
    for model in (plain, cp):
        model.train()
        sum(level.square().mean() for level in model(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
    with pytest.raises(ValueError, match='PolyhistorPVT.with_cp must be'):
        build(with_cp=[5])


def pvt_small_by_hand():
    """PVT-Small (whai362/PVT ``pvt_small``) counted from its definition, 224 px, no head.

    Stage i (width C, depth D, MLP ratio r, spatial reduction R, patch p, input width c):
    patch embedding: p x p conv c -> C with bias + LayerNorm (2C); position embedding:
    (224 / (4 * 2^i))^2 rows of C; per block: two LayerNorms (4C), q (C^2 + C), kv
    (2C^2 + 2C), proj (C^2 + C), for R > 1 the reduction conv (R^2 C^2 + C) and its
    LayerNorm (2C), MLP C -> rC -> C with biases (2 r C^2 + rC + C).
    """
    total, c, side = 0, 3, 224
    for C, D, r, R, p in zip((64, 128, 320, 512), (3, 4, 6, 3), (8, 8, 4, 4), (8, 4, 2, 1),
                             (4, 2, 2, 2)):
        side //= p
        attn = 4 * C * C + 4 * C + ((R * R * C * C + 3 * C) if R > 1 else 0)
        block = 4 * C + attn + 2 * r * C * C + r * C + C
        total += p * p * c * C + 3 * C + side * side * C + D * block
        c = C
    return total


def test_pvt_small_size():
    model = MODELS.build(dict(type='PolyhistorPVT'))  # defaults: PVT-Small
    assert [l.scale for l in model.layer_infos] == [1] * 3 + [2] * 4 + [5] * 6 + [8] * 3
    backbone = sum(p.numel() for p in model.parameters())
    assert backbone == pvt_small_by_hand() == 23_970_816
    # + the classification parts of the official model: head, cls token (and its position
    # embedding row), final norm: PVT-Small's 24.5M
    assert backbone + (512 * 1000 + 1000) + 512 + 512 + 2 * 512 == 24_485_864
