"""Score a folder of predictions: ``python tools/eval_predictions.py CONFIG DIR [--json]``.

``DIR`` holds ``<task>/<id>.<ext>`` in the benchmark's on-disk format (what
``tools/test.py --out DIR`` writes, or any other codebase writing the reference format:
class ids as uint8 gray PNG, saliency and edges as uint8 gray PNG 255 x p, normals as uint8
RGB PNG 255 x (n + 1) / 2 with x, y, z in R, G, B, NYUD-v2 depth as ``.mat`` files holding
``depth`` in metres). The dataset is the config's: its test split gives the labels, read by
the config's own test pipeline (``--cfg-options test_dataloader.dataset.data_root=PATH``
points it at another PASCAL_MT / NYUD_MT root), and the config's ``test_evaluator``
(``MultiTaskMetric``) scores them: the numbers are those ``tools/test.py`` reports, up to
the PNG quantisation of saliency and normals (edges are scored from the quantised map in
both). Every image of the split needs a file for every
evaluated task (human_parts: only images with a person, as the reference); a missing one is
an error that names it.

``--json`` prints the metrics as one JSON object on stdout (logs go to stderr).
"""
import argparse
import contextlib
import copy
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.evaluator import Evaluator  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmpoly  # noqa: E402,F401  (registration)
from mmpoly.engine import explain_build_errors, load_config  # noqa: E402
from mmpoly.tasks import resolve_task_specs  # noqa: E402
from mmpoly.evaluation.metrics.functional import \
    is_single_value_label_evaluated  # noqa: E402
from mmpoly.evaluation.prediction_writer import (prediction_path,  # noqa: E402
                                                 read_prediction, sample_id)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Score predictions stored as PNG files')
    parser.add_argument('config', help='config whose test split and test_evaluator are used')
    parser.add_argument('pred_dir', help='folder with <task>/<id>.png (.mat, .npy) predictions')
    parser.add_argument('--json', action='store_true',
                        help='print the metrics as one JSON object on stdout')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys, e.g. test_dataloader.dataset.data_root=PATH')
    return parser.parse_args(argv)


def evaluator_config(cfg: Config):
    """The test evaluator, with the normals PNG round trip switched off: the files are
    already quantised (quantising them again would not be the identity)."""
    evaluator = copy.deepcopy(cfg.test_evaluator)
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    for metric in metrics:
        if metric.get('type') == 'MultiTaskMetric':
            metric['quantize_normals'] = False
    return evaluator


def evaluate_folder(cfg: Config, pred_dir: str) -> dict:
    """Metrics of the predictions in ``pred_dir`` on the config's test split."""
    from mmseg.registry import DATASETS
    if not osp.isdir(pred_dir):
        raise FileNotFoundError(f'prediction folder not found: {pred_dir}')
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    with explain_build_errors():
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        evaluator = Evaluator(evaluator_config(cfg))
    evaluator.dataset_meta = dataset.metainfo
    specs = resolve_task_specs(dataset.metainfo['tasks'], dataset.metainfo.get('task_specs'))
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        img_id = sample_id(sample)
        for key in list(sample.keys()):
            if key.startswith('gt_'):
                task = key[len('gt_'):]
                spec = specs[task]
                if (spec.skip_single_value_labels and not is_single_value_label_evaluated(
                        sample.get(key).data, spec.ignore_index)
                        and not osp.isfile(prediction_path(pred_dir, task, img_id, spec))):
                    delattr(sample, key)  # e.g. no person: not scored, a file is not needed
                    continue
                sample.set_data({f'pred_{task}': _pixel_data(read_prediction(
                    pred_dir, task, img_id, spec))})
        try:
            evaluator.process(data_samples=[sample])
        except ValueError as e:
            files = [prediction_path(pred_dir, k[len('gt_'):], img_id, specs[k[len('gt_'):]])
                     for k in sample.keys() if k.startswith('gt_')]
            raise ValueError(f'image {img_id!r} ({files}): {e}') from e
    return evaluator.evaluate(len(dataset))


def _pixel_data(data):
    from mmengine.structures import PixelData
    return PixelData(data=data)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    # with --json, stdout carries only the JSON: the logger is created writing to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        MMLogger.get_instance('eval_predictions', log_level='INFO')
        try:
            metrics = evaluate_folder(cfg, args.pred_dir)
        except (FileNotFoundError, ValueError) as e:
            print(f'error: {e}', file=sys.stderr)
            sys.exit(1)
    metrics = {k: float(v) for k, v in metrics.items()}
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f'{key}: {value:.4f}')


if __name__ == '__main__':
    main()
