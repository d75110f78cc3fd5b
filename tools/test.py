"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]``.

Prints every task's metric and delta_m, and writes them as JSON to
``WORK_DIR/test_metrics.json``.

``--out DIR`` also writes every task's prediction of every evaluated image, at its original
size, in the benchmark's on-disk format (``DIR/<task>/<id>.png``, see
``mmpoly/evaluation/prediction_writer.py``); ``tools/eval_predictions.py CONFIG DIR`` scores
such a folder. Distributed: ``tools/dist_test.sh CONFIG CHECKPOINT N [--out DIR]``.
``--show-dir DIR`` writes one picture per image: the input, and every task's ground truth
above its prediction (``mmpoly/visualization``).

CHECKPOINT may be an adapter-only checkpoint (``AdapterCheckpointHook``,
``tools/export_adapter.py``): the frozen backbone is rebuilt from the file the config names,
after checking it is the one the adapters were trained on.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmpoly.checkpoint.adapter import sha256_file  # noqa: E402
from mmpoly.engine.build_checks import check_task_agreement  # noqa: E402
from mmpoly.engine import (explain_build_errors, finish_distributed,  # noqa: E402
                           load_config, prepare_run)


def parse_args():
    parser = argparse.ArgumentParser(description='Test a multi-task model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to write logs and test_metrics.json')
    parser.add_argument(
        '--out', help='write every prediction as DIR/<task>/<id>.png (reference format)')
    parser.add_argument(
        '--show-dir', help='write one picture per image (input, every task\'s GT and '
        'prediction) as DIR/<id>.png')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys, e.g. test_dataloader.dataset.data_root=PATH')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} not found')
    cfg = prepare_run(load_config(args.config, args.cfg_options), args.launcher,
                      args.work_dir)
    check_task_agreement(cfg, 'test')  # model, dataset, metric and losses: same tasks
    cfg.load_from = args.checkpoint
    # an adapter-only checkpoint is completed from the backbone file (a full one passes);
    # either must fit the model (the loader of the config's custom_hooks, else this one)
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') == 'AdapterCheckpointLoader' for h in hooks):
        hooks.append(dict(type='AdapterCheckpointLoader'))
    if args.out is not None:
        hooks.append(dict(type='MultiTaskPredictionWriter', out_dir=osp.abspath(args.out)))
    cfg.custom_hooks = hooks
    if args.show_dir is not None:
        cfg.default_hooks = cfg.get('default_hooks', None) or {}
        cfg.default_hooks['visualization'] = dict(
            type='MultiTaskVisualizationHook', draw=True,
            test_out_dir=osp.abspath(args.show_dir))

    with explain_build_errors():
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
    if is_main_process():
        out = osp.join(cfg.work_dir, 'test_metrics.json')
        record = {k: float(v) for k, v in metrics.items()}
        # which checkpoint produced these metrics (tools/summarize.py shows it)
        record['checkpoint'] = dict(path=osp.abspath(args.checkpoint),
                                    sha256=sha256_file(args.checkpoint))
        with open(out, 'w') as f:
            json.dump(record, f, indent=2)
        print(f'metrics written to {out}')
    del runner  # its DDP wrapper holds the process group
    finish_distributed()


if __name__ == '__main__':
    main()
