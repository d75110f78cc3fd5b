"""Every checkpoint-loading path names the file in its error and says why; a damaged latest
checkpoint is skipped (named) by --resume; tools/test.py records which checkpoint its metrics
come from, and tools/summarize.py shows it."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint

import mmpoly  # noqa: F401
from mmseg.registry import MODELS
from mmpoly.datasets import make_synthetic_pascal_mt
from mmpoly.checkpoint.adapter import load_adapter_checkpoint, sha256_file
from mmpoly.checkpoint.atomic import (CheckpointLoadError, candidate_checkpoints, damage,
                                      resolve_resume)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/lora_swin-tiny_synthetic.py'


class Payload:
    pass


@pytest.fixture(scope='module')
def good(tmp_path_factory):
    """A complete (untrained) checkpoint of the demo config."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(osp.join(REPO, CONFIG)).model)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'epoch_1.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture
def truncated(good, tmp_path):
    path = str(tmp_path / 'epoch_2.pth')
    with open(good, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return path


def loaders():
    from mmpoly.apis import init_model
    return {
        'load_from / --resume / tools/test.py': lambda p: _load_checkpoint(p, 'cpu'),
        'init_model': lambda p: init_model(CONFIG, p),
        'export_adapter': lambda p: load_adapter_checkpoint(
            MODELS.build(Config.fromfile(osp.join(REPO, CONFIG)).model), p),
    }


def test_truncated_checkpoint_is_named_by_every_loader(truncated):
    init_default_scope('mmseg')
    for name, load in loaders().items():
        with pytest.raises(CheckpointLoadError) as info:
            load(truncated)
        message = str(info.value)
        assert truncated in message and 'truncated' in message, (name, message)


def test_refused_pickle_names_the_file_and_the_object(tmp_path):
    init_default_scope('mmseg')
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': Payload()}, path)
    for name, load in loaders().items():
        with pytest.raises(pickle.UnpicklingError) as info:
            load(path)
        message = str(info.value)
        assert path in message and 'refused' in message and 'Payload' in message, (
            name, message)


def test_resume_resolution(good, truncated, tmp_path):
    work_dir = osp.dirname(truncated)
    os.symlink(good, osp.join(work_dir, 'epoch_1.pth'))
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(truncated)
    assert damage(good) is None and 'truncated' in damage(truncated)
    assert candidate_checkpoints(work_dir)[0] == truncated
    # the damaged latest is skipped for the newest complete one
    assert resolve_resume(work_dir) == osp.join(work_dir, 'epoch_1.pth')
    # an explicit damaged file is an error naming it
    with pytest.raises(CheckpointLoadError, match=f'--resume {truncated}: truncated'):
        resolve_resume(work_dir, truncated)


def test_legacy_pickle_checkpoints_are_checked_not_trusted(tmp_path):
    """A legacy (torch < 1.6, non-zip) file has no CRCs: it counts as complete only when
    every pickle and storage reads to the end (it used to count as complete unread)."""
    state = {'state_dict': {'w': torch.arange(1000.), 'b': torch.ones(30, 30)},
             'meta': {'epoch': 1}}
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert damage(path) is None
    with open(path, 'rb') as f:
        data = f.read()
    for cut in (len(data) // 3, len(data) - 8):  # inside the pickles; inside the last storage
        cut_path = str(tmp_path / f'epoch_{cut}.pth')
        with open(cut_path, 'wb') as f:
            f.write(data[:cut])
        assert 'truncated legacy' in damage(cut_path), cut
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': Payload()}, evil, _use_new_zipfile_serialization=False)
    assert 'cannot be checked' in damage(evil)
    with open(osp.join(tmp_path, 'last_checkpoint'), 'w') as f:
        f.write(cut_path)
    assert resolve_resume(str(tmp_path)) == path


def test_test_py_names_a_truncated_checkpoint_and_records_a_good_one(good, truncated,
                                                                     tmp_path):
    data = tmp_path / 'data'
    make_synthetic_pascal_mt(str(data), num_train=2, num_val=2, image_size=(48, 64), seed=0)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    opts = ['--cfg-options', f'test_dataloader.dataset.data_root={data}',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']

    def test_py(checkpoint, work):
        return subprocess.run([sys.executable, 'tools/test.py', CONFIG, checkpoint,
                               '--work-dir', str(work), *opts], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=240)

    proc = test_py(truncated, tmp_path / 'bad')
    assert proc.returncode != 0
    assert f'checkpoint {truncated} cannot be read: truncated' in proc.stderr, proc.stderr[-3000:]

    proc = test_py(good, tmp_path / 'work')
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / 'work' / 'test_metrics.json') as f:
        metrics = json.load(f)
    assert metrics['checkpoint'] == dict(path=good, sha256=sha256_file(good))
    assert isinstance(metrics['delta_m'], float)

    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import summarize
    finally:
        sys.path.pop(0)
    table = summarize.format_table([summarize.load_run(str(tmp_path / 'work'))])
    assert f'metrics of checkpoint {good} (sha256 {sha256_file(good)})' in table
