"""One layer skeleton for every backbone (``TunedBackboneMixin._layer``): a backbone supplies
its attention and its layer's parts, nothing more.

The toy backbone below is what a new backbone is: a plain two-stage transformer written here,
its layers' own ``forward`` the oracle of the tuned run with the identity tuner."""
import copy

import pytest
import torch
from mmengine.model import BaseModule
from torch import nn

import mmpoly  # noqa: F401
from mmpoly.models.backbones import PolyhistorPVT, PolyhistorSwin
from mmpoly.models.backbones.tuned_backbone import BlockParts, TunedBackboneMixin
from mmpoly.models.tuners import BaseTuner, LayerInfo
from mmseg.registry import MODELS

TASKS = ('a', 'b', 'c')


class ToyLayer(nn.Module):
    """A pre-norm layer with global attention; ``forward`` is the upstream computation."""

    def __init__(self, dim, heads=2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)

    def attend(self, qkv):
        B, N, C3 = qkv.shape
        q, k, v = qkv.reshape(B, N, 3, self.heads, C3 // 3 // self.heads).permute(
            2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5).softmax(-1)
        return (weights @ v).transpose(1, 2).reshape(B, N, C3 // 3)

    def forward(self, x):
        x = x + self.proj(self.attend(self.qkv(self.norm1(x))))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ToyBackbone(TunedBackboneMixin, BaseModule):
    """Patch embedding, two stages of two ToyLayers, a strided-conv merging between them."""

    def __init__(self, tasks=None, tuner=None, task_batching='stacked', dims=(8, 16)):
        super().__init__()
        self.embed = nn.Conv2d(3, dims[0], 4, 4)
        self.merge = nn.Conv2d(dims[0], dims[1], 2, 2)
        self.stages = nn.ModuleList([nn.ModuleList([ToyLayer(d), ToyLayer(d)]) for d in dims])
        infos = [LayerInfo(index=2 * i + j, stage=i, index_in_stage=j, dim=d, num_heads=2,
                           mlp_hidden=2 * d, scale=d // dims[0], name=f'stages.{i}.{j}')
                 for i, d in enumerate(dims) for j in range(2)]
        self._setup_checkpointing(False, len(dims))
        self._setup_tuner(tasks, tuner, task_batching, infos)

    def _parts(self, block):
        same = nn.Identity()
        return BlockParts(norm1=block.norm1, norm2=block.norm2, fc1=block.fc1, act=block.act,
                          drop1=same, fc2=block.fc2, drop2=same, attn_out=same, mlp_out=same)

    def _attention(self, ctx, layer, block, x, hw_shape, prompts):
        qkv = self.tuner.linear(ctx, layer, 'qkv', block.qkv, x)
        return self.tuner.linear(ctx, layer, 'proj', block.proj, block.attend(qkv)), None, None

    def _forward_once(self, ctx, x):
        outs, layers = [], iter(self.layer_infos)
        x = self.embed(x)
        for i, stage in enumerate(self.stages):
            if i:
                x = self.merge(x)
            B, C, H, W = x.shape
            tokens = x.flatten(2).transpose(1, 2)
            for block in stage:
                tokens, _ = self._run_layer(ctx, next(layers), block, tokens, (H, W), None)
            x = tokens.transpose(1, 2).reshape(-1, C, H, W)
            outs.append(x)
        return outs


def upstream(backbone, x):
    """The toy's forward by its layers' own ``forward``: no tuner, no skeleton."""
    outs = []
    x = backbone.embed(x)
    for i, stage in enumerate(backbone.stages):
        if i:
            x = backbone.merge(x)
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for block in stage:
            tokens = block(tokens)
        x = tokens.transpose(1, 2).reshape(B, C, H, W)
        outs.append(x)
    return outs


def test_a_new_backbone_is_its_attention_and_parts():
    torch.manual_seed(0)
    model = ToyBackbone().double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        for ours, ref in zip(model(x), upstream(model, x)):
            torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_a_new_backbone_runs_task_specific_tuners_stacked_as_in_the_loop():
    torch.manual_seed(0)
    stacked = ToyBackbone(tasks=TASKS, tuner=dict(type='Adapter')).double()
    with torch.no_grad():
        for param in stacked.tuner.parameters():
            param.add_(0.3 * torch.randn_like(param))
    loop = copy.deepcopy(stacked)
    loop.task_batching = 'loop'
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ours, ref, plain = stacked(x), loop(x), upstream(stacked, x)
    for a, b, p in zip(ours, ref, plain):
        assert a.shape[0] == len(TASKS) * 2
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        assert (a[:2] - p).abs().max() > 1e-3  # the adapters act


def test_the_backbones_keep_no_layer_code_of_their_own():
    for cls in (PolyhistorSwin, PolyhistorPVT, ToyBackbone):
        assert '_layer' not in vars(cls) and '_mlp' not in vars(cls), cls.__name__


class Recorder(BaseTuner):
    """Records the names of the ``linear`` calls, per layer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def linear(self, ctx, layer, name, module, x):
        self.calls.append((layer.index, name, tuple(x.shape[1:-1])))
        return module(x)


class RecordingVPT(MODELS.get('VPT')):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def linear(self, ctx, layer, name, module, x):
        self.calls.append((layer.index, name, tuple(x.shape[1:-1])))
        return module(x)


@pytest.mark.parametrize('tuner', [Recorder, RecordingVPT])
def test_every_linear_of_a_swin_layer_goes_through_the_hook(tuner):
    """Swin: qkv, proj, fc1, fc2 in each layer; with carried prompts (VPT-shallow) the
    prompts' MLP too, after the tokens'."""
    cfg = dict(tuner=dict(type=tuner))
    if tuner is RecordingVPT:
        cfg['tuner'].update(num_tokens=2, deep=False)
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS, pretrain_img_size=32,
                              embed_dims=8, depths=[2], num_heads=[2], window_size=4,
                              out_indices=(0, ), **cfg))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    names = [(i, n) for i, n, _ in model.tuner.calls]
    per_layer = [(0, 'qkv'), (0, 'proj'), (0, 'fc1'), (0, 'fc2')]
    if tuner is Recorder:
        assert names == per_layer + [(1, n) for _, n in per_layer]
    else:  # layer 0 carries its prompts to layer 1: their MLP runs through the hook
        assert names[:6] == per_layer + [(0, 'fc1'), (0, 'fc2')]
        assert model.tuner.calls[4][2] == (2, )  # the two prompts
        assert [n for i, n in names if i == 1][:4] == ['qkv', 'proj', 'fc1', 'fc2']
    assert [(n, i, o) for n, i, o in model.layer_infos[0].linears] == [
        ('qkv', 8, 24), ('proj', 8, 8), ('fc1', 8, 32), ('fc2', 32, 8)]
