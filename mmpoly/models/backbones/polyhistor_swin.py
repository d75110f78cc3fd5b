"""Swin Transformer with a tuner: mmseg's Swin, unmodified, plus the tuner's extension points.

The upstream modules and weights are used as they are; this file only re-states how a Swin
layer's attention calls them (``_attention``, ``_window_attention``; the layer around it is
the shared ``TunedBackboneMixin._layer``, fed by ``_parts``) so that a tuner can act at fixed
points of every layer, and how the patch merging gathers its neighbourhoods
(``NeighbourhoodUnfold``: a reshape, the same bits as upstream's ``nn.Unfold``). With the
default (identity) tuner the output equals upstream ``SwinTransformer`` before its output norms
(a test checks it). The output norms live in the decoders: every task has its own.

Every hook gets the pass's :class:`~..tuners.base.TaskContext` as its first argument, as in
:class:`PolyhistorPVT` (both run their layers through ``TunedBackboneMixin._run_layer``).

Reading order: the model, its forward, a layer's parts, the windowed attention, then checkpoint
conversion from the official release and from mmpretrain.
"""
import inspect
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.runner import CheckpointLoader
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from mmseg.models.backbones import SwinTransformer
from mmseg.registry import MODELS
from ...utils.state_dict import strip_module_prefix
from ..tuners.base import LayerInfo, Site, TaskContext
from .tuned_backbone import BlockParts, TunedBackboneMixin, check_checkpoint_path


@MODELS.register_module()
class PolyhistorSwin(TunedBackboneMixin, SwinTransformer):
    """Swin Transformer whose layers call a tuner.

    Args:
        tasks: task names (the segmentor fills them in); task-specific tuners keep one
            part per task. A backbone built alone with a shared tuner may leave them out.
        tuner: config of the tuner (``None``: frozen backbone, nothing added).
        task_batching: 'stacked' runs the backbone once on a task-stacked batch of T*B
            images; 'loop' runs it T times on B images (same result, for benchmarks).
        with_cp: activation checkpointing of the layers: True (all), False, or the stages to
            checkpoint, e.g. ``(0, 1)``: the two high-resolution stages hold most of the
            activations for a third of the layers.
        **kwargs: arguments of mmseg's ``SwinTransformer`` (depths, embed_dims, ...).
            ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads official Swin,
            mmseg or mmpretrain checkpoints.

    The forward returns the four stage outputs, before any output norm, with ``T*B`` rows
    (task-major) when the tuner is task-specific and ``B`` rows otherwise.
    """
    provides = frozenset({'relative_position_bias', 'windows', 'prompts', 'task_forks'})

    def __init__(self,
                 tasks: Optional[Sequence[str]] = None,
                 tuner: Optional[dict] = None,
                 task_batching: str = 'stacked',
                 **kwargs):
        unknown = sorted(set(kwargs) - set(inspect.signature(SwinTransformer).parameters))
        if unknown:  # name this class, not the parent that would otherwise complain
            raise TypeError(f'{type(self).__name__}.__init__() got an unexpected keyword '
                            f"argument '{unknown[0]}'")
        # activation checkpointing is done here, per layer (``_run_layer``), since the
        # upstream blocks' forward is not used
        with_cp = kwargs.pop('with_cp', False)
        super().__init__(**kwargs)
        self._setup_checkpointing(with_cp, len(self.stages))
        # Output norms belong to each task's decoder (the paper counts them there).
        for i in self.out_indices:
            delattr(self, f'norm{i}')
        for stage in self.stages:  # the merging's 2 x 2 gather as a reshape (same bits)
            merge = stage.downsample
            if merge is not None and NeighbourhoodUnfold.replaces(merge.sampler):
                merge.sampler = NeighbourhoodUnfold()
        self._shift_masks: Dict[tuple, Tensor] = {}
        self._setup_tuner(tasks, tuner, task_batching,
                          self._describe_layers(kwargs.get('window_size', 7)))

    def _describe_layers(self, window_size: int) -> List[LayerInfo]:
        infos = []
        base_dim = self.num_features[0]
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage.blocks):
                wmsa = block.attn.w_msa
                infos.append(
                    LayerInfo(
                        index=len(infos),
                        stage=i,
                        index_in_stage=j,
                        dim=wmsa.embed_dims,
                        num_heads=wmsa.num_heads,
                        mlp_hidden=block.ffn.feedforward_channels,
                        scale=wmsa.embed_dims // base_dim,
                        name=f'stages.{i}.blocks.{j}',
                        window_size=window_size))
        return infos

    # ------------------------------------------------------------------ forward
    def _forward_once(self, ctx: TaskContext, x: Tensor) -> List[Tensor]:
        x, hw_shape = self.patch_embed(x)
        if self.use_abs_pos_embed:
            x = x + self.absolute_pos_embed
        x = self.drop_after_pos(x)

        outs = []
        layers = iter(self.layer_infos)
        prompts = None
        for i, stage in enumerate(self.stages):
            # by default prompts never cross a patch merging (TADFormer widens them)
            prompts = self.tuner.stage_prompts(ctx, i, prompts, x.shape[0])
            task_rows = None
            for block in stage.blocks:
                x, prompts, forked = self._run_stage_layer(ctx, next(layers), block, x,
                                                           hw_shape, prompts)
                task_rows = task_rows if forked is None else forked
            out, out_hw_shape = self._stage_output(ctx, x, task_rows), hw_shape
            if stage.downsample is not None:
                x, hw_shape = stage.downsample(x, hw_shape)
            if i in self.out_indices:
                # an NCHW view of the NHWC tokens: the decoders' output norms read them as
                # they are (a contiguous NCHW copy would be transposed back by each norm)
                outs.append(out.view(-1, *out_hw_shape, out.shape[-1]).permute(0, 3, 1, 2))
        return outs

    def _parts(self, block) -> BlockParts:
        """Upstream ``SwinBlock``: ``FFN.layers`` is ((fc1, GELU, dropout), fc2, dropout);
        the FFN's layer scale and drop path act on the MLP output; the attention's drop path
        is applied inside it (``ShiftWindowMSA.drop``)."""
        ffn = block.ffn
        (fc1, act, drop1), fc2, drop2 = ffn.layers[0], ffn.layers[1], ffn.layers[2]
        return BlockParts(norm1=block.norm1, norm2=block.norm2, fc1=fc1, act=act, drop1=drop1,
                          fc2=fc2, drop2=drop2, attn_out=_identity,
                          mlp_out=lambda out: ffn.dropout_layer(ffn.gamma2(out)))

    def _attention(self, ctx: TaskContext, layer: LayerInfo, block, x: Tensor,
                   hw_shape: Tuple[int, int], prompts: Optional[Tensor]):
        """Upstream ``ShiftWindowMSA.forward``; prompts join every window unshifted."""
        msa = block.attn
        B, L, C = x.shape
        H, W = hw_shape
        assert L == H * W, 'input feature has wrong size'
        ws, shift = msa.window_size, msa.shift_size
        x = x.view(B, H, W, C)
        pad_r = (ws - W % ws) % ws
        pad_b = (ws - H % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        H_pad, W_pad = x.shape[1], x.shape[2]
        mask = None
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = self._shift_mask(msa, H_pad, W_pad, x.device)

        windows = msa.window_partition(x).view(-1, ws * ws, C)
        num_windows = (H_pad // ws) * (W_pad // ws)
        if prompts is not None:
            prompts = prompts.repeat_interleave(num_windows, dim=0)

        def real_tokens() -> Tensor:  # (windows, N): 1 on the image, 0 on the padding
            real = x.new_zeros(1, H_pad, W_pad, 1)
            real[:, :H, :W] = 1
            if shift > 0:
                real = torch.roll(real, shifts=(-shift, -shift), dims=(1, 2))
            return msa.window_partition(real).view(-1, ws * ws)

        windows, prompts, side = self._window_attention(
            ctx, layer, msa.w_msa, windows, mask, num_windows, prompts,
            real_tokens if pad_r or pad_b else None)

        def image_order(windows: Tensor) -> Tensor:
            x = msa.window_reverse(windows.view(-1, ws, ws, C), H_pad, W_pad)
            if shift > 0:
                x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
            return x[:, :H, :W, :].reshape(-1, H * W, C)  # B rows, or every stream's (fork)

        x = msa.drop(image_order(windows))
        if side is not None:
            side = image_order(side)
        if prompts is not None:
            # one prompt output per image (per stream after a fork): the mean over the
            # windows that saw it
            prompts = msa.drop(prompts.view(-1, num_windows, *prompts.shape[1:]).mean(1))
        return x, prompts, side

    def _window_attention(self, ctx: TaskContext, layer: LayerInfo, wmsa, x: Tensor,
                          mask: Optional[Tensor], num_windows: int, prompts: Optional[Tensor],
                          real_tokens: Optional[Callable[[], Tensor]] = None):
        """Upstream ``WindowMSA.forward`` with tuner hooks and optional prompt tokens ->
        (window tokens, prompts or None, the tuner's side output of 'proj' or None).

        Prompt tokens get no relative position bias and no shift mask: they attend to, and
        are attended by, every token of the window.
        """
        tuner = self.tuner
        Bw, N, C = x.shape
        P = 0 if prompts is None else prompts.shape[1]
        if P:
            x = torch.cat([prompts, x], dim=1)
        L = N + P
        heads = wmsa.num_heads
        ws = wmsa.window_size
        qkv = tuner.linear_at(ctx, layer, 'qkv', wmsa.qkv, x, Site(ws, P))
        q, k, v = qkv.reshape(Bw, L, 3, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * wmsa.scale) @ k.transpose(-2, -1)

        # all additive terms as one (tasks, 1, windows, heads, N, N) tensor
        bias = wmsa.relative_position_bias_table[wmsa.relative_position_index.view(-1)]
        bias = bias.view(N, N, heads).permute(2, 0, 1)[None, None, None]
        task_bias = tuner.attn_bias(ctx, layer)
        if task_bias is not None:
            bias = bias + task_bias[:, None, None]
        if mask is not None:
            bias = bias + mask[None, None, :, None]
        if P:
            bias = F.pad(bias, (P, 0, P, 0))
        groups = bias.shape[0]
        attn = attn.view(groups, -1, bias.shape[2], heads, L, L) + bias
        attn = wmsa.softmax(attn.view(Bw, heads, L, L))
        attn = wmsa.attn_drop(attn)

        x = (attn @ v).transpose(1, 2).reshape(Bw, L, C)
        # TADFormer's TPC reads the prompts' unscaled logits against the window's tokens
        site = Site(ws, P, (lambda: q[:, :, :P] @ k[:, :, P:].transpose(-2, -1)) if P else None,
                    real_tokens)
        x = tuner.linear_at(ctx, layer, 'proj', wmsa.proj, x, site)
        x, side = x if isinstance(x, tuple) else (x, None)
        x = wmsa.proj_drop(x)
        if P:
            return x[:, P:], x[:, :P], side
        return x, None, side

    def _shift_mask(self, msa, H_pad: int, W_pad: int, device) -> Tensor:
        """Upstream's SW-MSA mask (windows, N, N), cached per padded size."""
        key = (H_pad, W_pad, msa.window_size, msa.shift_size, str(device))
        if key not in self._shift_masks:
            ws, shift = msa.window_size, msa.shift_size
            img_mask = torch.zeros((1, H_pad, W_pad, 1), device=device)
            slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
            cnt = 0
            for h in slices:
                for w in slices:
                    img_mask[:, h, w, :] = cnt
                    cnt += 1
            mask_windows = msa.window_partition(img_mask).view(-1, ws * ws)
            diff = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
            self._shift_masks[key] = diff.masked_fill(diff != 0, -100.0).masked_fill(
                diff == 0, 0.0)
        return self._shift_masks[key]

    # ------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """Random init, or the pretrained checkpoint of ``init_cfg``; then the tuner's init."""
        if self.init_cfg is None or 'checkpoint' not in self.init_cfg:
            init_cfg, self.init_cfg = self.init_cfg, None
            super().init_weights()  # upstream random init (touches every Linear)
            self.init_cfg = init_cfg
        else:
            self.load_pretrained(self.init_cfg['checkpoint'])
        self.tuner.init_weights()
        self._freeze()

    def load_pretrained(self, path: str) -> None:
        """Load official Swin, MoBY, mmseg or mmpretrain weights; missing weights are an
        error."""
        check_checkpoint_path(path)
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='silent')

        def adapt(key, value, target):
            if 'relative_position_bias_table' in key and value.shape != target.shape:
                return resize_rel_pos_table(value, target.shape, key, path)
            return value

        self._load_pretrained_weights(path, convert_swin_checkpoint(ckpt), adapt)


def _identity(x: Tensor) -> Tensor:
    return x


class NeighbourhoodUnfold(nn.Unfold):
    """``nn.Unfold`` of upstream ``PatchMerging`` for Swin's 2 x 2 neighbourhoods at stride 2.

    The same ``(B, 4C, L)`` values (channel, then row and column in the neighbourhood), as
    the transposed view of a ``(B, L, 4C)`` tensor gathered by one reshape: ``PatchMerging``
    transposes it back and its norm reads it as it is. The same bits as ``nn.Unfold``,
    without the CPU's im2col / col2im and the norm's copy of Unfold's transposed output.
    """

    def __init__(self):  # tuples, as upstream reads them (``sampler.padding[0]``)
        super().__init__(kernel_size=(2, 2), dilation=(1, 1), padding=(0, 0), stride=(2, 2))

    @staticmethod
    def replaces(unfold: nn.Module) -> bool:
        """Whether ``unfold`` is a plain 2 x 2, stride 2 ``nn.Unfold`` (Swin's)."""
        return type(unfold) is nn.Unfold and all(
            _pair(getattr(unfold, k)) == v for k, v in
            (('kernel_size', (2, 2)), ('stride', (2, 2)), ('dilation', (1, 1)),
             ('padding', (0, 0))))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        if H % 2 or W % 2:  # Unfold drops the last row / column
            return super().forward(x)
        x = x.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W // 2, 2, C)
        return x.permute(0, 1, 3, 5, 2, 4).reshape(B, H * W // 4, 4 * C).transpose(1, 2)


def resize_rel_pos_table(table: Tensor, shape, key: str, path: str) -> Tensor:
    """Bicubic resize of a relative position bias table to another window size."""
    (L1, heads1), (L2, heads2) = table.shape, shape
    if heads1 != heads2:
        raise ValueError(f'checkpoint {path}: {key} has {heads1} heads, expected {heads2}')
    S1, S2 = int(L1**0.5), int(L2**0.5)
    resized = F.interpolate(
        table.permute(1, 0).reshape(1, heads1, S1, S1), size=(S2, S2), mode='bicubic')
    return resized.view(heads2, L2).permute(1, 0).contiguous()


# ------------------------------------------------------------ checkpoint conversion
def convert_swin_checkpoint(ckpt: dict) -> Dict[str, Tensor]:
    """Keys of an official / MoBY / mmseg / mmpretrain Swin checkpoint in mmseg's naming."""
    state_dict = ckpt.get('state_dict', ckpt.get('model', ckpt))
    state_dict = strip_module_prefix(state_dict)
    if any(k.startswith('encoder.') for k in state_dict):  # MoBY: keep the online encoder
        state_dict = {k[len('encoder.'):]: v for k, v in state_dict.items()
                      if k.startswith('encoder.')}
    if any(k.startswith('layers.') for k in state_dict):
        return convert_official_swin(state_dict)
    state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                  if k.startswith('backbone.')} or state_dict
    if ('stages.1.downsample.reduction.weight' in state_dict
            and 'stages.0.downsample.reduction.weight' not in state_dict):
        return convert_mmpretrain_swin(state_dict)
    return state_dict


def convert_official_swin(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """microsoft/Swin-Transformer release -> mmseg keys.

    The official patch merging concatenates the 2x2 neighbours as (0,0), (1,0), (0,1), (1,1);
    mmseg's ``nn.Unfold`` order is channel-major over (0,0), (0,1), (1,0), (1,1), so the
    reduction weight's input columns and the norm's entries are permuted.
    """
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith('head') or k.startswith('norm.'):
            continue
        if k.startswith('layers.'):
            k = k.replace('layers.', 'stages.', 1)
            k = k.replace('.attn.', '.attn.w_msa.')
            k = k.replace('.mlp.fc1.', '.ffn.layers.0.0.').replace('.mlp.fc2.', '.ffn.layers.1.')
            if '.downsample.reduction.' in k:
                v = _unfold_order_reduction(v)
            elif '.downsample.norm.' in k:
                v = _unfold_order_norm(v)
        elif k.startswith('patch_embed.proj.'):
            k = k.replace('patch_embed.proj.', 'patch_embed.projection.')
        out[k] = v
    return out


def _unfold_order_reduction(w: Tensor) -> Tensor:
    out_c, in_c = w.shape
    w = w.reshape(out_c, 4, in_c // 4)
    return w[:, [0, 2, 1, 3], :].transpose(1, 2).reshape(out_c, in_c)


def _unfold_order_norm(v: Tensor) -> Tensor:
    in_c = v.shape[0]
    return v.reshape(4, in_c // 4)[[0, 2, 1, 3], :].transpose(0, 1).reshape(in_c)


def convert_mmpretrain_swin(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """mmpretrain Swin -> mmseg keys: mmpretrain merges patches at the start of stage i,
    mmseg at the end of stage i - 1 (both use ``nn.Unfold``, so no reordering)."""
    out = OrderedDict()
    for k, v in state_dict.items():
        parts = k.split('.')
        if k.startswith('stages.') and parts[2] == 'downsample':
            parts[1] = str(int(parts[1]) - 1)
            k = '.'.join(parts)
        out[k] = v
    return out
