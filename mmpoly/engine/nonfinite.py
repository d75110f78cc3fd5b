"""Stop (or skip) a training step whose loss is not finite.

:class:`NonFiniteLossHook` (in ``default_runtime.py``'s ``custom_hooks``) checks every task's
loss and the total before the optimizer step. The config key ``nonfinite_loss`` chooses:

* ``'stop'`` (default): raise :class:`NonFiniteLossError` naming the iteration and the
  task(s), before the backward pass and the optimizer step; the run ends there, so no
  checkpoint of that state is written. A step whose loss is finite but whose gradients are
  not stops the same way, before the optimizer step, naming the parameters;
* ``'skip'``: drop the step (no backward, no optimizer update), log a warning with the count
  of skipped steps so far, and go on. A step whose loss is finite but whose gradients are not
  is skipped too, and the buffers the forward pass updated (BatchNorm statistics and their
  ``num_batches_tracked``) are restored: parameters, optimizer state and buffers are those
  from before the step.

Gradients are checked only without a float16 loss scaler (``--amp`` on GPUs), which skips
steps with non-finite gradients itself and lowers its scale.

Under DDP the decision is taken by all ranks together (a NaN on one rank stops or skips the
step on every rank).
"""
import functools
import math
from typing import Dict, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmseg.registry import HOOKS

ACTIONS = ('stop', 'skip')


class NonFiniteLossError(FloatingPointError):
    """A task's loss or the total loss is NaN or infinite."""


def nonfinite_losses(log_vars: Dict) -> List[str]:
    """Names of the loss entries of ``log_vars`` that are not finite."""
    bad = []
    for name, value in log_vars.items():
        if 'loss' not in name:
            continue
        if isinstance(value, torch.Tensor):
            finite = bool(torch.isfinite(value.detach()).all())
        else:
            finite = math.isfinite(float(value))
        if not finite:
            bad.append(name)
    return bad


def _task_of(name: str) -> str:
    return name[len('loss_'):] if name.startswith('loss_') else name


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """See the module doc. ``action`` None: the config's ``nonfinite_loss`` (default 'stop')."""
    priority = 'VERY_HIGH'

    def __init__(self, action=None):
        if action is not None and action not in ACTIONS:
            raise ValueError(f'NonFiniteLossHook action must be one of {ACTIONS}, got '
                             f'{action!r}')
        self.action = action
        self.skipped = 0
        self._bad: List[str] = []
        self._values: Dict[str, float] = {}

    def before_train(self, runner) -> None:
        if self.action is None:
            self.action = runner.cfg.get('nonfinite_loss', 'stop')
            if self.action not in ACTIONS:
                raise ValueError(f'nonfinite_loss must be one of {ACTIONS}, got '
                                 f'{self.action!r}')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses = model.parse_losses
        hook = self

        def checked_parse_losses(losses):
            parsed, log_vars = parse_losses(losses)
            hook._bad = nonfinite_losses(log_vars)
            hook._values = {k: float(log_vars[k].detach()) if isinstance(
                log_vars[k], torch.Tensor) else float(log_vars[k]) for k in hook._bad}
            return parsed, log_vars

        model.parse_losses = checked_parse_losses
        self._names = {id(p): name for name, p in model.named_parameters()}
        self._device = next(model.parameters(), torch.empty(0)).device
        wrappers = getattr(runner.optim_wrapper, 'optim_wrappers', None)
        for wrapper in (wrappers.values() if wrappers else [runner.optim_wrapper]):
            self._guard(runner, wrapper)

    def _guard(self, runner, optim_wrapper) -> None:
        update_params = optim_wrapper.update_params
        hook = self
        if getattr(optim_wrapper, 'loss_scaler', None) is None:
            # a finite loss may still give non-finite gradients: the step would make the
            # weights non-finite, and the end of the epoch would save them (a loss scaler,
            # with float16, skips those steps itself)
            step = optim_wrapper.step

            # wraps: keeps the ``_with_counter`` mark of mmengine's parameter schedulers
            @functools.wraps(step)
            def checked_step(*args, **kwargs):
                bad = hook._nonfinite_grads(optim_wrapper)
                if bad is None:
                    return step(*args, **kwargs)
                what = ('finite loss but non-finite gradients of ' + ', '.join(bad[:3])
                        + (f' and {len(bad) - 3} more' if len(bad) > 3 else '')
                        if bad else 'finite loss but non-finite gradients on another rank')
                if hook.action == 'stop':
                    raise NonFiniteLossError(
                        f'{what} at {hook._where(runner)}. Stopped before the optimizer '
                        'step: no checkpoint of this state is written (lower the learning '
                        "rate, or set nonfinite_loss='skip' to skip such steps)")
                hook.skipped += 1
                hook._restore_buffers()
                optim_wrapper.zero_grad()
                runner.message_hub.update_info('nonfinite_skipped_steps', hook.skipped)
                print_log(f'skipped the step of {hook._where(runner)}: {what} '
                          f'({hook.skipped} step(s) skipped so far)', 'current', level=30)
                return None

            optim_wrapper.step = checked_step

        def guarded_update_params(loss, *args, **kwargs):
            bad = list(hook._bad)
            if not bad and not bool(torch.isfinite(loss.detach()).all()):
                bad, hook._values = ['loss'], {'loss': float(loss.detach().sum())}
            flag = torch.tensor([1.0 if bad else 0.0], device=loss.device)
            if torch_dist.is_available() and torch_dist.is_initialized():
                torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
            hook._bad = []
            if flag.item() == 0:
                return update_params(loss, *args, **kwargs)
            where = hook._where(runner)
            if bad:
                tasks = sorted({_task_of(b) for b in bad if b != 'loss'})
                what = (f"task{'s' if len(tasks) > 1 else ''} {', '.join(tasks)}: "
                        if tasks else 'the total loss: ')
                what += ', '.join(f'{k}={hook._values[k]}' for k in bad)
            else:
                what = 'on another rank'
            if hook.action == 'stop':
                raise NonFiniteLossError(
                    f'non-finite loss at {where}, {what}. Stopped before the optimizer '
                    'step: no checkpoint of this state is written (lower the learning rate, '
                    "or set nonfinite_loss='skip' to skip such steps)")
            optim_wrapper.zero_grad()
            hook._restore_buffers()
            hook.skipped += 1
            runner.message_hub.update_info('nonfinite_skipped_steps', hook.skipped)
            print_log(f'skipped the step of {where}: non-finite loss, {what} '
                      f'({hook.skipped} step(s) skipped so far)', 'current', level=30)
            return None

        optim_wrapper.update_params = guarded_update_params

    @staticmethod
    def _where(runner) -> str:
        iteration = runner.iter + 1
        return (f'iteration {iteration} (epoch {runner.epoch + 1})'
                if runner.train_loop is not None else f'iteration {iteration}')

    def _nonfinite_grads(self, optim_wrapper) -> Optional[List[str]]:
        """None when every gradient is finite on every rank; else the names of the parameters
        whose gradients are not finite on this rank (empty: only on another rank). One
        device-to-host copy for all parameters; the flag lives on the model's device (nccl
        reduces only CUDA tensors)."""
        params = [p for group in optim_wrapper.optimizer.param_groups
                  for p in group['params'] if p.grad is not None]
        flags = (torch.stack([torch.isfinite(p.grad).all().to(self._device) for p in params])
                 if params else torch.ones(0, dtype=torch.bool, device=self._device))
        finite = flags.all().float().reshape(1)
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.all_reduce(finite, op=torch_dist.ReduceOp.MIN)
        if finite.item() == 1:
            return None
        return [self._names.get(id(p), 'a parameter')
                for p, ok in zip(params, flags.tolist()) if not ok]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.action == 'skip':  # a skipped step also undoes the forward's buffer updates
            # every buffer: BatchNorm's integer num_batches_tracked too (the forward counts it)
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self._buffers = [(b, b.detach().clone()) for b in model.buffers()]

    def _restore_buffers(self) -> None:
        with torch.no_grad():
            for buffer, saved in getattr(self, '_buffers', []):
                buffer.copy_(saved)

    def after_train(self, runner) -> None:
        if self.skipped:
            print_log(f'{self.skipped} training step(s) skipped for a non-finite loss',
                      'current', level=30)


__all__ = ['NonFiniteLossError', 'NonFiniteLossHook', 'nonfinite_losses']
