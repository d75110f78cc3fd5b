"""Trainable parameters of a config, as the paper reports them.

    python tools/count_params.py configs/polyhistor_lite_swin-t.py
    python tools/count_params.py configs/adapter_swin-t.py --cfg-options model.backbone.tuner.reduction=8 --json
    python tools/count_params.py --all            # every config in configs/
"""
import argparse
import glob
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import Config, DictAction  # noqa: E402

from mmpoly.utils import explain_build_errors  # noqa: E402
from mmpoly.utils.param_count import (build_model_without_weights, count_parameters,  # noqa
                                      format_counts)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def count_config(path, cfg_options=None):
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} not found')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    with explain_build_errors():
        model = build_model_without_weights(cfg)
    return count_parameters(model)


def millions(n):
    return f'{n / 1e6:.2f}'


def print_one(path, counts):
    print(f'{path}\n{format_counts(counts)}')


def main():
    parser = argparse.ArgumentParser(description='Count trainable parameters of a config')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('--all', action='store_true', help='every config in configs/')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.backbone.tuner.rank=1')
    args = parser.parse_args()
    if args.all == bool(args.config):
        parser.error('give either a CONFIG or --all')

    if not args.all:
        counts = count_config(args.config, args.cfg_options)
        if args.json:
            print(json.dumps(dict(config=args.config, **counts)))
        else:
            print_one(args.config, counts)
        return

    paths = sorted(glob.glob(osp.join(REPO, 'configs', '*.py')))
    rows = []
    for path in paths:
        counts = count_config(path, args.cfg_options)
        rows.append(dict(config=osp.relpath(path, REPO), **counts))
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(r['config']) for r in rows)
    print(f"{'config':<{width}}  {'encoder (M)':>11}  {'all (M)':>8}")
    for r in rows:
        print(f"{r['config']:<{width}}  {millions(r['encoder']):>11}  {millions(r['all']):>8}")


if __name__ == '__main__':
    main()
