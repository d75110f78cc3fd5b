"""A NaN/Inf loss stops a real tools/train.py run at the first such iteration, naming it and
the task, with no checkpoint of that state; nonfinite_loss='skip' skips and counts instead,
leaving parameters, optimizer state and BatchNorm statistics as they were before the step.
Metrics and the inference API refuse non-finite predictions with a clear error.

The non-finite values are injected by :class:`InjectNonFinite`, a test-only hook registered
here (the subprocess run imports this module through ``custom_imports``): at a chosen
iteration it makes one task's loss NaN, or writes inf into one parameter's gradient while
the loss stays finite. No test switch lives in the product code."""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
import uuid
import zipfile

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpoly.datasets import make_synthetic_pascal_mt
from mmpoly.engine.nonfinite import NonFiniteLossError
from mmpoly.evaluation.metrics.multi_task_metric import MultiTaskMetric, check_prediction
from tests.pascal import PASCAL_SPECS, PASCAL_TASK_SPECS
from mmseg.registry import HOOKS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/lora_swin-tiny_synthetic.py'
NUM_TRAIN, BATCH = 8, 2  # 4 iterations per epoch


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module(force=True)
class InjectNonFinite(Hook):
    """Test-only: at training iteration ``iteration`` (1-based, as logged) make ``task``'s
    loss NaN (``what='loss'``), or keep every loss finite and write inf into the gradient of
    one trainable parameter of ``task``'s decoder (``what='grad'``)."""
    priority = 'LOW'

    def __init__(self, iteration, task, what='loss'):
        assert what in ('loss', 'grad')
        self.iteration, self.task, self.what = iteration, task, what
        self.param = None  # the name of the parameter whose gradient was made inf
        self._undo = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != self.iteration:
            return
        decoder = unwrap(runner.model).decode_head.decoders[self.task]
        if self.what == 'loss':
            loss = decoder.loss_decode
            forward = loss.forward
            loss.forward = lambda *args, **kwargs: forward(*args, **kwargs) * float('nan')
            self._undo = lambda: delattr(loss, 'forward')
        else:
            name, param = next((n, p) for n, p in decoder.named_parameters()
                               if p.requires_grad)
            self.param = f'decode_head.decoders.{self.task}.{name}'
            self._undo = param.register_hook(
                lambda grad: torch.full_like(grad, float('inf'))).remove

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._undo is not None:
            self._undo()
            self._undo = None


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('nan') / 'data'
    make_synthetic_pascal_mt(str(root), num_train=NUM_TRAIN, num_val=4, image_size=(64, 80),
                             seed=0)
    return str(root)


def small_run_options(data_root, epochs):
    """--cfg-options (as a dict) for a short run on the small data root, no validation."""
    return {'train_dataloader.dataset.data_root': data_root,
            'train_dataloader.batch_size': BATCH, 'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
            # the learning rate stays above 0 to the last iteration (where a step must show)
            'train_cfg.max_epochs': epochs, 'param_scheduler.0.end': epochs + 1,
            'default_hooks.checkpoint.interval': 1,
            'default_hooks.checkpoint.max_keep_ckpts': 3,
            'default_hooks.logger.interval': 1, 'log_processor.window_size': 1,
            'randomness.seed': 0, 'val_cfg': None, 'val_dataloader': None,
            'val_evaluator': None}


def logged(work_dir):
    records = []
    for path in glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            records += [json.loads(line) for line in f if '"loss"' in line]
    return sorted(records, key=lambda r: r['step'])


def checkpoint_files(work_dir):
    """Every file under ``work_dir`` whose name holds '.pth' (temporary ones included)."""
    return sorted(osp.relpath(osp.join(d, f), work_dir) for d, _, files in os.walk(work_dir)
                  for f in files if '.pth' in f)


def assert_complete_and_finite(path):
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None, path  # every member's CRC
    state = torch.load(path, map_location='cpu', weights_only=False)
    tensors = list(state['state_dict'].items()) + [
        (f'optimizer.{i}.{k}', v) for i, s in state['optimizer']['state'].items()
        for k, v in s.items()]
    assert state['optimizer']['state'], 'the optimizer state was saved'
    for name, value in tensors:
        if torch.is_tensor(value) and value.is_floating_point():
            assert torch.isfinite(value).all(), f'{path}: {name} is not finite'
    return state


# ------------------------------------------------------------ 'stop' (the default)
def test_nan_loss_in_epoch_2_stops_the_run_and_keeps_only_the_epoch_1_checkpoint(
        tmp_path, data_root):
    # 2 iterations per epoch; iteration 4 is the 2nd of epoch 2: epoch_1.pth exists, and
    # iteration 3 changed the weights since (a checkpoint of the stopped state is new)
    config = tmp_path / 'nan_in_epoch_2.py'
    config.write_text(
        f'_base_ = [{osp.join(REPO, CONFIG)!r}]\n'
        "custom_imports = dict(imports=['mmpoly', 'tests.utils.test_nonfinite'],\n"
        '                      allow_failed_imports=False)\n'
        "custom_hooks = _base_.custom_hooks + [dict(type='InjectNonFinite', iteration=4,\n"
        "                                           task='sal')]\n")
    work = tmp_path / 'work'
    options = [f'{k}={v}' for k, v in small_run_options(data_root, 2).items()]
    options.append(f'train_dataloader.dataset.indices={2 * BATCH}')
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, 'tools/train.py', str(config), '--work-dir',
                           str(work), '--cfg-options', *options], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert ('NonFiniteLossError: non-finite loss at iteration 4 (epoch 2), task sal: '
            'loss=nan, loss_sal=nan. Stopped before the optimizer step') in out, out[-3000:]
    # iterations 1-3 ran and logged finite losses (the injection is the first NaN)
    records = logged(work)
    assert [r['step'] for r in records] == [1, 2, 3]
    assert all(math.isfinite(v) for r in records for k, v in r.items() if 'loss' in k)
    # on disk: epoch_1.pth only, complete and finite; last_checkpoint names it
    assert checkpoint_files(work) == ['epoch_1.pth']
    assert not osp.exists(work / 'epoch_2.pth')
    state = assert_complete_and_finite(work / 'epoch_1.pth')
    assert (state['meta']['epoch'], state['meta']['iter']) == (1, 2)
    with open(work / 'last_checkpoint') as f:
        assert osp.abspath(f.read().strip()) == osp.abspath(work / 'epoch_1.pth')


def test_finite_loss_with_non_finite_gradient_stops_before_the_step(tmp_path, data_root):
    # the last iteration of the only epoch: a step with it would be saved as epoch_1.pth
    runner = build_runner(tmp_path / 'work', data_root, 1,
                          **{'train_dataloader.dataset.indices': 2 * BATCH})
    inject = InjectNonFinite(2, 'normals', 'grad')
    runner.register_hook(inject)
    with pytest.raises(NonFiniteLossError) as error:
        train_one_thread(runner)
    assert str(error.value).startswith(
        f'finite loss but non-finite gradients of {inject.param} at iteration 2 (epoch 1). '
        'Stopped before the optimizer step')
    params = dict(unwrap(runner.model).named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    assert all(torch.isfinite(v).all() for state in runner.optim_wrapper.optimizer.state.values()
               for v in state.values())
    assert checkpoint_files(tmp_path / 'work') == []


# ------------------------------------------------------------ nonfinite_loss='skip'
def model_state(runner):
    """Clones of the parameters, the buffers (BatchNorm statistics, num_batches_tracked
    included) and the optimizer state (Adam's exp_avg, exp_avg_sq, step) by name."""
    model = unwrap(runner.model)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = runner.optim_wrapper.optimizer
    return dict(
        params={n: p.detach().clone() for n, p in model.named_parameters()},
        buffers={n: b.detach().clone() for n, b in model.named_buffers()},
        optimizer={f'{names[id(p)]}:{k}': v.detach().clone() if torch.is_tensor(v)
                   else torch.tensor(v) for p, s in optimizer.state.items()
                   for k, v in s.items()},
        grads={n: p.grad is not None for n, p in model.named_parameters()})


def bitwise_equal(a, b):
    return (a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)))


def differences(before, after):
    """The names whose value differs bitwise (or that appeared or went) between two states."""
    return sorted(name for name in set(before) | set(after)
                  if name not in before or name not in after
                  or not bitwise_equal(before[name], after[name]))


class Recorder(Hook):
    """The state before and after every training iteration, its logged losses and the
    count of skipped steps the hook published."""
    priority = 'LOWEST'

    def __init__(self):
        self.before, self.after, self.losses, self.skipped = {}, {}, {}, {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before[runner.iter + 1] = model_state(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        iteration = runner.iter + 1
        self.after[iteration] = model_state(runner)
        self.losses[iteration] = {k: float(torch.as_tensor(v).detach())
                                  for k, v in outputs.items() if 'loss' in k}
        self.skipped[iteration] = runner.message_hub.get_info('nonfinite_skipped_steps', 0)


def build_runner(work_dir, data_root, epochs, **options):
    """A Runner built from the demo config as tools/train.py builds it (no subprocess)."""
    from mmengine.runner import Runner

    from mmpoly.engine import load_config, prepare_run
    cfg = prepare_run(load_config(osp.join(REPO, CONFIG), dict(
        small_run_options(data_root, epochs), **options)), 'none', str(work_dir))
    cfg.experiment_name = f'nonfinite_{uuid.uuid4().hex[:8]}'  # its own logger, message hub
    cfg.visualizer.name = cfg.experiment_name
    return Runner.from_cfg(cfg)


def train_one_thread(runner):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tools the tests start (OMP_NUM_THREADS=1)
    try:
        runner.train()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def skip_run(tmp_path_factory, data_root):
    """One epoch of 4 iterations with nonfinite_loss='skip', built like tools/train.py does:
    1 good; 2 a NaN loss of task sal; 3 finite losses but an inf gradient; 4 good."""
    work = tmp_path_factory.mktemp('skip') / 'work'
    runner = build_runner(work, data_root, 1, nonfinite_loss='skip')
    recorder = Recorder()
    inf_grad = InjectNonFinite(3, 'normals', 'grad')
    for hook in (InjectNonFinite(2, 'sal', 'loss'), inf_grad, recorder):
        runner.register_hook(hook)
    train_one_thread(runner)
    assert type(runner.optim_wrapper.optimizer).__name__ in ('Adam', 'AdamW')
    assert sorted(recorder.after) == [1, 2, 3, 4]
    recorder.inf_grad_param = inf_grad.param
    return runner, recorder, work


@pytest.mark.parametrize('iteration', [2, 3], ids=['nan_loss', 'finite_loss_inf_grad'])
def test_skipped_step_leaves_parameters_optimizer_and_batchnorm_unchanged(skip_run,
                                                                          iteration):
    _, recorder, _ = skip_run
    before, after = recorder.before[iteration], recorder.after[iteration]
    losses = recorder.losses[iteration]
    if iteration == 2:
        assert math.isnan(losses['loss_sal']) and math.isnan(losses['loss'])
    else:  # every loss finite: only the gradient check can skip this step
        assert all(math.isfinite(v) for v in losses.values()), losses
    assert recorder.skipped[iteration] == iteration - 1  # counted
    # the optimizer state exists (iteration 1 stepped) and Adam's entries are all there
    assert {k.split(':')[1] for k in before['optimizer']} == {'exp_avg', 'exp_avg_sq', 'step'}
    # bitwise the same after the skipped step
    assert differences(before['params'], after['params']) == []
    assert differences(before['optimizer'], after['optimizer']) == []
    kinds = {n.rsplit('.', 1)[1] for n in before['buffers']}
    assert {'running_mean', 'running_var', 'num_batches_tracked'} <= kinds  # BatchNorm's
    assert differences(before['buffers'], after['buffers']) == []
    assert not any(after['grads'].values())  # no gradient left for the next step


def test_good_steps_update_and_skips_do_not_count_as_steps(skip_run):
    runner, recorder, work = skip_run
    model = unwrap(runner.model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for iteration in (1, 4):  # the good steps, before and after the skipped ones
        before, after = recorder.before[iteration], recorder.after[iteration]
        assert all(math.isfinite(v) for v in recorder.losses[iteration].values())
        changed = set(differences(before['params'], after['params']))
        # all trainable ones once the zero-initialised LoRA B (iteration 1) gives gradients
        assert changed <= trainable and (changed == trainable if iteration == 4 else changed)
        # the forward pass changes the BatchNorm statistics (restoring them is not vacuous)
        buffers = differences(before['buffers'], after['buffers'])
        assert any(n.endswith('running_mean') for n in buffers)
        assert any(n.endswith('num_batches_tracked') for n in buffers)
    assert recorder.skipped[4] == 2
    after = recorder.after[4]
    steps = {float(v) for k, v in after['optimizer'].items() if k.endswith(':step')}
    assert steps == {2.0}  # iterations 1 and 4; the skipped ones did not step
    assert set(differences(recorder.before[4]['optimizer'], after['optimizer'])) == set(
        after['optimizer'])  # every exp_avg, exp_avg_sq and step moved
    tracked = {int(v) for k, v in after['buffers'].items() if k.endswith('num_batches_tracked')}
    assert tracked == {2}
    # the run went on to the end; its checkpoint is complete and finite
    assert checkpoint_files(work) == ['epoch_1.pth']
    assert_complete_and_finite(work / 'epoch_1.pth')
    with open(glob.glob(osp.join(str(work), '*', '*.log'))[0]) as f:
        log = f.read()
    assert ('skipped the step of iteration 2 (epoch 1): non-finite loss, task sal: '
            'loss=nan, loss_sal=nan (1 step(s) skipped so far)') in log
    assert ('skipped the step of iteration 3 (epoch 1): finite loss but non-finite gradients '
            f'of {recorder.inf_grad_param} (2 step(s) skipped so far)') in log
    assert '2 training step(s) skipped for a non-finite loss' in log


def test_metric_refuses_non_finite_predictions():
    metric = MultiTaskMetric(tasks=('normals', 'semseg'), task_specs=PASCAL_TASK_SPECS)
    gt_normals = torch.zeros(3, 4, 4)
    gt_normals[2] = 1
    sample = dict(img_path='img_7.jpg', gt_normals=dict(data=gt_normals),
                  pred_normals=dict(data=torch.full((3, 4, 4), float('nan'))))
    with pytest.raises(FloatingPointError, match='normals prediction of image img_7.jpg'):
        metric.process({}, [sample])
    with pytest.raises(ValueError, match='semseg prediction has class ids outside'):
        check_prediction('semseg', torch.full((1, 4, 4), -1), spec=PASCAL_SPECS['semseg'])
    check_prediction('sal', np.full((1, 4, 4), 0.5, np.float32),
                     spec=PASCAL_SPECS['sal'])  # finite: accepted


def test_inference_api_refuses_a_diverged_model():
    from mmpoly.apis import inference_model, init_model
    model = init_model(CONFIG)
    with torch.no_grad():
        next(model.decode_head.parameters()).fill_(float('nan'))
    image = np.random.RandomState(0).randint(0, 255, (40, 50, 3), np.uint8)
    with pytest.raises(FloatingPointError, match='non-finite .* logits'):
        inference_model(model, image)
