"""Trainable-parameter accounting in the paper's terms.

The paper reports two columns: ``encoder`` (everything trained outside the task decoders:
tuner modules, and the backbone itself for full fine-tuning) and ``all`` (encoder + every
decoder). The per-task output LayerNorms sit in the decoders and count there.
"""
from collections import OrderedDict
from typing import Dict

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

DECODER_PREFIX = 'decode_head.'


def group_of(name: str) -> str:
    """The reporting group of a parameter name."""
    if name.startswith('decode_head.norms.'):
        return 'per-task output norms'
    if name.startswith(DECODER_PREFIX):
        return 'decoders'
    parts = name.split('.')
    if 'tuner' in parts:
        return 'tuner.' + parts[parts.index('tuner') + 1]
    return 'backbone (trained in full)'


def count_parameters(model: nn.Module) -> Dict:
    """``{'encoder': int, 'all': int, 'groups': {group: int}, 'total': int}``."""
    groups: Dict[str, int] = OrderedDict()
    encoder = trainable = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        n = param.numel()
        trainable += n
        if not name.startswith(DECODER_PREFIX):
            encoder += n
        group = group_of(name)
        groups[group] = groups.get(group, 0) + n
    total = sum(p.numel() for p in model.parameters())
    return dict(encoder=encoder, all=trainable, groups=dict(groups), total=total)


def build_model_without_weights(cfg: Config) -> nn.Module:
    """The config's model, randomly initialised: no checkpoint is read."""
    from mmseg.registry import MODELS
    import mmpoly  # noqa: F401  (registration)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = cfg.model.copy()
    return MODELS.build(model_cfg)
