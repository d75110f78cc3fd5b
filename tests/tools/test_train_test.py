"""The user-facing commands, run as a user runs them: train, test, resume, 2 gloo ranks."""
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmseg.registry import MODELS
from .conftest import DEMO, demo_options, last_validation, read_json, run_tool


def untrained_checkpoint(path):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(DEMO).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_main_job_learns_and_test_writes_metrics(tmp_path, demo_data, python):
    work = tmp_path / 'work'
    # a fixed seed: with one mmengine draws, some 10-epoch runs learn semseg by less than
    # the margin below (a fresh clone's CI drew one: 8.6 mIoU points)
    run_tool(python, 'tools/train.py', DEMO, '--work-dir', str(work),
             *demo_options(demo_data, 10, 'randomness.seed=0'))
    assert osp.isfile(work / 'epoch_10.pth')

    trained_dir, untrained_dir = tmp_path / 'trained', tmp_path / 'untrained'
    proc = run_tool(python, 'tools/test.py', DEMO, str(work / 'epoch_10.pth'), '--work-dir',
                    str(trained_dir), *demo_options(demo_data, 10))
    assert 'delta_m' in proc.stdout + proc.stderr  # the results table is printed
    run_tool(python, 'tools/test.py', DEMO, untrained_checkpoint(str(tmp_path / 'init.pth')),
             '--work-dir', str(untrained_dir), *demo_options(demo_data, 10))
    trained = read_json(trained_dir / 'test_metrics.json')
    untrained = read_json(untrained_dir / 'test_metrics.json')
    # tools/test.py on the final checkpoint reproduces the last validation exactly
    validation = last_validation(work)
    assert {'semseg/mIoU', 'sal/maxF', 'normals/mErr', 'delta_m'} <= set(validation)
    assert {k: trained[k] for k in validation} == validation
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'normals/mErr', 'delta_m'):
        assert key in trained
    assert trained['semseg/mIoU'] > untrained['semseg/mIoU'] + 10, (trained, untrained)
    assert trained['normals/mErr'] < untrained['normals/mErr']


def test_resume_continues_from_the_saved_iteration(tmp_path, demo_data, python):
    work = tmp_path / 'work'
    run_tool(python, 'tools/train.py', DEMO, '--work-dir', str(work),
             *demo_options(demo_data, 2))
    # the run "dies" after epoch 2; resuming with a longer schedule picks it up there
    proc = run_tool(python, 'tools/train.py', DEMO, '--work-dir', str(work), '--resume',
                    *demo_options(demo_data, 3))
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 2, iter: 16' in log
    assert 'Epoch(train)   [1]' not in log and 'Epoch(train) [1]' not in log
    ckpt = torch.load(work / 'epoch_3.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == 3 and ckpt['meta']['iter'] == 24
    steps = {int(s['step']) for s in ckpt['optimizer']['state'].values()}
    assert steps == {24}  # Adam's state came back: 16 steps before, 8 after


def test_two_gloo_ranks_train_and_three_evaluate_like_one(tmp_path, demo_data, python):
    """Training on 2 ranks; evaluation and --out files on 3 ranks of an uneven split (16
    images: 6 per rank once the sampler has padded the list with 2 repeats, which the
    evaluation must drop) equal the 1-rank run exactly.

    Both evaluations run one image per batch. With batches of 8 the two runs put an image in
    batches of other sizes (8 on one rank; 5 or 6 on three), and whether a row's matrix
    product depends on the batch around it is the BLAS's choice: MKL's default kernels give
    the same bits, its ``MKL_CBWR=COMPATIBLE`` path does not for the last image of a batch
    (normals 4e-7 apart, mErr 1.6e-9 apart). One image per batch makes the per-image work
    the same in both runs on any BLAS, so exact equality tests what this is about: the
    split, the padding and the gathering."""
    work = tmp_path / 'work'
    run_tool('bash', 'tools/dist_train.sh', DEMO, '2', '--work-dir', str(work),
             *demo_options(demo_data, 1))
    ckpt = str(work / 'epoch_1.pth')
    assert osp.isfile(ckpt)
    one, three = tmp_path / 'one_rank', tmp_path / 'three_ranks'
    per_image = demo_options(demo_data, 1, 'test_dataloader.batch_size=1')
    run_tool(python, 'tools/test.py', DEMO, ckpt, '--work-dir', str(one), '--out',
             str(one / 'out'), *per_image)
    run_tool('bash', 'tools/dist_test.sh', DEMO, ckpt, '3', '--work-dir', str(three),
             '--out', str(three / 'out'), *per_image)
    assert read_json(one / 'test_metrics.json') == read_json(three / 'test_metrics.json')
    files = {}
    for name in (one, three):
        files[name] = {osp.relpath(osp.join(d, f), name / 'out'): open(osp.join(d, f),
                                                                       'rb').read()
                       for d, _, fs in os.walk(name / 'out') for f in fs}
    assert len(files[one]) == 4 * 16 and files[three] == files[one]


def test_checkpoint_of_another_method_is_refused(tmp_path, demo_data, python):
    """mmengine loads test / load_from checkpoints non-strictly (a warning, then random
    parts); every run refuses one that does not fit, naming the file and the keys."""
    ckpt = untrained_checkpoint(str(tmp_path / 'multi_task_ft.pth'))
    lora = 'configs/demo/lora_swin-tiny_synthetic.py'
    proc = subprocess_failure(python, 'tools/test.py', lora, ckpt, '--work-dir',
                              str(tmp_path / 'strict'), *demo_options(demo_data, 1))
    assert 'CheckpointMismatchError: checkpoint ' + ckpt + ' does not fit this model' in proc
    assert 'backbone.tuner.lora_A.qkv0' in proc  # a missing key is named
    # loading part of a checkpoint on purpose: the loader's strict=False
    run_tool(python, 'tools/test.py', lora, ckpt, '--work-dir', str(tmp_path / 'partial'),
             *demo_options(demo_data, 1, 'custom_hooks.0.strict=False'))
    assert osp.isfile(tmp_path / 'partial' / 'test_metrics.json')


def subprocess_failure(*args):
    try:
        run_tool(*args)
    except AssertionError as e:
        return str(e)
    raise AssertionError(f'{args} succeeded')
