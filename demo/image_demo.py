"""Predict every task on images and draw them:

    python demo/image_demo.py IMG [IMG ...] CONFIG CHECKPOINT [--out-dir DIR] [--pred-dir DIR]
        [--device cuda:0] [--cfg-options KEY=VALUE ...]

Writes ``OUT_DIR/<image name>.png``: the input and every task's prediction side by side
(palettes from the checkpoint's dataset meta). ``--pred-dir`` also writes the predictions in
the benchmark's on-disk format (``PRED_DIR/<task>/<image name>.png``, as
``tools/test.py --out``). CHECKPOINT may be a full or an adapter-only checkpoint.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import mmcv  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmpoly.apis import inference_model, init_model  # noqa: E402
from mmpoly.evaluation.prediction_writer import write_prediction  # noqa: E402
from mmpoly.visualization import draw_multi_task  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Predict every task on images')
    parser.add_argument('inputs', nargs='+', metavar='IMG CONFIG CHECKPOINT',
                        help='image files, then the config and the checkpoint')
    parser.add_argument('--out-dir', default='demo_out', help='where to write the pictures')
    parser.add_argument('--pred-dir', help='also write the predictions as '
                        'PRED_DIR/<task>/<image name>.png (reference format)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    args = parser.parse_args()
    if len(args.inputs) < 3:
        parser.error('expected IMG [IMG ...] CONFIG CHECKPOINT')
    args.images, args.config, args.checkpoint = (args.inputs[:-2], args.inputs[-2],
                                                 args.inputs[-1])
    return args


def main():
    args = parse_args()
    for path in args.images:
        if not osp.isfile(path):
            raise FileNotFoundError(f'image {path} not found')
    model = init_model(args.config, args.checkpoint, args.device, args.cfg_options)
    os.makedirs(args.out_dir, exist_ok=True)
    # palettes from the checkpoint's dataset meta; what each task is, from the model
    meta = dict(model.dataset_meta,
                task_specs={t: s.to_dict() for t, s in model.task_specs.items()})
    for path in args.images:
        image = mmcv.imread(path)  # BGR, read once for the model and the picture
        result = inference_model(model, image)
        name = osp.splitext(osp.basename(path))[0]
        picture = draw_multi_task(image[..., ::-1], result, meta, draw_gt=False)
        out = osp.join(args.out_dir, f'{name}.png')
        mmcv.imwrite(picture[..., ::-1], out)  # imwrite takes BGR
        if args.pred_dir:
            for task in model.tasks:
                write_prediction(args.pred_dir, task, name, result.get(f'pred_{task}').data,
                                 model.task_specs[task])
        print(f'{path} -> {out}')


if __name__ == '__main__':
    main()
