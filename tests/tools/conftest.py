import json
import os
import os.path as osp
import socket
import subprocess

import pytest

from mmpoly.datasets import make_synthetic_pascal_mt

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = 'configs/demo/multi_task_ft_swin-tiny_synthetic.py'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(*args, timeout=600, pythonpath=()):
    """Run a command from the repo root like a user would; fail with its output.

    ``pythonpath``: more folders to import from (a user's own modules)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, *map(str, pythonpath)]),
               OMP_NUM_THREADS='1', PORT=str(free_port()))
    proc = subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
                             f'{proc.stderr[-5000:]}')
    return proc


def demo_options(data_root, epochs, *extra):
    """--cfg-options that point the demo config at a small data root and schedule."""
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
            'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.persistent_workers=False',
            'test_dataloader.persistent_workers=False', f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}', f'param_scheduler.0.end={epochs}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=3',
            *extra]


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo') / 'synthetic_mt'
    make_synthetic_pascal_mt(str(root), num_train=64, num_val=16, image_size=(96, 128), seed=0)
    return str(root)
