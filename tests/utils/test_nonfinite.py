"""A NaN/Inf loss stops a real tools/train.py run at the first such iteration, naming it and
the task, with no checkpoint of that state; nonfinite_loss='skip' skips and counts instead.
Metrics and the inference API refuse non-finite predictions with a clear error."""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmpoly.datasets import make_synthetic_pascal_mt
from mmpoly.evaluation.metrics.multi_task_metric import MultiTaskMetric, check_prediction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/lora_swin-tiny_synthetic.py'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('nan') / 'data'
    make_synthetic_pascal_mt(str(root), num_train=16, num_val=4, image_size=(64, 80), seed=0)
    return str(root)


def train(work_dir, data_root, *options):
    cmd = [sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir),
           '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
           f'val_dataloader.dataset.data_root={data_root}', 'train_dataloader.batch_size=4',
           'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
           'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
           'train_cfg.max_epochs=2', 'train_cfg.val_interval=2', 'param_scheduler.0.end=2',
           'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
           'log_processor.window_size=1', 'randomness.seed=0', 'optim_wrapper.optimizer.lr=1e10',
           *options]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def logged(work_dir):
    records = []
    for path in glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            records += [json.loads(line) for line in f if '"loss"' in line]
    return sorted(records, key=lambda r: r['step'])


def test_nan_loss_stops_at_the_first_iteration_naming_it_and_the_task(tmp_path, data_root):
    proc = train(tmp_path / 'stop', data_root)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert 'NonFiniteLossError: non-finite loss at iteration' in out, out[-3000:]
    message = out.split('NonFiniteLossError: ')[-1].splitlines()[0]
    iteration = int(message.split('iteration ')[1].split()[0])
    assert 'task' in message and 'loss_' in message
    records = logged(tmp_path / 'stop')
    # every iteration before it logged finite losses; it is the first non-finite one
    assert [r['step'] for r in records] == list(range(1, iteration))
    assert all(math.isfinite(v) for r in records for k, v in r.items() if 'loss' in k)
    # no checkpoint of the diverged state
    assert not glob.glob(str(tmp_path / 'stop' / '*.pth'))


def test_skip_mode_skips_and_counts(tmp_path, data_root):
    # (no validation: with lr=1e10 the outputs of the still finite weights overflow)
    proc = train(tmp_path / 'skip', data_root, 'nonfinite_loss=skip', 'train_cfg.max_epochs=1',
                 'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert 'step(s) skipped so far' in out
    assert 'training step(s) skipped for a non-finite loss' in out
    # the skipped steps left the weights finite: the checkpoint is usable
    state = torch.load(str(tmp_path / 'skip' / 'epoch_1.pth'), map_location='cpu')
    assert all(torch.isfinite(v).all() for v in state['state_dict'].values()
               if v.is_floating_point())


def test_metric_refuses_non_finite_predictions():
    metric = MultiTaskMetric(tasks=('normals', 'semseg'))
    gt_normals = torch.zeros(3, 4, 4)
    gt_normals[2] = 1
    sample = dict(img_path='img_7.jpg', gt_normals=dict(data=gt_normals),
                  pred_normals=dict(data=torch.full((3, 4, 4), float('nan'))))
    with pytest.raises(FloatingPointError, match='normals prediction of image img_7.jpg'):
        metric.process({}, [sample])
    with pytest.raises(ValueError, match='semseg prediction has class ids outside'):
        check_prediction('semseg', torch.full((1, 4, 4), -1))
    check_prediction('sal', np.full((1, 4, 4), 0.5, np.float32))  # finite: accepted


def test_inference_api_refuses_a_diverged_model():
    from mmpoly.apis import inference_model, init_model
    model = init_model(CONFIG)
    with torch.no_grad():
        next(model.decode_head.parameters()).fill_(float('nan'))
    image = np.random.RandomState(0).randint(0, 255, (40, 50, 3), np.uint8)
    with pytest.raises(FloatingPointError, match='non-finite .* logits'):
        inference_model(model, image)
