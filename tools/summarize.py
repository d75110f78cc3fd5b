"""One results table for many runs: ``python tools/summarize.py WORK_DIR... [--format md|csv|json]
[--out FILE]``.

One row per work dir: run name, method, backbone, trainable encoder and all parameters (as
``tools/count_params.py`` counts them, from the run's config), the main metric of each
of the run's own tasks (its config's ``model.tasks``: PASCAL-Context semseg / human_parts /
sal mIoU and normals mErr, NYUD-v2 semseg mIoU, depth rmse, normals mErr, edge odsF, ...)
and Δm; runs of different task sets share one table, '-' where a run lacks a task.

* Config: the one mmengine dumped into the work dir (``WORK_DIR/<name>.py``; else the newest
  ``WORK_DIR/<timestamp>/vis_data/config.py``).
* Metrics: ``WORK_DIR/test_metrics.json`` (what ``tools/test.py`` writes), else the last
  validation metrics of the newest ``WORK_DIR/<timestamp>/vis_data/scalars.json``.
* Δm: the metrics' ``delta_m``; if absent, computed from the main metrics and the config's
  ``test_evaluator.reference`` (default: the paper's Swin-T single-task numbers).

Markdown rounds to 2 decimals (parameters in millions); CSV keeps every digit (parameters as
integers), for further processing.
"""
import argparse
import csv
import glob
import io
import json
import math
import os.path as osp
import sys
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import Config  # noqa: E402

from mmpoly.evaluation.metrics import delta_m, main_metric_key  # noqa: E402
from mmpoly.evaluation.metrics.functional import DEFAULT_REFERENCE  # noqa: E402
from mmpoly.engine import load_config  # noqa: E402
from mmpoly.task_kinds import TASK_KINDS  # noqa: E402
from mmpoly.tasks import resolve_task_specs  # noqa: E402

# tuner type -> the paper's name of the method (Table 1)
METHOD_NAMES = {
    'NoTuner': 'Fine-tuning decoders',
    'BaseTuner': 'Fine-tuning decoders',
    'FullFineTuning': 'Multi-task full fine-tuning',
    'BitFit': 'BitFit',
    'RelativeBias': 'Relative bias',
    'VPTShallow': 'VPT-shallow',
    'VPTDeep': 'VPT-deep',
    'PHMAdapter': 'PHM layer',
    'Compacter': 'Compacter',
    'CompacterPP': 'Compacter++',
    'LoRA': 'LoRA',
    'Adapter': 'Adapter',
    'LowRankAdapter': 'Low-rank adapter',
    'SharedAdapter': 'Shared Adapter',
    'Hyperformer': 'Hyperformer',
    'Polyhistor': 'Polyhistor',
    'PolyhistorLite': 'Polyhistor-Lite',
    'MTLoRA': 'MTLoRA',
}
SWIN_SIZES = {(96, (2, 2, 6, 2)): 'Swin-T', (96, (2, 2, 18, 2)): 'Swin-S',
              (128, (2, 2, 18, 2)): 'Swin-B', (192, (2, 2, 18, 2)): 'Swin-L'}
#: the columns before the tasks' main metrics (which come from each run's own tasks)
RUN_COLUMNS = ['run', 'method', 'backbone', 'encoder_params', 'all_params']


# ----------------------------------------------------------------------- reading a run
def find_config(work_dir: str) -> str:
    top = [p for p in glob.glob(osp.join(work_dir, '*.py'))]
    if top:
        return max(top, key=osp.getmtime)
    dumped = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'config.py')))
    if dumped:
        return dumped[-1]
    raise FileNotFoundError(f'{work_dir}: no dumped config (WORK_DIR/*.py or '
                            'WORK_DIR/<timestamp>/vis_data/config.py)')


# the main metric of every task kind: a scalars line with '<task>/<one of them>' holds a
# validation's metrics
MAIN_METRICS = {kind.main_metric for kind in TASK_KINDS.values()}


def last_val_metrics(scalars_path: str) -> Optional[Dict[str, float]]:
    """The last line of an mmengine scalars.json that holds task metrics."""
    found = None
    with open(scalars_path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            if any('/' in k and k.split('/', 1)[1] in MAIN_METRICS for k in record):
                found = {k: v for k, v in record.items() if '/' in k or k == 'delta_m'}
    return found


def find_metrics(work_dir: str):
    """(metrics, source path)."""
    path = osp.join(work_dir, 'test_metrics.json')
    if osp.isfile(path):
        with open(path) as f:
            return json.load(f), path
    for scalars in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                          reverse=True):
        metrics = last_val_metrics(scalars)
        if metrics:
            return metrics, scalars
    raise FileNotFoundError(f'{work_dir}: no test_metrics.json and no validation metrics in '
                            '<timestamp>/vis_data/scalars.json')


def method_name(cfg: Config) -> str:
    model = cfg.model
    tuner = dict(model.backbone.get('tuner') or dict(type='NoTuner'))
    kind = tuner.get('type', 'NoTuner')
    if kind == 'VPT':
        kind = 'VPTDeep' if tuner.get('deep', False) else 'VPTShallow'
    if kind == 'FullFineTuning' and model.get('backbone_per_task', False):
        return 'Single-task full fine-tuning'
    return METHOD_NAMES.get(kind, kind)


def backbone_name(cfg: Config) -> str:
    backbone = cfg.model.backbone
    dims, depths = backbone.get('embed_dims'), backbone.get('depths')
    arch = None
    if 'Swin' in backbone.type and dims is not None and depths is not None:
        arch = SWIN_SIZES.get((dims, tuple(depths)))
        if arch is None:
            arch = f"Swin(C={dims}, depths={'-'.join(map(str, depths))})"
    arch = arch or backbone.type
    init = backbone.get('init_cfg') or {}
    weights = osp.basename(init['checkpoint']) if init.get('checkpoint') else 'random init'
    return f'{arch} [{weights}]'


def count_params(cfg: Config) -> Dict[str, int]:
    """Trainable parameters as tools/count_params.py counts them (no weights are read)."""
    from mmpoly.utils.param_count import build_model_without_weights, count_parameters
    return count_parameters(build_model_without_weights(cfg, random_init=False))


def load_run(work_dir: str) -> Dict[str, object]:
    """The table row of one work dir (numbers unrounded)."""
    if not osp.isdir(work_dir):
        raise FileNotFoundError(f'work dir not found: {work_dir}')
    cfg_path = find_config(work_dir)
    cfg = load_config(cfg_path)
    metrics, source = find_metrics(work_dir)
    counts = count_params(cfg)
    row = dict(run=osp.basename(osp.normpath(work_dir)), method=method_name(cfg),
               backbone=backbone_name(cfg), encoder_params=int(counts['encoder']),
               all_params=int(counts['all']))
    specs = run_task_specs(cfg)
    row['metrics'] = [main_metric_key(task, spec) for task, spec in specs.items()]
    for key in row['metrics']:
        value = metrics.get(key)
        row[key] = None if value is None else float(value)
    dm = metrics.get('delta_m')
    if dm is None:
        evaluator = cfg.get('test_evaluator') or {}
        reference = evaluator.get('reference') if isinstance(evaluator, dict) else None
        if reference is None:  # the metric's default; an empty one (NYUD-v2 today): no Δm
            reference = DEFAULT_REFERENCE
        dm = delta_m(metrics, reference, tasks=list(specs), task_specs=specs) \
            if reference else None
    row['delta_m'] = None if dm is None else float(dm)
    row['config'], row['metrics_file'] = cfg_path, source
    checkpoint = metrics.get('checkpoint') if isinstance(metrics.get('checkpoint'), dict) else {}
    row['checkpoint'] = checkpoint.get('path')
    row['checkpoint_sha256'] = checkpoint.get('sha256')
    return row


def run_task_specs(cfg: Config):
    """task -> TaskSpec of the run's tasks (``model.tasks``, specs from its dataset)."""
    model = cfg.model
    return resolve_task_specs(model.get('tasks'), model.get('task_specs'),
                              where=f'model.tasks of {cfg.filename}',
                              source=model.get('task_source'))


# ------------------------------------------------------------------------- formatting
HEADERS = {'run': 'run', 'method': 'method', 'backbone': 'backbone',
           'encoder_params': 'encoder (M)', 'all_params': 'all (M)',
           'human_parts/mIoU': 'parts mIoU', 'delta_m': 'Δm (%)'}


def columns_of(rows: List[dict]) -> List[str]:
    """The run columns, every run's task metrics (in order of first appearance), Δm."""
    metrics = []
    for row in rows:
        metrics += [k for k in row['metrics'] if k not in metrics]
    return RUN_COLUMNS + metrics + ['delta_m']


def header(column: str) -> str:
    return HEADERS.get(column, column.replace('/', ' '))


def _md_cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if key.endswith('_params'):
        return f'{value / 1e6:.2f}'
    if key == 'delta_m':
        return f'{value:+.2f}'
    if isinstance(value, float):
        return f'{value:.2f}'
    return str(value)


def format_table(rows: List[dict], fmt: str = 'md') -> str:
    # which checkpoint produced the metrics (tools/test.py records it in test_metrics.json)
    checkpoints = any(row.get('checkpoint') for row in rows)
    if fmt == 'csv':
        columns = columns_of(rows) + (['checkpoint', 'checkpoint_sha256'] if checkpoints
                                      else [])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(columns)
        for row in rows:
            writer.writerow(['' if row.get(c) is None else
                             (repr(row[c]) if isinstance(row[c], float) else row[c])
                             for c in columns])
        return buf.getvalue()
    if fmt == 'json':  # every field of every row, unrounded (docs/benchmarks/main_job.json)
        return json.dumps(rows, indent=1) + '\n'
    if fmt != 'md':
        raise ValueError(f'unknown format {fmt!r}: md, csv or json')
    columns = columns_of(rows)
    lines = ['| ' + ' | '.join(header(c) for c in columns) + ' |',
             '|' + '|'.join('---' if c in ('run', 'method', 'backbone') else '---:'
                            for c in columns) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(_md_cell(c, row.get(c)) for c in columns) + ' |')
    if checkpoints:
        lines.append('')
        lines += [f"- {row['run']}: metrics of checkpoint {row['checkpoint']} (sha256 "
                  f"{row['checkpoint_sha256']})" if row.get('checkpoint') else
                  f"- {row['run']}: metrics from {row.get('metrics_file')} (no checkpoint "
                  'recorded)' for row in rows]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Summarize runs into one results table')
    parser.add_argument('work_dirs', nargs='+', help='work dirs of train / test runs')
    parser.add_argument('--format', choices=['md', 'csv', 'json'], default='md')
    parser.add_argument('--out', help='also write the table to this file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        rows = [load_run(d) for d in args.work_dirs]
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    table = format_table(rows, args.format)
    print(table, end='')
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table)


if __name__ == '__main__':
    main()
