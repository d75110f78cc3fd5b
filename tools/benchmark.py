"""Time and profile training steps or inference of configs, with random weights and inputs.

    python tools/benchmark.py CONFIG [--cfg-options K=V ...] [--batch-size B] [--img-size S]
        [--iters N] [--warmup W] [--mode train|test] [--device cpu|cuda] [--amp] [--json]
        [--compare CONFIG2 ...] [--data CONFIG] [--metric CONFIG] [--markdown]
    python tools/benchmark.py --render REPORT.json      # a saved --json report as a table
    python tools/benchmark.py --suite a --markdown      # a README table's configs and settings

No dataset or checkpoint is read: the model is built from the config with random weights
(``model.backbone.init_cfg=None``) and fed one random batch of the right shapes (uint8
images; class maps within range, saliency 0/1, unit normals) through the real data
preprocessor, ``model(..., mode='loss')`` and the config's optimiser (``--mode train``), or
``test_step`` (``--mode test``). It reports the median and spread of the step time,
images/s, peak memory (see mmpoly/benchmark/) and a breakdown of one profiled step
by the ``mmpoly::`` profiler ranges (data preprocessor, hypernetwork generation, backbone,
decoders, losses, backward, optimiser).

``--compare`` builds every config in one process and times them round-robin, so a busy
machine slows all of them alike, and prints ratios to the first. ``--flops`` also counts each
step's arithmetic (``torch.utils.flop_counter``) and reports each config against its floor:
its own FLOPs at the first config's time per FLOP (the first: a floor config, e.g.
``configs/floor_single-pass_swin-t.py`` for the one-pass methods, suite e). A config may
carry its own overrides after ``@``:
``configs/lora_swin-t.py@model.backbone.task_batching=loop``, and benchmark options
``@bench.amp=1``, ``@bench.mode=test``, ``@bench.merge_lora=1`` (LoRA inference with merged
weights), ``@bench.eval_cache=0`` (hypernetworks regenerate their
weights every batch in eval). ``--data CONFIG`` also measures the training pipeline's
samples per second in one process (= per dataloader worker), ``--metric CONFIG`` the
validation metric's milliseconds of CPU per image (on the validation labels, with random
predictions).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark training / inference steps')
    parser.add_argument('config', nargs='?', help='config file (CONFIG[@key=value...])')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for every config, e.g. model.backbone.with_cp=True')
    parser.add_argument('--batch-size', type=int, default=1, help='images per step')
    parser.add_argument('--img-size', type=int, default=None,
                        help='square input size (default: the data preprocessor size)')
    parser.add_argument('--iters', type=int, default=5, help='timed steps per config')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps per config')
    parser.add_argument('--mode', choices=['train', 'test'], default='train')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (bfloat16 on CPU, float16 + loss scaling on GPU)')
    parser.add_argument('--profile-iters', type=int, default=1,
                        help='profiled steps for the breakdown (0: no breakdown)')
    parser.add_argument('--flops', action='store_true',
                        help="count each step's arithmetic (matmuls and convolutions) and "
                        "report each config against the first's rate: its floor")
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--zero-init', action='store_true',
                        help='weights filled with zeros instead of random draws: builds '
                        'several times faster, to check that many configs build and run')
    parser.add_argument('--json', action='store_true', help='print one JSON object only')
    parser.add_argument('--markdown', action='store_true',
                        help="print the results as a markdown table (the README's format)")
    parser.add_argument('--render', metavar='JSON',
                        help='print the markdown table of a saved --json report, measure '
                        'nothing')
    parser.add_argument('--compare', nargs='+', default=[], metavar='CONFIG2',
                        help='more configs, measured interleaved with the first')
    parser.add_argument('--sequential', action='store_true',
                        help='measure the configs one after another, freeing each (for '
                        'sweeps over many configs; no interleaving, so ratios are noisier)')
    parser.add_argument('--data', metavar='CONFIG',
                        help="measure this config's training pipeline (samples/s per worker)")
    parser.add_argument('--data-samples', type=int, default=32)
    parser.add_argument('--data-root', help='data root for --data and --metric (default: the '
                        'config\'s, else a synthetic copy in the dataset\'s format in '
                        'data/synthetic_bench/<dataset type>; a missing DATA_ROOT gets one '
                        'there)')
    parser.add_argument('--metric', metavar='CONFIG',
                        help="measure this config's validation metric (ms of CPU per image, "
                        'on its validation labels; data root as --data)')
    parser.add_argument('--metric-images', type=int, default=16)
    parser.add_argument('--suite', help='the configs and settings of a README table: '
                        'a (every method, train), d (inference), e (one-pass methods vs their '
                        'floor), b, b2, c, tiny; flags given override the '
                        "suite's settings")
    known, _ = parser.parse_known_args(argv)
    if known.suite:
        from mmpoly.benchmark.cases import SUITES
        if known.suite not in SUITES:
            parser.error(f'--suite must be one of {sorted(SUITES)}, got {known.suite!r}')
        if known.config or known.compare:
            parser.error('--suite gives the configs: no CONFIG or --compare with it')
        suite = SUITES[known.suite]
        parser.set_defaults(config=suite['specs'][0], compare=suite['specs'][1:],
                            **suite['options'])
    args = parser.parse_args(argv)
    if args.render:
        return args
    if args.config is None and args.data is None and args.metric is None:
        parser.error('give a CONFIG, --data CONFIG, --metric CONFIG or several')
    if args.config is None and args.compare:
        parser.error('--compare needs a first CONFIG')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmpoly.benchmark import (Case, MemoryProbe, case_result, data_throughput,
                                  format_markdown, format_report, machine_info, ratios,
                                  run_cases, to_json)
    from mmpoly.benchmark.provenance import dirty_sources, git_commit
    if args.render:
        with open(args.render) as f:  # the last line: the JSON object of a --json run
            report = json.loads(f.read().strip().splitlines()[-1])
        print(format_markdown(report))
        return report
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no GPU is available here')
    if args.config:  # before any model is built: a clear reason, not a figure made up
        # (and the probe's allocator settings, which the models are built under)
        from mmpoly.benchmark.memory import MemoryUnavailable
        try:
            MemoryProbe.method(args.device)
        except MemoryUnavailable as e:
            raise SystemExit(f'peak memory cannot be measured: {e}')
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    if args.json:  # stdout carries the JSON object only: everything else (logs) to stderr
        sys.stdout.flush()
        json_fd = os.dup(1)
        os.dup2(2, 1)

    report = dict(machine=machine_info(args.device), args=vars(args), results=[], ratios=[],
                  data=None, metric=None)
    if args.config:
        specs = [args.config, *args.compare]

        def build(spec):
            return Case(spec, args.cfg_options, args.batch_size, args.img_size, args.mode,
                        args.device, args.amp, args.seed, not args.zero_init)

        if args.sequential:
            for spec in specs:
                # built under the memory probe's allocator settings, as the cases of one
                # --compare run (an earlier case's freed heap may still serve this one's
                # allocations: its memory figure is less exact than in --compare)
                MemoryProbe.configure_malloc()
                case = build(spec)
                run_cases([case], args.iters, args.warmup, args.profile_iters, log=log,
                          flops=args.flops)
                report['results'].append(case_result(case))
                del case
        else:
            cases = [build(spec) for spec in specs]
            run_cases(cases, args.iters, args.warmup, args.profile_iters, log=log,
                      flops=args.flops)
            report['results'] = [case_result(c) for c in cases]
        report['ratios'] = ratios(report['results'])
    # what the numbers were measured on: the commit, and the files that differed from it
    report['commit'] = git_commit()
    # the cases share most files: each is looked up in git once
    sources = {path: blob for r in report['results'] for path, blob in r['sources'].items()}
    report['dirty'] = dirty_sources(sources, report['commit'])
    if args.data:
        report['data'] = data_throughput(args.data, args.data_samples, args.data_root)
    if args.metric:
        from mmpoly.benchmark.metric import metric_time
        report['metric'] = metric_time(args.metric, args.metric_images, args.data_root)
    if args.json:
        sys.stdout.flush()
        os.dup2(json_fd, 1)
        print(to_json(report), flush=True)
    elif args.markdown and report['results']:
        print(format_markdown(report))
    else:
        print(format_report(report))
    return report


if __name__ == '__main__':
    main()
