"""Trainable-parameter accounting in the paper's terms.

The paper reports two columns: ``encoder`` (everything trained outside the task decoders:
tuner modules, and the backbone itself for full fine-tuning) and ``all`` (encoder + every
decoder). The per-task output LayerNorms sit in the decoders and count there.
"""
import json
import os.path as osp
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from typing import Dict

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import init_default_scope
import torch
from torch import nn

from mmseg.registry import HOOKS
from .state_dict import TUNER_PREFIX

DECODER_PREFIX = 'decode_head.'
#: a module of this name inside a backbone is its pyramid neck (``MMPretrainBackbone``'s
#: Feature2Pyramid on a plain ViT): trained with the decoders and counted with them, as mmseg
#: counts a neck beside its heads, not in the encoder column
NECK = 'neck'


def in_decoders(name: str) -> bool:
    """Whether a parameter counts in the decoders (heads, output norms, a backbone's neck)."""
    return name.startswith(DECODER_PREFIX) or NECK in name.split('.')


#: groups of a backbone trained in part (MTLoRA trains these besides its LoRA), by the
#: first pattern its parameter name contains (the reference's filters)
BACKBONE_PART_GROUPS = (('patch_embed.', 'backbone: patch embedding'),
                        ('relative_position_bias_table', 'backbone: relative position bias'),
                        ('downsample.reduction', 'backbone: patch merging'),
                        ('norm', 'backbone: norms'))


def group_of(name: str, backbone_in_full: bool = True) -> str:
    """The reporting group of a parameter name (``backbone_in_full``: every backbone weight
    is trained, else a trained backbone weight is reported by its part)."""
    if name.startswith('decode_head.norms.'):
        return 'per-task output norms'
    if name.startswith(DECODER_PREFIX):
        return 'decoders'
    parts = name.split('.')
    if NECK in parts:
        return 'neck (pyramid of a plain ViT)'

    if 'tuner' in parts:
        return TUNER_PREFIX + parts[parts.index('tuner') + 1]
    if backbone_in_full:
        return 'backbone (trained in full)'
    return next((group for pattern, group in BACKBONE_PART_GROUPS if pattern in name),
                'backbone: other')


def count_parameters(model: nn.Module) -> Dict:
    """``{'encoder': int, 'all': int, 'groups': {group: int}, 'total': int}`` and what the
    tuner's ``count_report`` adds (MTLoRA's ``reference``: the lines scale-lab/MTLoRA's
    ``main.py`` prints; Free Sinewich's ``paper``: the build its paper counted beside the
    published figure)."""
    groups: Dict[str, int] = OrderedDict()
    encoder = trainable = 0
    backbone = [p.requires_grad for n, p in model.named_parameters()
                if not in_decoders(n) and 'tuner' not in n.split('.')]
    in_full = all(backbone)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        n = param.numel()
        trainable += n
        if not in_decoders(name):
            encoder += n
        group = group_of(name, in_full)
        groups[group] = groups.get(group, 0) + n
    total = sum(p.numel() for p in model.parameters())
    counts = dict(encoder=encoder, all=trainable, groups=dict(groups), total=total)
    # what the method adds (its reference code's lines, its paper's figure): a segmentor's
    # backbone's tuner, or a bare backbone's
    tuner = getattr(getattr(model, 'backbone', model), 'tuner', None)
    if tuner is not None:
        counts.update(tuner.count_report(model, counts))
    return counts


@contextmanager
def zero_filled_init():
    """Inside, the random initialisers fill zeros instead of drawing numbers.

    torch's and mmengine's initialisers (``kaiming_uniform_`` of every ``nn.Linear``,
    ``trunc_normal_``, ...) all draw through ``Tensor.uniform_`` / ``normal_``; drawing is
    most of the time it takes to build a model (2 s of 2.3 s for a four-backbone Swin-B).
    For counting parameters and for checking that configs build and run, never training."""
    drawers = torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.erfinv_
    torch.Tensor.uniform_ = torch.Tensor.normal_ = lambda tensor, *args, **kwargs: \
        tensor.zero_()
    torch.Tensor.erfinv_ = lambda tensor: tensor  # trunc_normal_'s next step: erfinv(0) = 0
    try:
        yield
    finally:
        torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.erfinv_ = drawers


def build_model_without_weights(cfg: Config, random_init: bool = True) -> nn.Module:
    """The config's model, randomly initialised (zero-filled with ``random_init=False``, see
    ``zero_filled_init``): no checkpoint is read."""
    from mmseg.registry import MODELS
    import mmpoly  # noqa: F401  (registration)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = cfg.model.copy()
    with zero_filled_init() if not random_init else nullcontext():
        return MODELS.build(model_cfg)


def format_counts(counts: Dict) -> str:
    """The count as a table: one line per group, then the paper's two columns."""
    rows = [*counts['groups'].items(), ('encoder', counts['encoder']), ('all', counts['all'])]
    width = max(len(name) for name, _ in rows)
    lines = [f'  {name:<{width}}  {n:>12,d}  ({n / 1e6:.2f}M)' for name, n in rows]
    share = 100 * counts['all'] / max(counts['total'], 1)
    lines.append(f"  {'trained / total':<{width}}  {counts['all']:>12,d} / "
                 f"{counts['total']:,d} ({share:.2f}%)")
    ref = counts.get('reference')
    if ref:
        lines += ['  as scale-lab/MTLoRA main.py prints it:',
                  f"  Number of trainable params: {ref['trainable']:,}",
                  f"  Decoder params:             {ref['decoders']:,}",
                  f"  LoRA params:                {ref['lora']:,}",
                  f"  Extra params:               {ref['extra']:,}",
                  f"  Total params:               {ref['total']:,}",
                  f"  Total params without LoRA:  {ref['total_without_lora']:,}"]
    paper = counts.get('paper')
    if paper:
        lines += [f"  beside the paper ({paper['source']}):",
                  f"  reference build ({paper['build']}):  {paper['reference']:,d} "
                  f"({paper['reference'] / 1e6:.2f}M)",
                  f"  published:  {paper['published']}M"]
    return '\n'.join(lines)


@HOOKS.register_module()
class TrainableParamsHook(Hook):
    """Logs the trainable-parameter table when training starts (as ``tools/count_params.py``
    prints it) and writes it to ``WORK_DIR/trainable_params.json``: every run records what
    it trains."""
    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        counts = count_parameters(model)
        print_log('trainable parameters (paper columns: encoder, all):\n' +
                  format_counts(counts), logger='current')
        if is_main_process():
            with open(osp.join(runner.work_dir, 'trainable_params.json'), 'w') as f:
                json.dump(counts, f, indent=2)
