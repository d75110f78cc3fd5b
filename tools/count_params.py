"""Trainable parameters of a config, as the paper reports them.

    python tools/count_params.py configs/polyhistor_lite_swin-t.py
    python tools/count_params.py configs/adapter_swin-t.py --cfg-options model.backbone.tuner.reduction=8 --json
    python tools/count_params.py --all            # every config in configs/
    python tools/count_params.py --paper          # Tables 1, 2 and 5 beside the paper (Markdown)
"""
import argparse
import glob
import json
import math
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402

from mmpoly.engine import explain_build_errors, load_config  # noqa: E402
from mmpoly.utils.param_count import (build_model_without_weights, count_parameters,  # noqa
                                      format_counts)
from mmpoly.utils.paper_tables import (ABLATIONS, TABLE1, TRUNCATED_IN_PAPER,  # noqa: E402
                                       printed)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def count_config(path, cfg_options=None):
    cfg = load_config(path, cfg_options)
    with explain_build_errors():
        model = build_model_without_weights(cfg, random_init=False)  # counts only
    return count_parameters(model)


def millions(n):
    return f'{n / 1e6:.2f}'


def print_one(path, counts):
    print(f'{path}\n{format_counts(counts)}')


def config_path(name):
    return osp.join(REPO, 'configs', f'{name}.py')


def paper_rows():
    """Our Swin-T counts beside the paper's printed figures: Table 1, then Tables 5 and 2."""
    table1 = []
    for method, (row, paper_encoder, paper_all) in TABLE1.items():
        counts = count_config(config_path(f'{method}_swin-t'))
        ours = counts['encoder']
        if printed(ours) == paper_encoder:
            equal = 'yes'
        elif method in TRUNCATED_IN_PAPER and math.floor(ours / 1e4) / 100 == paper_encoder:
            equal = 'truncated in the paper'
        else:
            equal = 'no'
        table1.append(dict(method=row, config=f'{method}_swin-t.py', encoder=ours,
                           all=counts['all'], paper_encoder=paper_encoder,
                           paper_all=paper_all, equal=equal))
    ablations = []
    for table, row, config, options, paper_encoder in ABLATIONS:
        ours = count_config(config_path(config), options)['encoder']
        ablations.append(dict(table=table, row=row, config=f'{config}.py', options=options,
                              encoder=ours, paper_encoder=paper_encoder,
                              equal='yes' if printed(ours) == paper_encoder else 'no'))
    return dict(table1=table1, ablations=ablations)


def paper_markdown(rows):
    """The README's parameter tables."""
    lines = ['| method | config | encoder | encoder (M) | all (M) | paper (printed) encoder / '
             'all | equal at the printed digits |', '|---|---|---:|---:|---:|---:|---|']
    for r in rows['table1']:
        lines.append(f"| {r['method']} | `{r['config']}` | {r['encoder']:,d} | "
                     f"{millions(r['encoder'])} | {millions(r['all'])} | "
                     f"{r['paper_encoder']:.2f} / {r['paper_all']:.2f} | {r['equal']} |")
    for table in sorted({r['table'] for r in rows['ablations']}, reverse=True):
        lines += ['', f'| {table} | config | option | encoder | encoder (M) | paper (printed) '
                  f'| equal at the printed digits |', '|---|---|---|---:|---:|---:|---|']
        for r in rows['ablations']:
            if r['table'] != table:
                continue
            option = ' '.join(f'{k}={v}' for k, v in r['options'].items()) or 'default'
            option = f'`{option}`' if r['options'] else option
            lines.append(f"| {r['row']} | `{r['config']}` | {option} | {r['encoder']:,d} | "
                         f"{millions(r['encoder'])} | {r['paper_encoder']:.2f} | {r['equal']} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description='Count trainable parameters of a config')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('--all', action='store_true', help='every config in configs/')
    parser.add_argument('--paper', action='store_true',
                        help='the Swin-T rows of Tables 1, 2 and 5 beside the paper\'s figures')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.backbone.tuner.rank=1')
    args = parser.parse_args()
    if args.all + args.paper + bool(args.config) != 1:
        parser.error('give one of CONFIG, --all or --paper')

    if args.paper:
        rows = paper_rows()
        print(json.dumps(rows) if args.json else paper_markdown(rows))
        return

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
