import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

from mmpoly.datasets import make_synthetic_pascal_mt

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = 'configs/demo/multi_task_ft_swin-tiny_synthetic.py'


_handed_out = set()


def free_port():
    """A port that was free a moment ago (never the same one twice in this process).

    Another process can still take it before the launcher binds it: ``run_tool`` retries a
    run that failed because its port was in use."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError('no free port')


PORT_IN_USE = ('EADDRINUSE', 'Address already in use', 'address already in use')


def run_tool(*args, timeout=600, pythonpath=(), retries=3):
    """Run a command from the repo root like a user would; fail with its output.

    ``python`` is the interpreter running the tests (``sys.executable``), also for the
    ``python`` that ``tools/dist_*.sh`` call (its folder leads ``PATH``). ``pythonpath``: more
    folders to import from (a user's own modules). A run that failed because the port of the
    distributed launcher (``PORT``, or a ``--master_port`` from ``free_port()``) was taken
    in the meantime is retried on another port."""
    args = [sys.executable if a == 'python' else str(a) for a in args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, *map(str, pythonpath)]),
               OMP_NUM_THREADS='1',
               PATH=os.pathsep.join([osp.dirname(sys.executable), os.environ.get('PATH', '')]))
    for attempt in range(retries):
        env['PORT'] = str(free_port())
        if attempt:  # a port given on the command line: a fresh one too
            args = [str(free_port()) if i and args[i - 1] == '--master_port' else a
                    for i, a in enumerate(args)]
        proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode == 0 or not any(m in proc.stdout + proc.stderr
                                           for m in PORT_IN_USE):
            break
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


def scalars(work_dir):
    """The records of a run's ``WORK_DIR/<timestamp>/vis_data/scalars.json``."""
    paths = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_losses(work_dir):
    """(iteration, loss) of every logged training iteration."""
    return [(r['step'], r['loss']) for r in scalars(work_dir) if 'loss' in r]


def last_validation(work_dir):
    """The metrics of the run's last validation, as logged."""
    return [{k: v for k, v in r.items() if '/' in k or k == 'delta_m'}
            for r in scalars(work_dir) if 'delta_m' in r][-1]


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo') / 'synthetic_mt'
    make_synthetic_pascal_mt(str(root), num_train=64, num_val=16, image_size=(96, 128), seed=0)
    return str(root)
