"""Real tools/train.py processes, killed (SIGKILL to their own pid) and resumed.

* killed while ``epoch_2.pth`` is being written (max_keep_ckpts=1, as the demo configs): the
  previous checkpoint survives, ``last_checkpoint`` names a complete file;
* resumed, killed again mid-epoch, resumed again: every logged iteration's losses equal the
  uninterrupted run's, bit for bit, with 2 persistent data-loader workers and validation
  after every epoch;
* a damaged latest checkpoint: ``--resume`` names it, falls back to the newest complete one,
  and the re-run epoch again equals the original;
* ``save_best``: killed while a new best checkpoint is being written, the previous best
  survives complete (mmengine deleted it first); the next best replaces it;
* two gloo ranks (``tools/dist_train.sh``) resumed from epoch 1 log epoch 2's losses of the
  uninterrupted run, bit for bit: each rank gets its own generators back (dropout).
"""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from mmpoly.datasets import make_synthetic_pascal_mt
from mmpoly.checkpoint.atomic import damage
from tests.tools.interrupted_write import interrupt_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/lora_swin-tiny_synthetic.py'
EPOCHS = 2
ITERS_PER_EPOCH = 4  # 16 images, batch 4


def options(data_root, keep=1, epochs=EPOCHS):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=2', 'val_dataloader.num_workers=2',
            f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
            f'param_scheduler.0.end={epochs}', 'default_hooks.checkpoint.interval=1',
            f'default_hooks.checkpoint.max_keep_ckpts={keep}',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1',
            'randomness.seed=0']


def run(work_dir, data_root, *extra, env=None, keep=1, epochs=EPOCHS, cfg=()):
    cmd = [sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra,
           *options(data_root, keep, epochs), *cfg]
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', **(env or {}))
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def logged_losses(work_dir):
    """step -> every logged loss of the step, from all runs in the work dir."""
    losses = {}
    for path in sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    losses.setdefault(record['step'], []).append(
                        {k: v for k, v in record.items() if k.startswith('loss')})
    return losses


def wait_for(predicate, proc, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f'the run ended ({proc.returncode}) too early:\n'
                                 + proc.stdout.read()[-4000:])
        time.sleep(0.05)
    proc.kill()
    raise AssertionError('timed out')


def kill(proc):
    os.kill(proc.pid, signal.SIGKILL)  # its own pid: the data-loader workers die with it
    proc.wait(timeout=30)
    return proc.stdout.read()


def check_complete(proc):
    out = proc.stdout.read()
    assert proc.wait(timeout=240) == 0, out[-5000:]
    return out


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume') / 'data'
    make_synthetic_pascal_mt(str(root), num_train=16, num_val=4, image_size=(64, 80), seed=0)
    return str(root)


class Reference:
    """The uninterrupted run (max_keep_ckpts=2: epoch_1.pth and epoch_2.pth remain), started
    at once and waited for when first needed (it runs beside the first killed run)."""

    def __init__(self, work_dir, data_root):
        self.work_dir = work_dir
        self.proc = run(work_dir, data_root, keep=2)
        self._losses = None

    def get(self):
        if self._losses is None:
            check_complete(self.proc)
            self._losses = {step: runs[0]
                            for step, runs in logged_losses(self.work_dir).items()}
            assert sorted(self._losses) == list(range(1, EPOCHS * ITERS_PER_EPOCH + 1))
        return self.work_dir, self._losses


@pytest.fixture(scope='module')
def reference(tmp_path_factory, data_root):
    ref = Reference(tmp_path_factory.mktemp('resume') / 'uninterrupted', data_root)
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()


def test_killed_in_write_and_mid_epoch_then_resumed_equals_uninterrupted(
        tmp_path, data_root, reference):
    work_dir = tmp_path / 'killed'

    # 1. killed while epoch_2.pth is being written
    proc = run(work_dir, data_root, cfg=interrupt_options('epoch_2.pth'))
    wait_for(lambda: osp.exists(work_dir / 'epoch_2.pth.writing'), proc)
    kill(proc)
    assert not osp.exists(work_dir / 'epoch_2.pth')
    assert glob.glob(str(work_dir / '.epoch_2.pth.tmp.*')), 'the partial file is left'
    with open(work_dir / 'last_checkpoint') as f:
        last = f.read().strip()
    assert osp.basename(last) == 'epoch_1.pth' and damage(last) is None

    # 2. resumed (from epoch_1.pth), killed in the middle of epoch 2
    proc = run(work_dir, data_root, '--resume')
    mid = ITERS_PER_EPOCH + 2
    wait_for(lambda: max(logged_losses(work_dir), default=0) >= mid
             and len(logged_losses(work_dir).get(mid, [])) >= 2, proc)
    kill(proc)

    # 3. resumed again, to the end
    out = check_complete(run(work_dir, data_root, '--resume'))
    _, expected = reference.get()
    assert not glob.glob(str(work_dir / '.*.tmp.*')), 'stale temporary files removed'

    got = logged_losses(work_dir)
    assert sorted(got) == sorted(expected)
    for step, runs in got.items():
        for losses in runs:  # a step logged by several runs: each equals the original
            assert losses == expected[step], (step, losses, expected[step])
    assert 'random states restored' in out
    # epoch 1 was logged by the first process, epoch 2 by all three (complete, killed, complete)
    assert len(got[1]) == 1 and len(got[ITERS_PER_EPOCH + 1]) == 3


def test_damaged_latest_checkpoint_falls_back_to_the_newest_complete(reference, data_root,
                                                                     tmp_path):
    ref_dir, expected = reference.get()
    work_dir = tmp_path / 'damaged'
    os.makedirs(work_dir)
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        with open(ref_dir / name, 'rb') as src, open(work_dir / name, 'wb') as dst:
            dst.write(src.read())
    with open(work_dir / 'last_checkpoint', 'w') as f:
        f.write(str(work_dir / 'epoch_2.pth'))
    size = osp.getsize(work_dir / 'epoch_2.pth')
    with open(work_dir / 'epoch_2.pth', 'r+b') as f:
        f.truncate(size * 2 // 3)

    out = check_complete(run(work_dir, data_root, '--resume', keep=2))
    assert f'{work_dir / "epoch_2.pth"} is damaged' in out
    assert f'resuming from {work_dir / "epoch_1.pth"}' in out
    got = logged_losses(work_dir)
    assert sorted(got) == list(range(ITERS_PER_EPOCH + 1, 2 * ITERS_PER_EPOCH + 1))
    for step, runs in got.items():
        assert runs == [expected[step]], step
    assert damage(str(work_dir / 'epoch_2.pth')) is None  # rewritten, complete


def test_killed_while_writing_a_new_best_keeps_the_previous_best(tmp_path, data_root):
    """The seed-0 run's semseg mIoU is higher at epochs 2 and 3 than at epoch 1: epoch 1's
    best is replaced at epoch 2, whose write is killed here."""
    work_dir = tmp_path / 'best'
    best = ['default_hooks.checkpoint.save_best=semseg/mIoU']
    proc = run(work_dir, data_root, epochs=3,
               cfg=best + interrupt_options('best_semseg_mIoU_epoch_2.pth'))
    wait_for(lambda: osp.exists(work_dir / 'best_semseg_mIoU_epoch_2.pth.writing'), proc)
    kill(proc)
    bests = sorted(glob.glob(str(work_dir / 'best_*.pth')))
    assert [osp.basename(p) for p in bests] == ['best_semseg_mIoU_epoch_1.pth']
    assert damage(bests[0]) is None
    assert glob.glob(str(work_dir / '.best_semseg_mIoU_epoch_2.pth.tmp.*'))

    # resumed from epoch_2.pth (written before epoch 2's validation): epoch 1's score is the
    # best known; epoch 3 beats it, and only then is epoch 1's file deleted
    check_complete(run(work_dir, data_root, '--resume', epochs=3, cfg=best))
    bests = sorted(glob.glob(str(work_dir / 'best_*.pth')))
    assert [osp.basename(p) for p in bests] == ['best_semseg_mIoU_epoch_3.pth']
    assert damage(bests[0]) is None and not glob.glob(str(work_dir / '.*.tmp.*'))
    scores = {}
    for path in glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json')):
        with open(path) as f:
            scores.update({r['step']: r['semseg/mIoU'] for r in map(json.loads, f)
                           if 'semseg/mIoU' in r})
    # epoch 2 was validated and logged before its best checkpoint was being written
    assert sorted(scores) == [1, 2, 3] and scores[2] > scores[1] and scores[3] > scores[1]
    import torch
    hub = torch.load(str(work_dir / 'epoch_3.pth'), map_location='cpu',
                     weights_only=True)['message_hub']['runtime_info']
    assert hub['best_score'] == scores[3] and hub['best_ckpt'] == bests[0]


def test_two_ranks_resumed_equal_uninterrupted(tmp_path, data_root):
    """2 ranks x batch 4 of 16 images: 2 steps per epoch. From the second step on, rank 0's
    losses depend on rank 1's dropout masks too (through the averaged gradients), and the
    ranks are seeded apart (``diff_rank_seed``): rank 1 must get its own states back."""
    from .conftest import run_tool
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    run_tool('bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', str(full),
             *options(data_root, keep=2), 'randomness.diff_rank_seed=True')
    os.makedirs(resumed)
    with open(full / 'epoch_1.pth', 'rb') as src, open(resumed / 'epoch_1.pth', 'wb') as dst:
        dst.write(src.read())
    proc = run_tool('bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', str(resumed),
                    '--resume', str(resumed / 'epoch_1.pth'), *options(data_root, keep=2),
                    'randomness.diff_rank_seed=True')
    assert 'random states restored' in proc.stdout + proc.stderr
    expected = {step: runs[0] for step, runs in logged_losses(full).items()}
    got = {step: runs[0] for step, runs in logged_losses(resumed).items()}
    assert sorted(expected) == [1, 2, 3, 4] and sorted(got) == [3, 4]
    assert got == {step: expected[step] for step in (3, 4)}
