"""Make an adapter-only checkpoint from a full one:
``python tools/export_adapter.py FULL_CKPT OUT --config CONFIG [--no-optimizer]``.

Keeps everything training changed (trainable parameters, the buffers they need, optimizer and
scheduler state, message hub, meta) and replaces the frozen backbone weights by the identity
of the pretrained backbone file the config names (path + sha256); see
``mmpoly/checkpoint/adapter.py``. The full checkpoint's frozen weights must be exactly
those of that file (checked), so the small file reproduces the model bit for bit:
``tools/test.py CONFIG OUT`` evaluates it, and a config with
``default_hooks.checkpoint.type='AdapterCheckpointHook'`` resumes from it.

``--no-optimizer`` also drops the optimizer state (a file for inference and sharing).

``python tools/export_adapter.py --measure [--json] CONFIG...`` prints a table of full vs
adapter-only checkpoint sizes (with Adam state, and without the optimizer), measured on files
written from the configs' models (random weights, a stand-in backbone file: sizes do not depend
on values); ``--json`` prints the bytes instead, with the trainable parameter counts they were
measured for (``docs/benchmarks/checkpoint_sizes.json``; ``size_table`` renders the README's
table from it).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner.checkpoint import _load_checkpoint  # noqa: E402

import mmpoly  # noqa: E402,F401  (registration)
from mmpoly.engine import explain_build_errors, load_config  # noqa: E402
from mmpoly.checkpoint.adapter import (AdapterCheckpointError,  # noqa: E402
                                       frozen_backbone_keys, is_adapter_checkpoint,
                                       make_adapter_checkpoint, pretrained_backbones,
                                       sha256_tensor)
from mmpoly.checkpoint.atomic import atomic_save_checkpoint  # noqa: E402
from mmpoly.utils.state_dict import strip_module_prefix  # noqa: E402
from mmpoly.utils.param_count import (build_model_without_weights,  # noqa: E402
                                      count_parameters)


def export(full_ckpt: str, out: str, cfg: Config, keep_optimizer: bool = True) -> dict:
    """Write the adapter-only checkpoint of ``full_ckpt`` to ``out``; returns it."""
    if not osp.isfile(full_ckpt):
        raise FileNotFoundError(f'checkpoint {full_ckpt} not found')
    checkpoint = _load_checkpoint(full_ckpt, map_location='cpu')
    if is_adapter_checkpoint(checkpoint):
        raise AdapterCheckpointError(f'{full_ckpt} is already an adapter-only checkpoint')
    if 'state_dict' not in checkpoint:
        checkpoint = dict(state_dict=checkpoint)
    state = strip_module_prefix(checkpoint['state_dict'])
    checkpoint['state_dict'] = state
    with explain_build_errors():
        model = build_model_without_weights(cfg)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shape = [f'{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}'
             for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or shape:
        raise AdapterCheckpointError(
            f'{full_ckpt} does not fit the config: missing {missing[:5]} ({len(missing)}), '
            f'unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatches '
            f'{shape[:5]} ({len(shape)})')

    # the frozen weights of the full checkpoint must be those of the backbone file
    frozen = frozen_backbone_keys(model)
    frozen_sha256 = {k: sha256_tensor(state[k]) for k in frozen}
    for prefix, backbone, path in pretrained_backbones(model):
        if path is not None:
            backbone.load_pretrained(path)
    rebuilt = model.state_dict()
    differ = [k for k in frozen if sha256_tensor(rebuilt[k]) != frozen_sha256[k]]
    if differ:
        paths = [p for _, _, p in pretrained_backbones(model)]
        raise AdapterCheckpointError(
            f'{len(differ)} frozen backbone weights of {full_ckpt} are not those of the '
            f'backbone file(s) {paths}, e.g. {differ[:5]}: an adapter-only checkpoint could '
            'not reproduce this model (was it trained from another backbone checkpoint?)')

    make_adapter_checkpoint(model, checkpoint, cfg.pretty_text, frozen_sha256=frozen_sha256)
    if not keep_optimizer:
        checkpoint.pop('optimizer', None)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    atomic_save_checkpoint(checkpoint, out)  # never a half-written file under its name
    return checkpoint


SIZE_HEADER = ('| config | full (MiB) | adapter-only (MiB) | ratio | without optimizer (MiB) '
               '| ratio |\n|---|---:|---:|---:|---:|---:|')


def size_row(config: str, s: dict) -> str:
    """One row of the size table from the bytes of ``measure_sizes``."""
    mib = {k: s[k] / 2**20 for k in ('full', 'adapter', 'adapter_no_optimizer')}
    name = osp.splitext(osp.basename(config))[0]
    return (f"| {name} | {mib['full']:.1f} | {mib['adapter']:.1f} | "
            f"{s['adapter'] / s['full']:.3f} | {mib['adapter_no_optimizer']:.1f} | "
            f"{s['adapter_no_optimizer'] / s['full']:.3f} |")


def size_table(rows) -> str:
    """The table of a ``--measure --json`` report (``[{config, full, adapter, ...}]``)."""
    return '\n'.join([SIZE_HEADER] + [size_row(r['config'], r) for r in rows])


def measure(configs, as_json: bool = False) -> None:
    import json
    import tempfile

    from mmpoly.checkpoint.adapter import measure_sizes
    rows = []
    if not as_json:
        print(SIZE_HEADER)
    for path in configs:
        with tempfile.TemporaryDirectory() as tmp:
            s = measure_sizes(path, tmp)
        # what the sizes were measured for: a report whose counts differ is stale
        model = build_model_without_weights(load_config(path), random_init=False)
        counts = count_parameters(model)
        rows.append(dict(config=path, **s, encoder_params=counts['encoder'],
                         all_params=counts['all']))
        if not as_json:
            print(size_row(path, s), flush=True)
    if as_json:
        print(json.dumps(rows, indent=1))


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == '--measure':
        rest = argv[1:]
        return measure([a for a in rest if a != '--json'], '--json' in rest)
    parser = argparse.ArgumentParser(description='Full checkpoint -> adapter-only checkpoint')
    parser.add_argument('checkpoint', help='full checkpoint (as CheckpointHook writes it)')
    parser.add_argument('out', help='output file')
    parser.add_argument('--config', required=True, help='the config the run was trained with')
    parser.add_argument('--no-optimizer', action='store_true',
                        help='drop the optimizer state (the file cannot resume training)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    try:
        checkpoint = export(args.checkpoint, args.out, cfg, not args.no_optimizer)
    except (AdapterCheckpointError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    full, small = osp.getsize(args.checkpoint), osp.getsize(args.out)
    info = checkpoint['adapter']
    print(f"{args.out}: {len(checkpoint['state_dict'])} saved entries, "
          f"{len(info['frozen_keys'])} frozen entries rebuilt from "
          f"{[b['path'] for b in info['backbones']]}")
    print(f'size {small / 2**20:.2f} MiB (full checkpoint {full / 2**20:.2f} MiB, '
          f'{small / full:.1%})')


if __name__ == '__main__':
    main()
