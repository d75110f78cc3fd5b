"""Exact resume: a run killed and resumed is the run it replaces, loss for loss.

Two pieces, both in ``default_runtime.py``:

* :class:`ExactResumeHook` writes every random state of the training process into each
  checkpoint (``checkpoint['rng_state']``: torch CPU and CUDA, numpy, Python ``random``, the
  train sampler's shuffle seed, the per-sample augmentation seed) and restores it when a run
  resumes. The rule that makes a resumed run equal to the uninterrupted one: the random
  state at the first step of epoch ``e + 1`` is the state at the end of epoch ``e`` (the one
  a checkpoint holds), whatever happens in between (validation, data-loader workers being
  started or not, which draws from torch's generator).
* :class:`EpochSeededDataset` (``PascalContextMTDataset`` is one) seeds numpy, ``random`` and
  torch from ``(seed, epoch, index)`` before it prepares a sample, so the augmentation of a
  sample depends on nothing else: not on the worker that prepares it, on the number of
  workers, on ``persistent_workers``, or on when the workers were started. The epoch is shared
  with the (forked or spawned) workers through shared memory, so persistent workers see it.

Scope: a run resumes from an epoch-end checkpoint (``by_epoch=True``, the configs' setting);
bit-exact on CPU. With several ranks the checkpoint holds every rank's generators (gathered at
the last iteration of the epoch: rank 0 alone writes the file) and each rank restores its
own; resumed on another number of ranks, only the states shared by all ranks (sampler,
augmentation) are restored.
"""
import multiprocessing
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmseg.registry import HOOKS


# ------------------------------------------------------------------------ per-sample seeds
class EpochSeededDataset:
    """Mixin for an mmengine ``BaseDataset``: per-sample seeds once :meth:`set_sample_seed`
    was called (by :class:`ExactResumeHook`); unchanged behaviour otherwise."""

    _sample_seed = None  # RawArray [enabled, seed, epoch], shared with the workers

    def set_sample_seed(self, seed: int, epoch: int) -> None:
        if self._sample_seed is None:
            self._sample_seed = multiprocessing.RawArray('q', 3)
        self._sample_seed[1] = int(seed) % (1 << 62)
        self._sample_seed[2] = int(epoch)
        self._sample_seed[0] = 1

    def sample_seed(self, idx: int) -> Optional[int]:
        shared = self._sample_seed
        if shared is None or not shared[0]:
            return None
        return int(np.random.SeedSequence([shared[1], shared[2], int(idx)]).generate_state(1)[0])

    def __getitem__(self, idx):
        seed = self.sample_seed(idx)
        if seed is None:
            return super().__getitem__(idx)
        in_main = torch.utils.data.get_worker_info() is None
        if in_main:  # num_workers=0: leave the main process's generators as they were
            saved = np.random.get_state(), random.getstate(), torch.get_rng_state()
        np.random.seed(seed)
        random.seed(seed)
        # the CPU generator only: ``torch.manual_seed`` would also reseed every GPU's
        # generator (the model's dropout in a num_workers=0 run; set_rng_state below restores
        # only the CPU's) and, before CUDA starts, format a stack trace per call (0.3 ms)
        torch.default_generator.manual_seed(seed)
        try:
            return super().__getitem__(idx)
        finally:
            if in_main:
                np.random.set_state(saved[0])
                random.setstate(saved[1])
                torch.set_rng_state(saved[2])


# ------------------------------------------------------------------------ the hook
def get_rng_state() -> dict:
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                 python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda = state['cuda']
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _train_dataset(runner):
    dataset = runner.train_dataloader.dataset
    while not hasattr(dataset, 'set_sample_seed') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset  # a dataset wrapper
    return dataset if hasattr(dataset, 'set_sample_seed') else None


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """See the module doc."""
    priority = 'LOWEST'

    def __init__(self):
        self._pending: Optional[dict] = None  # generator states for the next epoch's start
        self._sample_seed: Optional[int] = None
        self._rank_states: Optional[list] = None  # every rank's, at the end of the epoch

    def before_train(self, runner) -> None:
        dataset = _train_dataset(runner)
        if self._sample_seed is None:
            self._sample_seed = int(runner.seed) if runner.seed is not None else 0
        if dataset is not None:
            dataset.set_sample_seed(self._sample_seed, runner.epoch)
        elif runner.rank == 0:
            print_log(f'ExactResumeHook: {type(runner.train_dataloader.dataset).__name__} '
                      'has no per-sample seeds: its augmentations depend on the data-loader '
                      'workers and a resumed run may differ', 'current', level=30)

    def before_train_epoch(self, runner) -> None:
        dataset = _train_dataset(runner)
        if dataset is not None:
            dataset.set_sample_seed(self._sample_seed, runner.epoch)
        self._first_iter = True

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if getattr(self, '_first_iter', False):
            self._first_iter = False
            if self._pending is not None:
                set_rng_state(self._pending)
                self._pending = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # the epoch's last step: every rank's generators as the epoch ends, gathered now (all
        # ranks are here; the checkpoint is written by rank 0 alone)
        if get_world_size() > 1 and batch_idx == len(runner.train_dataloader) - 1:
            self._rank_states = all_gather_object(
                dict(get_rng_state(), sample_seed=self._sample_seed))  # seed + rank: own

    def after_train_epoch(self, runner) -> None:
        self._pending = get_rng_state()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        sampler = runner.train_dataloader.sampler
        checkpoint['rng_state'] = dict(
            get_rng_state(),
            sampler_seed=getattr(sampler, 'seed', None),
            sample_seed=self._sample_seed,
            world_size=get_world_size(),
            ranks=self._rank_states if get_world_size() > 1 else None)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:  # load_from: weights only, a fresh run
            return
        state = checkpoint.get('rng_state')
        if state is None:
            print_log('ExactResumeHook: the checkpoint has no random states (written by an '
                      'older version): the resumed run will not repeat the original exactly',
                      'current', level=30)
            return
        sampler = runner.train_dataloader.sampler
        if state.get('sampler_seed') is not None and hasattr(sampler, 'seed'):
            sampler.seed = state['sampler_seed']
        saved_world, world = state.get('world_size', 1), get_world_size()
        own = state if world == 1 else (state.get('ranks') or [None] * world)[get_rank()]
        if saved_world != world:
            own = None
        sample_seed = (own or state).get('sample_seed')  # per rank with diff_rank_seed
        if sample_seed is not None:
            self._sample_seed = int(sample_seed)
        if own is not None:
            self._pending = {k: own[k] for k in ('torch', 'numpy', 'python', 'cuda')
                             if k in own}
            print_log('ExactResumeHook: random states restored from the checkpoint',
                      'current')
        else:
            why = (f'was written by {saved_world} rank(s), this run has {world}'
                   if saved_world != world else 'has no per-rank states (an older version)')
            print_log(f'ExactResumeHook: the checkpoint {why}: the sampler and augmentation '
                      'seeds are restored, the generators (dropout) start anew', 'current',
                      level=30)


__all__ = ['EpochSeededDataset', 'ExactResumeHook', 'get_rng_state', 'set_rng_state']
