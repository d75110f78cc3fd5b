"""Adapter-only checkpoints: save what training changes, rebuild the rest from the backbone file.

A parameter-efficient run trains a few million parameters on top of a frozen, pretrained
backbone. Its checkpoint need not repeat the backbone: the frozen weights are a function of
the config (architecture) and of one file (the pretrained checkpoint). An adapter-only
checkpoint is an ordinary mmengine checkpoint (``meta``, ``message_hub``, ``optimizer``,
``param_schedulers``: resuming works) whose ``state_dict`` lacks exactly the *frozen
backbone entries*, plus an ``adapter`` record:

``adapter = dict(format, backbones, frozen_keys, frozen_sha256, shapes, config)``

* ``backbones``: for every backbone whose weights come from a file
  (``init_cfg=dict(type='Pretrained', checkpoint=PATH)``): its module prefix, the path as
  the config gives it, and the sha256 of the file's content (for a URL, of its torch hub
  cache file: the file the weights were read from);
* ``frozen_keys`` / ``frozen_sha256``: the left-out state-dict keys and a sha256 of each
  tensor, so loading can prove that the rebuilt frozen weights are bit for bit those the
  adapters were trained with;
* ``shapes``: shape of every entry of the model's state dict (names the mismatch when a
  config does not fit);
* ``config``: the config text of the run.

Frozen backbone entries = the backbone's own parameters that do not require grad (tuner
modules excluded) and its buffers (constants such as ``relative_position_index``). Everything
else is saved: trainable parameters (tuners, decoders, a backbone trained in full), every
buffer they need (e.g. the decoders' BatchNorm statistics) and any frozen parameter that is
not in the backbone file (e.g. fixed random projections of a tuner). A backbone without a
pretrained file (the CPU demo configs: random init) cannot be rebuilt, so its weights are
kept in full; the record says so (``backbones`` lists it with ``path=None``).

Loading (:func:`restore_state_dict`, called by the hooks below from mmengine's
``after_load_checkpoint``) checks the config (missing / unexpected / shape-mismatched keys),
checks the backbone file (path and sha256), loads it into the backbone, checks the rebuilt
frozen tensors against ``frozen_sha256``, and hands mmengine a complete state dict. Every
failure raises :class:`AdapterCheckpointError` naming what does not match.
"""
import hashlib
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from mmseg.registry import HOOKS
from ..utils.pretrained_url import fetch_checkpoint, is_url, local_checkpoint_file
from ..utils.state_dict import is_tuner_key, strip_module_prefix
from .atomic import AtomicSaveMixin

FORMAT = 'mmpoly-adapter-checkpoint/1'


class AdapterCheckpointError(ValueError):
    """An adapter-only checkpoint does not fit the model, config or backbone file."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights are not exactly those of the model (another model or method)."""


# ------------------------------------------------------------------------ identity
_FILE_HASHES: Dict[Tuple[str, int, int], str] = {}


def sha256_file(path: str) -> str:
    """sha256 of a file's content (cached per path, size and mtime)."""
    stat = os.stat(path)
    key = (osp.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 22), b''):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def sha256_tensor(t: Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    t = t.detach().cpu().contiguous()
    digest = hashlib.sha256(f'{t.dtype}{tuple(t.shape)}'.encode())
    digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return digest.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def pretrained_backbones(model: nn.Module) -> List[Tuple[str, nn.Module, Optional[str]]]:
    """(prefix, module, pretrained path or None) of every tunable backbone of ``model``."""
    found = []
    for name, module in _unwrap(model).named_modules():
        if hasattr(module, 'load_pretrained') and hasattr(module, 'tuner'):
            if any(name.startswith(prefix + '.') for prefix, _, _ in found):
                continue
            init = module.init_cfg if isinstance(module.init_cfg, dict) else {}
            found.append((name, module, init.get('checkpoint')))
    return found


def frozen_backbone_keys(model: nn.Module) -> List[str]:
    """Model state-dict keys rebuilt from backbone files (see the module doc)."""
    keys = []
    for prefix, backbone, path in pretrained_backbones(model):
        if path is None:
            continue  # random init: cannot be rebuilt, kept in the checkpoint
        params = dict(backbone.named_parameters())
        # parts of a backbone that no backbone file holds (MMPretrainBackbone's pyramid neck:
        # trained, with BatchNorm statistics) are kept in the checkpoint
        kept = tuple(getattr(backbone, 'trained_state_prefixes', ()))
        for key in backbone.state_dict().keys():
            if is_tuner_key(key) or (kept and key.startswith(kept)):
                continue
            if key in params and params[key].requires_grad:
                continue
            keys.append(f'{prefix}.{key}' if prefix else key)
    return keys


# ------------------------------------------------------------------------ saving
def make_adapter_checkpoint(model: nn.Module, checkpoint: dict, config_text: str = '',
                            frozen_sha256: Optional[Dict[str, str]] = None) -> dict:
    """Turn a full mmengine checkpoint dict of ``model`` into an adapter-only one (in place).

    ``checkpoint['state_dict']`` must hold the model's weights (a full checkpoint);
    ``frozen_sha256`` may pass the frozen tensors' hashes already computed (they never
    change during training).
    """
    if 'adapter' in checkpoint:
        return checkpoint
    model = _unwrap(model)
    state = checkpoint['state_dict']
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unknown or missing:
        raise AdapterCheckpointError(
            f'the checkpoint does not fit the model: {len(missing)} missing keys '
            f'{missing[:5]}, {len(unknown)} unexpected keys {unknown[:5]}')
    frozen = frozen_backbone_keys(model)
    if frozen_sha256 is None:
        frozen_sha256 = {k: sha256_tensor(state[k]) for k in frozen}
    backbones = []
    for prefix, _, path in pretrained_backbones(model):
        if path is None:
            print_log(f'adapter checkpoint: backbone {prefix!r} has no pretrained file '
                      '(random init); its frozen weights are stored in full', 'current')
            backbones.append(dict(prefix=prefix, path=None, sha256=None))
            continue
        local = local_checkpoint_file(path)  # a URL: its hub cache file
        if not osp.isfile(local):
            where = path if local == path else f'{path} (cache file {local})'
            raise FileNotFoundError(f'pretrained backbone checkpoint {where} not found: an '
                                    'adapter-only checkpoint must record its hash')
        backbones.append(dict(prefix=prefix, path=path, sha256=sha256_file(local)))
    frozen_set = set(frozen)
    checkpoint['state_dict'] = type(state)(
        (k, v) for k, v in state.items() if k not in frozen_set)
    checkpoint['adapter'] = dict(
        format=FORMAT,
        backbones=backbones,
        frozen_keys=list(frozen),
        frozen_sha256=dict(frozen_sha256),
        shapes={k: list(v.shape) for k, v in own.items()},
        config=config_text)
    return checkpoint


# ------------------------------------------------------------------------ loading
def is_adapter_checkpoint(checkpoint: dict) -> bool:
    return isinstance(checkpoint, dict) and 'adapter' in checkpoint


def state_dict_problems(own: dict, saved: dict, may_miss=frozenset()) -> List[str]:
    """What keeps ``saved`` from loading strictly into a model whose state dict is ``own``:
    missing (except ``may_miss``), unknown and shape-mismatched keys, a few named each."""
    missing = sorted(set(own) - set(may_miss) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    shape = sorted(f'{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}'
                   for k, v in saved.items() if k in own and v.shape != own[k].shape)
    problems = []
    if missing:
        problems.append(f'{len(missing)} model weights missing from the checkpoint, e.g. '
                        f'{missing[:5]}')
    if unexpected:
        problems.append(f'{len(unexpected)} checkpoint weights unknown to the model, e.g. '
                        f'{unexpected[:5]}')
    if shape:
        problems.append(f'{len(shape)} shape mismatches, e.g. {shape[:5]}')
    return problems


def check_compatible(model: nn.Module, checkpoint: dict) -> None:
    """Raise AdapterCheckpointError naming every key that does not fit ``model``."""
    model = _unwrap(model)
    info = checkpoint['adapter']
    if info.get('format') != FORMAT:
        raise AdapterCheckpointError(f"unknown adapter checkpoint format {info.get('format')!r}"
                                     f', expected {FORMAT!r}')
    frozen_now = set(frozen_backbone_keys(model))
    frozen_then = set(info['frozen_keys'])
    problems = []
    if frozen_now != frozen_then:
        diff = sorted(frozen_now ^ frozen_then)
        problems.append(f'the frozen backbone entries differ ({len(diff)} keys, e.g. '
                        f'{diff[:5]}): the tuner or backbone of the config is not the one '
                        'the adapters were trained with')
    problems += state_dict_problems(model.state_dict(),
                                    strip_module_prefix(checkpoint['state_dict']),
                                    may_miss=frozen_now)
    if problems:
        raise AdapterCheckpointError(
            'adapter checkpoint does not fit this config: ' + '; '.join(problems))


def check_fits(model: nn.Module, checkpoint: dict, filename: str) -> None:
    """Raise CheckpointMismatchError, naming the file, unless the (complete) checkpoint
    holds exactly the model's weights with the model's shapes."""
    problems = state_dict_problems(_unwrap(model).state_dict(),
                                   strip_module_prefix(checkpoint['state_dict']))
    if problems:
        raise CheckpointMismatchError(
            f'checkpoint {filename} does not fit this model (a checkpoint of another model or '
            'method?): ' + '; '.join(problems))


def check_backbones(model: nn.Module, checkpoint: dict) -> List[Tuple[nn.Module, str]]:
    """Check the backbone files the config names against the recorded ones.

    Returns (backbone module, path) pairs to load.
    """
    recorded = {b['prefix']: b for b in checkpoint['adapter']['backbones']}
    current = {prefix: (module, path) for prefix, module, path in pretrained_backbones(model)}
    if set(recorded) != set(current):
        raise AdapterCheckpointError(
            f'the adapters were trained on backbones {sorted(recorded)}, this config has '
            f'{sorted(current)}')
    to_load = []
    for prefix, (module, path) in current.items():
        then = recorded[prefix]
        if then['path'] is None or path is None:
            if then['path'] != path:
                raise AdapterCheckpointError(
                    f'backbone {prefix!r}: the adapters were trained on '
                    f"{then['path'] or 'a randomly initialised backbone (stored in full)'}, "
                    f"this config uses {path or 'random init'}")
            continue
        if is_url(path):
            try:
                fetch_checkpoint(path)
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f"backbone {prefix!r}: {e}; the adapters were trained on {then['path']} "
                    f"(sha256 {then['sha256']})") from e
        elif not osp.isfile(path):
            raise FileNotFoundError(
                f'backbone {prefix!r}: pretrained checkpoint {path} (model.backbone.init_cfg.'
                f"checkpoint) not found; the adapters were trained on {then['path']} "
                f"(sha256 {then['sha256']})")
        digest = sha256_file(local_checkpoint_file(path))
        if digest != then['sha256']:
            raise AdapterCheckpointError(
                f'backbone {prefix!r}: checkpoint {path} has sha256 {digest}, but the '
                f"adapters were trained on {then['path']} with sha256 {then['sha256']}: a "
                'different backbone checkpoint')
        to_load.append((module, path))
    return to_load


def restore_state_dict(model: nn.Module, checkpoint: dict) -> dict:
    """Make an adapter-only checkpoint whole (in place) for ``model``; returns it.

    Loads the recorded backbone files into ``model``'s backbones, verifies the rebuilt
    frozen tensors against the recorded hashes and merges them with the saved entries, so
    ``model.load_state_dict(checkpoint['state_dict'])`` gives exactly the trained model.
    """
    if not is_adapter_checkpoint(checkpoint) or checkpoint['adapter'].get('restored'):
        return checkpoint
    model = _unwrap(model)
    if checkpoint['adapter'].get('format') != FORMAT:
        raise AdapterCheckpointError(f"unknown adapter checkpoint format "
                                     f"{checkpoint['adapter'].get('format')!r}, expected "
                                     f'{FORMAT!r}')
    to_load = check_backbones(model, checkpoint)
    check_compatible(model, checkpoint)
    for module, path in to_load:
        module.load_pretrained(path)
    info = checkpoint['adapter']
    own = model.state_dict()
    wrong = [k for k in info['frozen_keys']
             if sha256_tensor(own[k]) != info['frozen_sha256'][k]]
    if wrong:
        raise AdapterCheckpointError(
            f'{len(wrong)} frozen weights rebuilt from the backbone file differ from those '
            f'the adapters were trained with, e.g. {wrong[:5]}')
    saved = strip_module_prefix(checkpoint['state_dict'])
    full = type(checkpoint['state_dict'])()
    for key in own:
        full[key] = saved[key] if key in saved else own[key].detach().clone().cpu()
    checkpoint['state_dict'] = full
    info['restored'] = True
    print_log(f"adapter checkpoint: {len(saved)} saved entries + {len(info['frozen_keys'])} "
              'frozen backbone entries rebuilt from '
              f"{[b['path'] for b in info['backbones']]}", 'current')
    return checkpoint


def load_adapter_checkpoint(model: nn.Module, filename: str, map_location='cpu') -> dict:
    """Load an adapter-only (or a full) checkpoint file into ``model``, strictly; returns
    the checkpoint. A file that is no checkpoint, or one of another model, is an error
    naming the file."""
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise ValueError(f'checkpoint {filename} has no state_dict: not a checkpoint written '
                         'by tools/train.py or tools/export_adapter.py')
    restore_state_dict(model, checkpoint)
    check_fits(model, checkpoint, filename)
    _unwrap(model).load_state_dict(strip_module_prefix(checkpoint['state_dict']), strict=True)
    return checkpoint


# ------------------------------------------------------------------------ hooks
def _loaded_file(runner) -> str:
    """The file the runner is loading: ``load_from``, or the latest of ``--resume``."""
    from mmengine.runner.checkpoint import find_latest_checkpoint
    return (runner._load_from or find_latest_checkpoint(runner.work_dir)
            or 'being loaded')


class _RestoreMixin:

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        restore_state_dict(runner.model, checkpoint)


@HOOKS.register_module()
class AdapterCheckpointHook(_RestoreMixin, AtomicSaveMixin, CheckpointHook):
    """``CheckpointHook`` that writes adapter-only checkpoints and reads them back.

    The config switch: ``default_hooks = dict(checkpoint=dict(type='AdapterCheckpointHook',
    interval=..., ...))`` (every ``CheckpointHook`` argument works). Checkpoints keep the
    optimizer and scheduler state (``save_optimizer=False`` drops the optimizer: the file
    is then for inference or sharing only), so ``--resume`` continues training.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._frozen_sha256: Optional[Dict[str, str]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._frozen_sha256 is None:  # frozen weights never change: hash them once
            state = checkpoint['state_dict']
            self._frozen_sha256 = {k: sha256_tensor(state[k])
                                   for k in frozen_backbone_keys(runner.model)}
        config_text = checkpoint.get('meta', {}).get('cfg') or runner.cfg.pretty_text
        make_adapter_checkpoint(runner.model, checkpoint, config_text,
                                frozen_sha256=self._frozen_sha256)


@HOOKS.register_module()
class AdapterCheckpointLoader(_RestoreMixin, Hook):
    """Reads adapter-only checkpoints (in every config's ``custom_hooks``; ``tools/test.py``
    adds it where a config lacks it): any config can evaluate or resume from one. A full
    checkpoint passes through unchanged.

    With ``strict`` (default) it also refuses any checkpoint whose weights are not exactly
    the model's: mmengine's Runner loads ``load_from`` / ``--resume`` / ``tools/test.py``
    checkpoints non-strictly and only warns, which would evaluate or train a model with
    random parts. ``strict=False``: load part of a checkpoint on purpose (e.g. decoders)."""
    priority = 'VERY_HIGH'

    def __init__(self, strict: bool = True):
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        super().after_load_checkpoint(runner, checkpoint)
        if self.strict:
            check_fits(runner.model, checkpoint, _loaded_file(runner))


__all__ = [
    'AdapterCheckpointError', 'AdapterCheckpointHook', 'AdapterCheckpointLoader',
    'CheckpointMismatchError', 'FORMAT', 'check_backbones', 'check_compatible', 'check_fits',
    'frozen_backbone_keys',
    'is_adapter_checkpoint', 'load_adapter_checkpoint', 'make_adapter_checkpoint',
    'measure_sizes', 'pretrained_backbones', 'restore_state_dict', 'sha256_file',
    'sha256_tensor'
]


# ------------------------------------------------------------------------ sizes
def measure_sizes(config: str, work_dir: str) -> Dict[str, int]:
    """Bytes of a full and of an adapter-only checkpoint of ``config`` (with Adam state).

    The model is built with random weights and the pretrained backbone file is replaced by
    a stand-in holding those weights (sizes do not depend on the values). The full
    checkpoint is what ``CheckpointHook`` writes (weights + Adam state of the trainable
    parameters); adapter-only is the same through ``make_adapter_checkpoint``, with and
    without the optimizer state.
    """
    from mmpoly.engine.config import load_config
    from mmpoly.utils.param_count import build_model_without_weights
    cfg = load_config(config)
    model = build_model_without_weights(cfg)
    os.makedirs(work_dir, exist_ok=True)
    for prefix, backbone, path in pretrained_backbones(model):
        if path is not None:
            stand_in = osp.join(work_dir, f'backbone_{prefix.replace(".", "_")}.pth')
            torch.save({'state_dict': {k: v for k, v in backbone.state_dict().items()
                                       if not is_tuner_key(k)}}, stand_in)
            backbone.init_cfg = dict(type='Pretrained', checkpoint=stand_in)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-4)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    full = dict(meta={}, state_dict=model.state_dict(), optimizer=optimizer.state_dict())
    sizes = {}
    torch.save(full, osp.join(work_dir, 'full.pth'))
    sizes['full'] = os.path.getsize(osp.join(work_dir, 'full.pth'))
    small = make_adapter_checkpoint(model, dict(full))
    torch.save(small, osp.join(work_dir, 'adapter.pth'))
    sizes['adapter'] = os.path.getsize(osp.join(work_dir, 'adapter.pth'))
    small.pop('optimizer')
    torch.save(small, osp.join(work_dir, 'adapter_no_optim.pth'))
    sizes['adapter_no_optimizer'] = os.path.getsize(osp.join(work_dir, 'adapter_no_optim.pth'))
    return sizes
