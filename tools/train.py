"""Train a model: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]``.

Distributed: ``tools/dist_train.sh CONFIG NUM_GPUS`` (nccl on GPUs, gloo on CPU).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmpoly.checkpoint.atomic import (candidate_checkpoints, damage,  # noqa: E402
                                            resolve_resume)
from mmpoly.engine.build_checks import check_task_agreement  # noqa: E402
from mmpoly.engine import (explain_build_errors, finish_distributed,  # noqa: E402
                           load_config, prepare_run)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a multi-task model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr by the actual total batch size / 12')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys, e.g. model.backbone.tuner.reduction=8')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = prepare_run(load_config(args.config, args.cfg_options), args.launcher,
                      args.work_dir)
    check_task_agreement(cfg, 'train')  # model, datasets, metrics and losses: same tasks

    if args.amp:  # float16 + loss scaling on GPUs, bfloat16 on CPU (engine/optim_wrappers.py)
        cfg.optim_wrapper.type = 'MixedPrecisionOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        cfg.optim_wrapper.setdefault('dtype', 'auto')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    fallback = None
    if args.resume is not None:
        # the newest complete checkpoint (a damaged one is named and skipped); an explicit
        # one must be complete
        explicit = None if args.resume == 'auto' else args.resume
        cfg.resume, cfg.load_from = True, resolve_resume(cfg.work_dir, explicit)
        if explicit is None and cfg.load_from is not None:
            newest = candidate_checkpoints(cfg.work_dir)[0]
            if osp.abspath(newest) != osp.abspath(cfg.load_from):
                fallback = (f'{newest} is damaged ({damage(newest)}); resuming from '
                            f'{cfg.load_from}, the newest complete checkpoint')

    with explain_build_errors():
        runner = Runner.from_cfg(cfg)
        if fallback is not None:
            runner.logger.warning(fallback)
        runner.train()
    del runner  # its DDP wrapper holds the process group
    finish_distributed()


if __name__ == '__main__':
    main()
