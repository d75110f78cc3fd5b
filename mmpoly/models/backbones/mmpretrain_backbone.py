"""Any mmpretrain backbone as a multi-task encoder, tuned without copying its forward.

The upstream model (``mmpretrain.models.backbones.VisionTransformer``, ``SwinTransformer``,
...) is built from mmpretrain's registry and runs its own forward. The tuner reaches it
through the modules a method touches, as the hooks of ``TunedBackboneMixin._layer`` do:

- every attention and MLP linear ('qkv', 'proj', 'fc1', 'fc2') is replaced by a
  :class:`TunedLinear` holding the same parameters (so the state-dict keys stay upstream's)
  whose forward is ``tuner.linear(ctx, layer, name, <the upstream linear>, x)``;
- a block's attention output goes through ``tuner.attn_branch`` (a forward hook on the
  attention; the residual stream is the block's input, kept by a pre-hook on the block);
- a block's FFN output goes through ``tuner.mlp_branch`` (the FFN adds no identity, a
  forward hook adds it after the branch hook).

Branch hooks are only registered when the tuner overrides them. Every hook reads the pass's
:class:`~..tuners.base.TaskContext` from ``tuner.bound_context``, which the mixin binds
around each pass, so a task-specific tuner sees the ``T x B`` task-stacked batch exactly as
on ``PolyhistorSwin``. What needs the inside of an attention (prompt tokens, extra attention
logits, MTLoRA's task forks) is not offered: ``provides`` is empty and such a tuner is
refused by name when the backbone is built.

Where a block is not a pre-norm transformer block the branch hooks move to the module whose
output IS the branch's contribution, so that no subtraction is ever needed (``block_out - x``
would not be exact in float) and a tuner that leaves a hook alone gives upstream's bits:

- ConvNeXt(-V2) has no attention; its block adds ``shortcut + drop_path(branch)`` inside its
  own forward, so ``mlp_branch`` is a forward hook on ``drop_path`` (an ``nn.Identity`` or a
  ``DropPath`` module: the last op of the branch) with the block's input kept by a pre-hook;
  the channel-first maps are viewed as ``(N, H * W, C)`` tokens for the tuner, as on Swin.
  ``fc1`` / ``fc2`` are the channel-last ``pointwise_conv1`` / ``pointwise_conv2`` linears.
- SwinV2's blocks are post-norm, ``x + norm1(attn(x))`` and ``x + norm2(ffn(x))``: the
  branch hooks sit on ``norm1`` / ``norm2``. Its ``WindowMSAV2`` calls
  ``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))`` and never calls its ``qkv`` module, so
  SwinV2 routes ``proj`` / ``fc1`` / ``fc2`` only; a tuner targeting ``qkv`` there (LoRA) is
  refused, and so is BitFit, whose q / v bias deltas would have no module output to go to.

A plain ViT gives one stride-14 (or 16) map: mmseg's ``Feature2Pyramid`` makes the four
scales the multi-task heads read, run per task group of the stacked batch (its BatchNorm
statistics never mix tasks, so stacked and looped passes agree). The pyramid is trained
with the decoders whatever the tuner; it counts with them (``mmpoly.utils.param_count``).
"""
import copy
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from torch import Tensor, nn

from mmseg.registry import MODELS
from ...utils.state_dict import TUNER_PREFIX, strip_module_prefix
from ..tuners.base import BaseTuner, LayerInfo, TaskContext
from .polyhistor_swin import resize_rel_pos_table
from .tuned_backbone import TunedBackboneMixin, check_checkpoint_path

#: buffers computed from the config, never read from a file (SwinV2's coordinates table
#: depends on the window size)
DERIVED_BUFFERS = ('relative_position_index', 'relative_coords_table')
#: module path prefix of the pyramid neck inside the backbone (trained with the decoders)
NECK = 'neck'


class TunedLinear(nn.Linear):
    """An upstream ``nn.Linear`` routed through the tuner's ``linear`` hook.

    It holds the upstream module's own parameters (same objects, same state-dict keys); the
    upstream module itself, unregistered, is what the tuner calls for the frozen product."""

    def __init__(self, linear: nn.Linear, owner: 'MMPretrainBackbone', layer: LayerInfo,
                 name: str):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.layer, self.site = layer, name
        # plain attributes, not submodules: no second copy of the keys, no module cycle
        object.__setattr__(self, 'frozen', linear)
        object.__setattr__(self, 'owner', owner)

    def forward(self, x: Tensor) -> Tensor:
        tuner = self.owner.tuner
        return tuner.linear(tuner.bound_context, self.layer, self.site, self.frozen, x)


class BlockSites:
    """Where one upstream block keeps what the tuner touches.

    Args:
        block: the block (its input is the residual stream of its first branch).
        attn, ffn: pre-norm transformer blocks (ViT, Swin V1): the attention, whose output
            is the attention branch, and the mmcv ``FFN``, which adds the identity itself.
        linears: tuner name -> (parent module, attribute) of every routed linear.
        attn_out, mlp_out: other blocks: (module whose input is the residual stream, module
            whose output is the branch's contribution to it), or None (no such branch).
        channel_first: the branch hooks see ``(N, C, H, W)`` maps (ConvNeXt), given to the
            tuner as ``(N, H * W, C)`` tokens.
    """

    def __init__(self, block: nn.Module, linears: Dict[str, Tuple[nn.Module, str]],
                 attn: Optional[nn.Module] = None, ffn: Optional[nn.Module] = None,
                 attn_out: Optional[Tuple[nn.Module, nn.Module]] = None,
                 mlp_out: Optional[Tuple[nn.Module, nn.Module]] = None,
                 channel_first: bool = False):
        self.block, self.attn, self.ffn = block, attn, ffn
        self.linears = linears
        if attn is not None:  # pre-norm: the block's input, the attention's output
            attn_out = (block, attn)
        self.attn_out, self.mlp_out = attn_out, mlp_out
        self.channel_first = channel_first


def _vit_blocks(encoder) -> List[Tuple[LayerInfo, BlockSites]]:
    """mmpretrain ``VisionTransformer``: one stage of ``TransformerEncoderLayer``s
    (``attn.qkv``, ``attn.proj``, ``ffn.layers[0][0]``, ``ffn.layers[1]``)."""
    out = []
    for i, block in enumerate(encoder.layers):
        info = LayerInfo(index=i, stage=0, index_in_stage=i, dim=block.embed_dims,
                         num_heads=block.attn.num_heads,
                         mlp_hidden=block.ffn.feedforward_channels, scale=1,
                         name=f'encoder.layers.{i}')
        out.append((info, _sites(block, block.attn, block.attn, block.ffn)))
    return out


def _swin_blocks(encoder) -> List[Tuple[LayerInfo, BlockSites]]:
    """mmpretrain ``SwinTransformer`` (V1): ``stages[i].blocks[j]``, the linears in
    ``attn.w_msa``."""
    out = []
    base = encoder.stages[0].blocks[0].attn.w_msa.embed_dims
    for i, stage in enumerate(encoder.stages):
        for j, block in enumerate(stage.blocks):
            wmsa = block.attn.w_msa
            info = LayerInfo(index=len(out), stage=i, index_in_stage=j, dim=wmsa.embed_dims,
                             num_heads=wmsa.num_heads,
                             mlp_hidden=block.ffn.feedforward_channels,
                             scale=wmsa.embed_dims // base, name=f'encoder.stages.{i}.blocks.{j}',
                             window_size=block.attn.window_size)
            out.append((info, _sites(block, block.attn, wmsa, block.ffn)))
    return out


def _sites(block, attn, qkv_owner, ffn) -> BlockSites:
    return BlockSites(block, {
        'qkv': (qkv_owner, 'qkv'),
        'proj': (qkv_owner, 'proj'),
        'fc1': (ffn.layers[0], '0'),
        'fc2': (ffn.layers, '1'),
    }, attn=attn, ffn=ffn)


def _swinv2_blocks(encoder) -> List[Tuple[LayerInfo, BlockSites]]:
    """mmpretrain ``SwinTransformerV2``: ``stages[i].blocks[j]``, post-norm
    (``x + norm1(attn(x))``, ``x + norm2(ffn(x))``): the branches are ``norm1``'s and
    ``norm2``'s outputs. ``qkv`` is not routed (``WindowMSAV2`` bypasses the module)."""
    out = []
    base = encoder.stages[0].blocks[0].attn.w_msa.embed_dims
    for i, stage in enumerate(encoder.stages):
        for j, block in enumerate(stage.blocks):
            if getattr(block, 'extra_norm', False):
                # norm3 after the residual add: no branch output would be the block's
                raise ValueError('MMPretrainBackbone(SwinTransformerV2): blocks with an extra '
                                 'norm (extra_norm_every_n_blocks) are not supported')
            wmsa = block.attn.w_msa
            info = LayerInfo(index=len(out), stage=i, index_in_stage=j, dim=wmsa.embed_dims,
                             num_heads=wmsa.num_heads,
                             mlp_hidden=block.ffn.feedforward_channels,
                             scale=wmsa.embed_dims // base, name=f'encoder.stages.{i}.blocks.{j}',
                             window_size=block.attn.window_size,
                             projections=(('proj', 1), ))
            out.append((info, BlockSites(
                block, {'proj': (wmsa, 'proj'), 'fc1': (block.ffn.layers[0], '0'),
                        'fc2': (block.ffn.layers, '1')},
                attn_out=(block, block.norm1), mlp_out=(block.ffn, block.norm2))))
    return out


def _convnext_blocks(encoder) -> List[Tuple[LayerInfo, BlockSites]]:
    """mmpretrain ``ConvNeXt`` (V1 and V2): ``stages[i][j]``, no attention; the MLP is
    ``pointwise_conv1`` / ``pointwise_conv2`` (linears on channel-last maps) and its
    branch ends in ``drop_path``, which the block adds to its input."""
    out = []
    base = encoder.channels[0]
    for i, stage in enumerate(encoder.stages):
        for j, block in enumerate(stage):
            if not block.linear_pw_conv:
                raise ValueError('MMPretrainBackbone(ConvNeXt): linear_pw_conv=False (1 x 1 '
                                 'convolutions) is not supported: fc1 / fc2 are linears')
            dim = block.pointwise_conv1.in_features
            info = LayerInfo(index=len(out), stage=i, index_in_stage=j, dim=dim, num_heads=0,
                             mlp_hidden=block.pointwise_conv1.out_features,
                             scale=dim // base, name=f'encoder.stages.{i}.{j}',
                             projections=())
            out.append((info, BlockSites(
                block, {'fc1': (block, 'pointwise_conv1'), 'fc2': (block, 'pointwise_conv2')},
                mlp_out=(block, block.drop_path), channel_first=True)))
    return out


#: mmpretrain class name -> how its blocks are found (a new architecture: one function)
ARCHITECTURES = {'VisionTransformer': _vit_blocks, 'SwinTransformer': _swin_blocks,
                 'SwinTransformerV2': _swinv2_blocks, 'ConvNeXt': _convnext_blocks}
#: what an architecture lacks, said when a tuner needs it
NO_ATTENTION = {'ConvNeXt': 'ConvNeXt has no attention'}
UNROUTED_QKV = ('its WindowMSAV2 computes F.linear(x, qkv.weight, cat(q_bias, 0, v_bias)) and '
                'never calls the qkv module')
#: mmpretrain class -> tuner class -> why that tuner cannot be attached exactly
REFUSED = {'SwinTransformerV2': {'BitFit': f'its q / v biases: {UNROUTED_QKV}'}}


def is_derived(key: str) -> bool:
    """Whether a state-dict key names one of the :data:`DERIVED_BUFFERS`."""
    return key.rsplit('.', 1)[-1] in DERIVED_BUFFERS


def _derived_buffers_are_not_missing(module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not is_derived(k)]


@MODELS.register_module()
class MMPretrainBackbone(TunedBackboneMixin, BaseModule):
    """An mmpretrain backbone, unmodified, with a tuner attached to its modules.

    Args:
        encoder: the mmpretrain backbone's config (``type`` from mmpretrain's registry,
            e.g. ``VisionTransformer`` with ``arch='dinov2-small'``). A ViT must give
            ``out_type='featmap'`` with one out index; a Swin, SwinV2 or ConvNeXt
            (``gap_before_final_norm=False``) its stage outputs.
        tasks, tuner, task_batching: as in ``PolyhistorSwin``.
        neck: a pyramid neck (mmseg's ``Feature2Pyramid``) making four scales of a single
            map; None: the encoder's outputs as they are.
        out_norms: keep a hierarchical encoder's output norms (``norm{i}``); False, as
            ``PolyhistorSwin``, leaves them to each task's decoder.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``: a checkpoint in
            mmpretrain's layout (``state_dict`` with ``backbone.`` keys) or the bare
            backbone's; position tables are resized to this encoder.
    """
    provides = frozenset()
    #: state no pretrained file holds: the neck (adapter-only checkpoints keep it)
    trained_state_prefixes = (f'{NECK}.', )

    def __init__(self,
                 encoder: dict,
                 tasks: Optional[Sequence[str]] = None,
                 tuner: Optional[dict] = None,
                 task_batching: str = 'stacked',
                 neck: Optional[dict] = None,
                 out_norms: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        import mmpretrain.models  # noqa: F401  (registers mmpretrain's backbones)
        encoder = copy.deepcopy(encoder)
        if isinstance(encoder['type'], str) and '.' not in encoder['type']:
            # mmpretrain's class, whatever the default scope (mmseg has its own ViT)
            encoder['type'] = f"mmpretrain.{encoder['type']}"
        self.encoder = MODELS.build(encoder)
        arch = type(self.encoder).__name__
        if arch not in ARCHITECTURES:
            raise ValueError(f'{type(self).__name__}: mmpretrain {arch} is not supported '
                             f'(supported: {sorted(ARCHITECTURES)})')
        self.arch = arch
        if getattr(self.encoder, 'gap_before_final_norm', False):
            raise ValueError(f'{self._describe()}: gap_before_final_norm=True pools every map '
                             f'to a vector; dense heads need gap_before_final_norm=False')
        if any(getattr(m, 'with_cp', False) for m in self.encoder.modules()):
            # a recomputed block would run the tuner's hooks outside the pass's context
            raise ValueError(f'{self._describe()}: activation checkpointing inside the '
                             f'encoder (with_cp) is not supported with attached tuners')
        if not out_norms:
            for i in getattr(self.encoder, 'out_indices', ()):
                if hasattr(self.encoder, f'norm{i}') and arch != 'VisionTransformer':
                    setattr(self.encoder, f'norm{i}', nn.Identity())
        self._setup_checkpointing(False, 1)
        # mmpretrain's SwinV2 drops its derived buffers from any state dict it loads (they
        # are the config's): not missing, also for a strict load of this model's own file
        self.register_load_state_dict_post_hook(_derived_buffers_are_not_missing)
        blocks = ARCHITECTURES[arch](self.encoder)
        self._sites = {info.index: sites for info, sites in blocks}
        self._residuals: Dict[Tuple[int, str], Tensor] = {}  # (layer, branch) -> stream
        for info, sites in blocks:  # before the tuner: BitFit hooks what is there
            for name, (parent, attr) in sites.linears.items():
                setattr(parent, attr, TunedLinear(getattr(parent, attr), self, info, name))
        try:
            self._setup_tuner(tasks, tuner, task_batching, [info for info, _ in blocks])
        except KeyError as error:  # a tuner's own constructor reached an unrouted linear
            if 'routes no linear' not in str(error):
                raise
            raise ValueError(f"{tuner['type']} targets a linear that {self._describe()} does "
                             f'not route to the tuner: {error.args[0]} '
                             f'({self._unrouted_why()})') from error
        self._check_unoffered_hooks()
        self._attach_branches(blocks)
        # after the tuner: the neck gets no task-specific parts (BitFit) and is trained
        self.neck = None if neck is None else MODELS.build(neck)
        self._freeze()

    def _describe(self) -> str:
        return f'{type(self).__name__}({self.arch})'

    def _unrouted_why(self) -> str:
        return NO_ATTENTION.get(self.arch) or (UNROUTED_QKV if self.arch in REFUSED else '')

    def _check_needs(self, tuner_cls) -> None:
        for cls in tuner_cls.__mro__:
            why = REFUSED.get(self.arch, {}).get(cls.__name__)
            if why is not None:
                raise ValueError(f'{tuner_cls.__name__} is not offered on {self._describe()}: '
                                 f'{why}')
        for need in getattr(tuner_cls, 'needs', ()):
            if need not in self.provides:
                raise ValueError(
                    f'{tuner_cls.__name__} needs {need}, which {self._describe()} does not '
                    f'offer: the tuner attaches to the upstream modules (linears, attention '
                    f'and FFN outputs) and cannot reach inside its attention')

    def _check_unoffered_hooks(self) -> None:
        """A tuner that would add attention logits or prompt tokens here (BitFit's relative
        position tables on a windowed encoder), target a linear this encoder does not route
        (LoRA's qkv on ConvNeXt or SwinV2) or adapt an attention it lacks (ConvNeXt) is
        refused rather than silently ignored."""
        tuner = self.tuner
        ctx = TaskContext.all_tasks(tuner.num_tasks)
        layer = self.layer_infos[0]
        routed = {name for info in self.layer_infos for name, _, _ in info.linears}
        targets = getattr(tuner, 'targets', ())
        targets = (targets, ) if isinstance(targets, str) else tuple(targets)
        missing = [t for t in targets if t not in routed]
        if missing:
            raise ValueError(f'{type(tuner).__name__} targets {missing}, which '
                             f'{self._describe()} does not route to the tuner (it routes '
                             f'{sorted(routed)}): {self._unrouted_why()}')
        if self.arch in NO_ATTENTION and type(tuner).attn_branch is not BaseTuner.attn_branch:
            probe = torch.zeros(ctx.groups, 1, layer.dim)
            try:
                acts = tuner.attn_branch(ctx, layer, probe, probe) is not probe
            except Exception:  # it would compute something (e.g. generated weights)
                acts = True
            if acts:
                raise ValueError(f'{type(tuner).__name__} adapts the attention branch, which '
                                 f'{self._describe()} does not have '
                                 f'({NO_ATTENTION[self.arch]}; Adapter: a position without '
                                 f'attn, e.g. parallel_mlp)')
        if type(tuner).layer_prompts is not BaseTuner.layer_prompts and \
                tuner.layer_prompts(ctx, layer, None, ctx.groups) is not None:
            raise ValueError(f'{type(tuner).__name__} adds prompt tokens, which '
                             f'{self._describe()} does not offer')
        if type(tuner).attn_bias is not BaseTuner.attn_bias and \
                tuner.attn_bias(ctx, layer) is not None:
            raise ValueError(f'{type(tuner).__name__} adds attention logits (relative position '
                             f'bias), which {self._describe()} does not offer (BitFit: '
                             f'rel_pos_tables=False)')

    def _attach_branches(self, blocks) -> None:
        tuner = type(self.tuner)
        for info, sites in blocks:
            if tuner.attn_branch is not BaseTuner.attn_branch and sites.attn_out is not None:
                self._hook_branch(info, sites, 'attn', *sites.attn_out)
            if tuner.mlp_branch is not BaseTuner.mlp_branch:
                if sites.ffn is not None:
                    sites.ffn.add_identity = False  # added back after the branch hook
                    sites.ffn.register_forward_hook(partial(self._mlp_branch, info),
                                                    with_kwargs=True)
                elif sites.mlp_out is not None:
                    self._hook_branch(info, sites, 'mlp', *sites.mlp_out)

    def _hook_branch(self, layer: LayerInfo, sites: BlockSites, branch: str,
                     stream: nn.Module, out: nn.Module) -> None:
        """``stream``'s input is the residual stream, ``out``'s output the branch that the
        block adds to it: the hook on ``out`` replaces the branch by the tuner's."""
        key = (layer.index, branch)
        stream.register_forward_pre_hook(partial(self._keep_residual, key))
        out.register_forward_hook(
            partial(self._branch, layer, key, branch, sites.channel_first))

    # ------------------------------------------------------------ hooks
    def _keep_residual(self, key, module, args) -> None:
        self._residuals[key] = args[0]

    def _branch(self, layer: LayerInfo, key, branch: str, channel_first: bool, module, args,
                out: Tensor) -> Tensor:
        x = self._residuals.pop(key)
        hook = self.tuner.attn_branch if branch == 'attn' else self.tuner.mlp_branch
        if not channel_first:
            return hook(self.tuner.bound_context, layer, x, out)
        n, c, h, w = out.shape  # (N, C, H, W) -> the tuner's (N, H * W, C) tokens and back
        tokens = hook(self.tuner.bound_context, layer, x.flatten(2).transpose(1, 2),
                      out.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(n, c, h, w)

    def _mlp_branch(self, layer: LayerInfo, module, args, kwargs, out: Tensor) -> Tensor:
        x = kwargs['identity'] if 'identity' in kwargs else args[1]
        return x + self.tuner.mlp_branch(self.tuner.bound_context, layer, x, out)

    # ------------------------------------------------------------ forward
    def _forward_once(self, ctx: TaskContext, x: Tensor) -> List[Tensor]:
        outs = list(self.encoder(x))
        if self.neck is None:
            return outs
        if len(outs) != 1:
            raise ValueError(f'{self._describe()}: the pyramid neck reads one map, the '
                             f'encoder gives {len(outs)} (out_indices)')
        groups = outs[0].chunk(ctx.groups, dim=0)  # one neck pass per task group
        levels = [self.neck([g] * len(self.neck.rescales)) for g in groups]
        return [torch.cat(level, dim=0) for level in zip(*levels)]

    def _freeze(self) -> None:
        super()._freeze()
        if getattr(self, 'neck', None) is not None:
            self.neck.requires_grad_(True)

    def train(self, mode: bool = True):
        self._residuals.clear()  # nothing of an interrupted pass survives
        return super().train(mode)

    # ------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Upstream random init, or the pretrained checkpoint of ``init_cfg``; the neck's and
        the tuner's init."""
        if self.init_cfg is None or 'checkpoint' not in self.init_cfg:
            self.encoder.init_weights()
        else:
            self.load_pretrained(self.init_cfg['checkpoint'])
        if self.neck is not None and hasattr(self.neck, 'init_weights'):
            self.neck.init_weights()  # (Feature2Pyramid keeps torch's init)
        self.tuner.init_weights()
        self._freeze()

    def load_pretrained(self, path: str) -> None:
        """Load an mmpretrain checkpoint into the encoder; a missing weight or a wrong shape
        is an error naming the file."""
        check_checkpoint_path(path)
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='silent')
        source = strip_module_prefix(ckpt.get('state_dict', ckpt))
        for prefix in ('backbone.', 'encoder.'):  # mmpretrain's model, or this backbone's
            source = {k[len(prefix):]: v for k, v in source.items()
                      if k.startswith(prefix)} or source
        own = {k: v for k, v in self.encoder.state_dict().items()
               if not k.startswith(TUNER_PREFIX) and not is_derived(k)}
        missing = sorted(set(own) - set(source))
        if missing:
            raise KeyError(f'checkpoint {path} is not a checkpoint for this '
                           f'{self._describe()}: {len(missing)} weights are missing, e.g. '
                           f'{missing[:5]}')
        loaded = {}
        for key, target in own.items():
            value = self._adapt(key, source[key], target, path)
            if value.shape != target.shape:
                raise ValueError(f'checkpoint {path}: {key} has shape {tuple(value.shape)}, '
                                 f'the encoder expects {tuple(target.shape)}')
            loaded[key] = value
        self.encoder.load_state_dict(loaded, strict=False)
        print_log(f'{self._describe()}: loaded {len(loaded)} pretrained weights from {path}',
                  logger='current')

    def _adapt(self, key: str, value: Tensor, target: Tensor, path: str) -> Tensor:
        """Position tables of another resolution, resized as mmpretrain resizes them."""
        if value.shape == target.shape:
            return value
        if key == 'pos_embed':
            from mmpretrain.models.utils import resize_pos_embed
            extra = self.encoder.num_extra_tokens
            src = int(round((value.shape[1] - extra)**0.5))
            return resize_pos_embed(value, (src, src), self.encoder.patch_resolution,
                                    self.encoder.interpolate_mode, extra)
        if 'relative_position_bias_table' in key:
            return resize_rel_pos_table(value, target.shape, key, path)
        return value
