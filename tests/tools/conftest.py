import contextlib
import glob
import json
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings

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


class ToolHung(Exception):
    """A tool run that did not end within its time; ``output`` holds what it printed, with
    the Python stacks of its processes at the moment it was stopped."""

    def __init__(self, args, timeout, output):
        super().__init__(f'{args} did not end within {timeout} s')
        self.output = output


def _no_core_files():
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_once(args, env, timeout):
    """Run ``args`` in a session of its own. One that outlives ``timeout``: every process of
    the session gets SIGABRT, on which Python's faulthandler (``PYTHONFAULTHANDLER``, set in
    ``env``) prints the stack of each thread, then SIGKILL; raises :class:`ToolHung` with the
    output. Killing the whole session also stops a launcher's workers (killing only the
    launcher would leave them running, holding CPU and ports, after the test)."""
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_no_core_files)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGABRT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            if sig == signal.SIGABRT:  # let every process print its stacks
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                time.sleep(1)
        stdout, stderr = proc.communicate()
        raise ToolHung(args, timeout, f'{stdout[-3000:]}\n{stderr[-20000:]}') from None
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


@contextlib.contextmanager
def work_dir_kept(args):
    """Yields ``restore()``, which puts the run's ``--work-dir`` back as it was before the run
    (absent, or a resumed run's checkpoints): a run started again starts from there."""
    work = args[args.index('--work-dir') + 1] if '--work-dir' in args else None
    saved = f'{work}.before_run' if work and osp.isdir(work) else None
    if saved:
        shutil.copytree(work, saved)

    def restore():
        if work:
            shutil.rmtree(work, ignore_errors=True)
        if saved:
            shutil.copytree(saved, work)

    try:
        yield restore
    finally:
        if saved:
            shutil.rmtree(saved)


def run_tool(*args, timeout=300, pythonpath=(), retries=3):
    """Run a command from the repo root like a user would; fail with its output.

    ``python`` is the interpreter running the tests (``sys.executable``), also for the
    ``python`` that ``tools/dist_*.sh`` call (its folder leads ``PATH``). ``pythonpath``: more
    folders to import from (a user's own modules). A run that failed because the port of the
    distributed launcher (``PORT``, or a ``--master_port`` from ``free_port()``) was taken
    in the meantime is retried on another port.

    A run that hangs (``timeout``) is stopped with its Python stacks printed and run once
    more, with a warning that carries those stacks: one CI run saw a two-rank gloo training
    that normally takes 10 s not end in 600 s, and never again in 40 runs here (the longest
    run here takes 40 s: 300 s leaves room for a slower machine). A run that
    hangs twice fails with the stacks of both."""
    args = [sys.executable if a == 'python' else str(a) for a in args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, *map(str, pythonpath)]),
               OMP_NUM_THREADS='1', PYTHONFAULTHANDLER='1',
               PATH=os.pathsep.join([osp.dirname(sys.executable), os.environ.get('PATH', '')]))
    hangs = []
    attempt = 0
    while True:
        env['PORT'] = str(free_port())
        if attempt:  # a port given on the command line: a fresh one too
            args = [str(free_port()) if i and args[i - 1] == '--master_port' else a
                    for i, a in enumerate(args)]
        attempt += 1
        try:
            with work_dir_kept(args) as restore:
                try:
                    proc = run_once(args, env, timeout)
                except ToolHung:
                    restore()
                    raise
        except ToolHung as hung:
            hangs.append(hung.output)
            if len(hangs) == 2:
                raise AssertionError(f'{hung} twice; the stacks when stopped:\n'
                                     + '\n=== second run ===\n'.join(hangs)) from None
            warnings.warn(f'{hung}; run again. The stacks when stopped:\n{hung.output}')
            continue
        if (proc.returncode == 0 or attempt >= retries
                or not any(m in proc.stdout + proc.stderr for m in PORT_IN_USE)):
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
