"""Trainable-parameter accounting in the paper's terms.

The paper reports two columns: ``encoder`` (everything trained outside the task decoders:
tuner modules, and the backbone itself for full fine-tuning) and ``all`` (encoder + every
decoder). The per-task output LayerNorms sit in the decoders and count there.
"""
import json
import os.path as osp
from collections import OrderedDict
from typing import Dict

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import init_default_scope
from torch import nn

from mmseg.registry import HOOKS
from .state_dict import TUNER_PREFIX

DECODER_PREFIX = 'decode_head.'


def group_of(name: str) -> str:
    """The reporting group of a parameter name."""
    if name.startswith('decode_head.norms.'):
        return 'per-task output norms'
    if name.startswith(DECODER_PREFIX):
        return 'decoders'
    parts = name.split('.')
    if 'tuner' in parts:
        return TUNER_PREFIX + parts[parts.index('tuner') + 1]
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


def format_counts(counts: Dict) -> str:
    """The count as a table: one line per group, then the paper's two columns."""
    rows = [*counts['groups'].items(), ('encoder', counts['encoder']), ('all', counts['all'])]
    width = max(len(name) for name, _ in rows)
    lines = [f'  {name:<{width}}  {n:>12,d}  ({n / 1e6:.2f}M)' for name, n in rows]
    share = 100 * counts['all'] / max(counts['total'], 1)
    lines.append(f"  {'trained / total':<{width}}  {counts['all']:>12,d} / "
                 f"{counts['total']:,d} ({share:.2f}%)")
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
