"""Pyramid Vision Transformer v1 (Wang et al., ICCV 2021) with a tuner's extension points.

PVT v1 as the official release writes it (whai362/PVT ``classification/pvt.py`` and its
``detection/pvt.py``), with the official module names so that the released ImageNet weights
(``pvt_small.pth``) load after :func:`convert_official_pvt`: per stage a patch embedding
(strided conv + LayerNorm; stride 4, then 2, 2, 2), an absolute position embedding stored for
the pretraining grid and bilinearly resized to the input, and pre-norm blocks of
spatial-reduction attention (queries from every token; keys and values from the tokens
reduced by a strided conv ``sr`` + LayerNorm when ``sr_ratio > 1``) and an MLP. As in the
official detection / segmentation backbones, the classification model's cls token (stage 4
only), final norm and head are dropped, and the four stage outputs come without output
norms (every task's decoder has its own).

The modules hold the weights; the shared layer (``TunedBackboneMixin._layer``, fed by
``_parts``) and this backbone's ``_attention`` run them and call the tuner at the same points,
the same way, as :class:`PolyhistorSwin` (every hook gets the pass's
:class:`~..tuners.base.TaskContext` first), with these differences (PVT attention is global
and has no relative position bias):

- ``linear`` is called with ``'q'`` (every token), ``'kv'`` (the reduced tokens) and
  ``'proj'``; there is no fused ``'qkv'`` (``LayerInfo.projections``); the MLP's ``'fc1'``
  and ``'fc2'`` as in Swin.
- ``attn_bias`` is not supported: a tuner that declares ``needs`` a feature PVT lacks
  (``'relative_position_bias'``, ``'windows'``) is refused when the backbone is built, and
  an undeclared bias is refused at the first forward.
- ``layer_prompts``: prompts join the global token sequence; they are queries and keys /
  values, and the spatial reduction acts on the image tokens only.

Reading order: the blocks (patch embedding, attention, MLP, layer), the model, its forward
(a layer's parts, the attention), weights, then the official checkpoint conversion.
"""
import math
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.runner import CheckpointLoader
from torch import Tensor, nn

from mmseg.registry import MODELS
from ...utils.state_dict import strip_module_prefix
from ..tuners.base import LayerInfo, TaskContext
from .tuned_backbone import BlockParts, TunedBackboneMixin, check_checkpoint_path


class PatchEmbed(nn.Module):
    """Non-overlapping patches: a conv with kernel = stride = ``patch_size``, then LayerNorm
    (the official default eps of 1e-5, unlike the blocks' 1e-6)."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        x = self.proj(x)
        hw_shape = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw_shape


class SpatialReductionAttention(nn.Module):
    """PVT's attention: keys and values come from the tokens reduced ``sr_ratio`` times per
    side (strided conv ``sr`` + LayerNorm ``norm``); queries from every token.

    Run by :meth:`PolyhistorPVT._attention` with the tuner's hooks: q = linear('q', x),
    kv = linear('kv', [prompts; reduce(x)]), out = linear('proj', attention).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., sr_ratio: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'PVT: width {dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)


class Mlp(nn.Module):
    """fc1 - GELU - dropout - fc2 - dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """A pre-norm PVT layer: x + attn(norm1(x)), then x + mlp(norm2(x)), with drop path (run
    by ``TunedBackboneMixin._layer``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int,
                 qkv_bias: bool = True, drop: float = 0., attn_drop: float = 0.,
                 drop_path: float = 0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpatialReductionAttention(dim, num_heads, qkv_bias, attn_drop, drop,
                                              sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)


@MODELS.register_module()
class PolyhistorPVT(TunedBackboneMixin, BaseModule):
    """PVT v1 whose layers call a tuner. Defaults are PVT-Small.

    Args:
        tasks: task names (the segmentor fills them in); task-specific tuners keep one
            part per task. A backbone built alone with a shared tuner may leave them out.
        tuner: config of the tuner (``None``: frozen backbone, nothing added).
        task_batching: 'stacked' runs the backbone once on a task-stacked batch of T*B
            images; 'loop' runs it T times on B images (same result, for benchmarks).
        pretrain_img_size: image size of pretraining; position embeddings are stored for its
            grid (pretrain_img_size / stride per stage) and resized to the input.
        in_channels: image channels.
        embed_dims: width of each stage.
        depths: layers per stage.
        num_heads: attention heads per stage (each must divide its width).
        patch_sizes: kernel = stride of each stage's patch embedding.
        mlp_ratios: MLP hidden width / width, per stage.
        sr_ratios: spatial reduction of the keys / values per stage (1: none).
        qkv_bias: biases in the q and kv projections.
        drop_rate: dropout after the position embedding, the MLP and the projection.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, rising linearly to this over the layers.
        out_indices: stages whose output is returned.
        with_cp: activation checkpointing per layer: True, False, or the stages to
            checkpoint (e.g. ``(0, 1)``).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads the official release
            (``pvt_small.pth``) or a checkpoint of this backbone; ``None``: random init.

    Kronecker-based tuners need integer layer scales s(l) = width / stage-1 width: PVT-Small's
    widths 64, 128, 320, 512 give s = 1, 2, 5, 8.

    The forward returns the stage outputs (NCHW), before any output norm, with ``T*B`` rows
    (task-major) when the tuner is task-specific and ``B`` rows otherwise.
    """
    #: what a tuner may declare in ``needs`` and still run on PVT (not relative position
    #: bias, not windows)
    provides = frozenset({'prompts'})

    def __init__(self,
                 tasks: Optional[Sequence[str]] = None,
                 tuner: Optional[dict] = None,
                 task_batching: str = 'stacked',
                 pretrain_img_size: int = 224,
                 in_channels: int = 3,
                 embed_dims: Sequence[int] = (64, 128, 320, 512),
                 depths: Sequence[int] = (3, 4, 6, 3),
                 num_heads: Sequence[int] = (1, 2, 5, 8),
                 patch_sizes: Sequence[int] = (4, 2, 2, 2),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 with_cp: Union[bool, Sequence[int]] = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        per_stage = dict(embed_dims=embed_dims, depths=depths, num_heads=num_heads,
                         patch_sizes=patch_sizes, mlp_ratios=mlp_ratios, sr_ratios=sr_ratios)
        num_stages = len(depths)
        for key, value in per_stage.items():
            if len(value) != num_stages:
                raise ValueError(f'PolyhistorPVT.{key} needs one entry per stage '
                                 f'({num_stages}), got {list(value)}')
        self.num_stages = num_stages
        self.embed_dims = tuple(embed_dims)
        self.out_indices = tuple(out_indices)
        self._setup_checkpointing(with_cp, num_stages)

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stride, cur = 1, 0
        self.pos_shapes: List[Tuple[int, int]] = []
        for i in range(num_stages):
            stride *= patch_sizes[i]
            grid = (pretrain_img_size // stride, pretrain_img_size // stride)
            self.pos_shapes.append(grid)
            in_dim = in_channels if i == 0 else embed_dims[i - 1]
            setattr(self, f'patch_embed{i + 1}',
                    PatchEmbed(in_dim, embed_dims[i], patch_sizes[i]))
            setattr(self, f'pos_embed{i + 1}',
                    nn.Parameter(torch.zeros(1, grid[0] * grid[1], embed_dims[i])))
            setattr(self, f'pos_drop{i + 1}', nn.Dropout(drop_rate))
            setattr(self, f'block{i + 1}', nn.ModuleList([
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], qkv_bias,
                      drop_rate, attn_drop_rate, dpr[cur + j]) for j in range(depths[i])
            ]))
            cur += depths[i]

        self._setup_tuner(tasks, tuner, task_batching, self._describe_layers())

    def _describe_layers(self) -> List[LayerInfo]:
        infos = []
        base_dim = self.embed_dims[0]
        for i in range(self.num_stages):
            for j, block in enumerate(getattr(self, f'block{i + 1}')):
                dim = self.embed_dims[i]
                infos.append(
                    LayerInfo(
                        index=len(infos),
                        stage=i,
                        index_in_stage=j,
                        dim=dim,
                        num_heads=block.attn.num_heads,
                        mlp_hidden=block.mlp.fc1.out_features,
                        # an integer for PVT's widths (64, 128, 320, 512 -> 1, 2, 5, 8);
                        # tuners that need dim == scale * base_dim check it themselves
                        scale=max(1, round(dim / base_dim)),
                        name=f'block{i + 1}.{j}',
                        window_size=0,  # global attention
                        projections=(('q', 1), ('kv', 2), ('proj', 1))))
        return infos

    # ------------------------------------------------------------------ forward
    def _forward_once(self, ctx: TaskContext, x: Tensor) -> List[Tensor]:
        outs = []
        layers = iter(self.layer_infos)
        for i in range(self.num_stages):
            x, hw_shape = getattr(self, f'patch_embed{i + 1}')(x)
            x = x + self._pos_embed(i, hw_shape)
            x = getattr(self, f'pos_drop{i + 1}')(x)
            prompts = None  # prompts never cross a patch embedding
            for block in getattr(self, f'block{i + 1}'):
                x, prompts = self._run_layer(ctx, next(layers), block, x, hw_shape, prompts)
            x = x.reshape(-1, *hw_shape, x.shape[-1]).permute(0, 3, 1, 2).contiguous()
            if i in self.out_indices:
                outs.append(x)
        return outs

    def _pos_embed(self, stage: int, hw_shape: Tuple[int, int]) -> Tensor:
        """The stage's position embedding, bilinearly resized to the feature map."""
        pos_embed = getattr(self, f'pos_embed{stage + 1}')
        if tuple(hw_shape) == self.pos_shapes[stage]:
            return pos_embed
        return resize_pos_embed(pos_embed, self.pos_shapes[stage], hw_shape)

    def _parts(self, block: Block) -> BlockParts:
        """The official ``Block``: drop path on both residual branches; ``Mlp`` is fc1, GELU,
        dropout, fc2, the same dropout."""
        mlp = block.mlp
        return BlockParts(norm1=block.norm1, norm2=block.norm2, fc1=mlp.fc1, act=mlp.act,
                          drop1=mlp.drop, fc2=mlp.fc2, drop2=mlp.drop,
                          attn_out=block.drop_path, mlp_out=block.drop_path)

    def _attention(self, ctx: TaskContext, layer: LayerInfo, block: Block, x: Tensor,
                   hw_shape: Tuple[int, int], prompts: Optional[Tensor]):
        """Spatial-reduction attention with the tuner's hooks. ``prompts`` (B, P, C), already
        normed, join the queries and the keys / values; the reduction acts on the image
        tokens only. Returns the output of the image tokens and of the prompts (or None), and
        no side output (None: the tuner's ``linear_at`` is not called on PVT's attention)."""
        tuner = self.tuner
        attn = block.attn
        B, N, C = x.shape
        heads = attn.num_heads
        if tuner.attn_bias(ctx, layer) is not None:
            raise NotImplementedError(
                f'{type(tuner).__name__}.attn_bias returned a bias for {layer.name}; PVT has '
                f'global spatial-reduction attention with no relative position bias and no '
                f'windows, so it cannot add one (declare `needs` on the tuner)')
        x_kv = x
        if attn.sr_ratio > 1:
            x_kv = attn.sr(x.transpose(1, 2).reshape(B, C, *hw_shape))
            x_kv = attn.norm(x_kv.flatten(2).transpose(1, 2))
        P = 0 if prompts is None else prompts.shape[1]
        if P:
            x = torch.cat([prompts, x], dim=1)
            x_kv = torch.cat([prompts, x_kv], dim=1)
        L = N + P

        q = tuner.linear(ctx, layer, 'q', attn.q, x)
        q = q.reshape(B, L, heads, C // heads).transpose(1, 2)
        kv = tuner.linear(ctx, layer, 'kv', attn.kv, x_kv)
        k, v = kv.reshape(B, -1, 2, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
        weights = attn.attn_drop(weights)

        x = (weights @ v).transpose(1, 2).reshape(B, L, C)
        x = attn.proj_drop(tuner.linear(ctx, layer, 'proj', attn.proj, x))
        if P:
            return x[:, P:], x[:, :P], None
        return x, None, None

    # ------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """Random init (official scheme), or the pretrained checkpoint of ``init_cfg``; then
        the tuner's init."""
        if self.init_cfg is None or 'checkpoint' not in self.init_cfg:
            for name, module in self.named_modules():
                if name.startswith('tuner'):
                    continue
                if isinstance(module, nn.Linear):
                    trunc_normal_(module.weight, std=.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            for i in range(self.num_stages):
                trunc_normal_(getattr(self, f'pos_embed{i + 1}'), std=.02)
        else:
            self.load_pretrained(self.init_cfg['checkpoint'])
        self.tuner.init_weights()
        self._freeze()

    def load_pretrained(self, path: str) -> None:
        """Load the official PVT release or a checkpoint of this backbone; missing weights
        are an error."""
        check_checkpoint_path(path)
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='silent')

        def adapt(key, value, target):
            if not key.startswith('pos_embed') or value.shape == target.shape:
                return value
            side = math.isqrt(value.shape[1])
            if side * side != value.shape[1] or value.shape[2] != target.shape[2]:
                raise ValueError(f'checkpoint {path}: {key} of shape {tuple(value.shape)} '
                                 f'is not a square grid of width {target.shape[2]}')
            return resize_pos_embed(value, (side, side),
                                    self.pos_shapes[int(key[len('pos_embed'):]) - 1])

        self._load_pretrained_weights(path, convert_pvt_checkpoint(ckpt), adapt)


def resize_pos_embed(pos_embed: Tensor, src_shape: Tuple[int, int],
                     dst_shape: Tuple[int, int]) -> Tensor:
    """(1, h*w, C) position embedding on an (h, w) grid -> (1, H*W, C), bilinear (as PVT)."""
    C = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, *src_shape, C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst_shape), mode='bilinear', align_corners=False)
    return grid.flatten(2).transpose(1, 2)


# ------------------------------------------------------------ checkpoint conversion
def convert_pvt_checkpoint(ckpt: dict) -> Dict[str, Tensor]:
    """Keys of an official PVT release (classification or detection) or of a checkpoint
    holding this backbone (``backbone.`` prefix) in this backbone's naming."""
    state_dict = ckpt.get('state_dict', ckpt.get('model', ckpt))
    state_dict = strip_module_prefix(state_dict)
    state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                  if k.startswith('backbone.')} or state_dict
    return convert_official_pvt(state_dict)


def convert_official_pvt(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """whai362/PVT release -> this backbone (a no-op on this backbone's own keys).

    The module names are the official ones. Dense prediction drops the classification
    parts (cls token, final norm, head) and the cls token's entry of the last stage's
    position embedding (its first row; the official detection backbone keeps the entry
    unused): a position embedding of 1 + h * w rows, h * w a square, loses its first row.
    """
    out = OrderedDict()
    for k, v in state_dict.items():
        if k == 'cls_token' or k.startswith('head.') or k.startswith('norm.'):
            continue
        if re.fullmatch(r'pos_embed\d+', k) and _is_square(v.shape[1] - 1) \
                and not _is_square(v.shape[1]):
            v = v[:, 1:]
        out[k] = v
    return out


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n)**2 == n
