"""Checkpoints that are never half written, and loading errors that name the file.

Writing (:class:`AtomicCheckpointHook`, and ``AdapterCheckpointHook`` through
:class:`AtomicSaveMixin`): a checkpoint is written to a temporary file in its own directory
(``.epoch_2.pth.tmp.<pid>``), flushed to disk (``fsync``) and renamed onto its name, so
``epoch_2.pth`` either does not exist or is complete. Only then are older checkpoints deleted
(``max_keep_ckpts``) and ``last_checkpoint`` rewritten (itself atomically), so it always names
a complete file. mmengine's ``CheckpointHook`` deletes the oldest checkpoint *before* writing
the new one: a kill during the write lost every checkpoint with ``max_keep_ckpts=1``. The
same for ``save_best``: the new best checkpoint is complete before the previous one goes.
``atomic_save_checkpoint`` does it for a single file (``tools/export_adapter.py``).

Reading: every local checkpoint load of mmengine (``load_from``, ``--resume``,
``tools/test.py``, ``init_model``, ``tools/export_adapter.py``) goes through
:func:`load_local_checkpoint`, whose errors name the file and say why (truncated or not a
checkpoint, or refused by torch's weights-only unpickler and which object was refused).

Resuming (:func:`resolve_resume`, used by ``tools/train.py --resume``): the newest complete
checkpoint of the work dir; a damaged one (truncated, bad zip CRC) is named, logged and
skipped.
"""
import glob
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from mmseg.registry import HOOKS

_TMP_MARK = '.tmp.'


class CheckpointLoadError(RuntimeError):
    """A checkpoint file cannot be read (damaged, not a checkpoint)."""


# ------------------------------------------------------------------------ writing
def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_name(filename: str) -> str:
    """The hidden name a file is written under before it is renamed to ``filename``."""
    return f'.{filename}{_TMP_MARK}{os.getpid()}'


def _publish(tmp: str, path: str) -> None:
    """The complete temporary file ``tmp`` becomes ``path``: fsync, rename, fsync of the
    directory (so the rename itself survives a crash)."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


def _remove_checkpoint(file_backend, path: str) -> None:
    """A checkpoint file, or a checkpoint directory (DeepSpeed's)."""
    if file_backend.isfile(path):
        file_backend.remove(path)
    elif file_backend.isdir(path):
        file_backend.rmtree(path)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = osp.join(osp.dirname(path), _temporary_name(osp.basename(path)))
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


def atomic_save_checkpoint(checkpoint: dict, path: str) -> None:
    """mmengine's ``save_checkpoint`` to a local ``path`` through a temporary file in the
    same directory and a rename: ``path`` is the old file or the complete new one."""
    from mmengine.runner.checkpoint import save_checkpoint
    directory, name = osp.split(osp.abspath(path))
    tmp = osp.join(directory, _temporary_name(name))
    try:
        save_checkpoint(checkpoint, tmp)
        _publish(tmp, path)
    finally:
        if osp.exists(tmp):  # the write failed: no temporary file left behind
            os.remove(tmp)


def remove_stale_temporaries(out_dir: str) -> None:
    """Delete temporary checkpoint files a killed process left in ``out_dir``."""
    for path in glob.glob(osp.join(out_dir, f'.*{_TMP_MARK}*')):
        try:
            os.remove(path)
            print_log(f'removed the incomplete checkpoint {path} of an interrupted run',
                      'current')
        except OSError:
            pass


class AtomicSaveMixin:
    """Replaces ``CheckpointHook._save_checkpoint_with_step``: write to a temporary file in the
    same directory, fsync, rename; then delete old checkpoints; then ``last_checkpoint``."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            remove_stale_temporaries(self.out_dir)

    def publish(self, tmp: str, path: str) -> None:
        """The complete temporary file ``tmp`` becomes the checkpoint ``path`` (the one place
        a checkpoint appears under its name: tests interrupt a write by overriding it)."""
        _publish(tmp, path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        removed = None
        if self.max_keep_ckpts > 0:
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    removed = self.keep_ckpt_ids.popleft()
                self.keep_ckpt_ids.append(step)
                # saved in the checkpoint's message hub: what exists once it is complete
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp_filename = _temporary_name(ckpt_filename)
        runner.save_checkpoint(
            self.out_dir,
            tmp_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        self.publish(self.file_backend.join_path(self.out_dir, tmp_filename), self.last_ckpt)
        # the new checkpoint is complete: now the old one may go
        if removed is not None and removed != step:
            _remove_checkpoint(self.file_backend, self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(removed)))
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine deletes the previous best checkpoint, then writes the new one under its
        final name: a kill in between left no best checkpoint, or a half-written one. Here
        the new one is written through a temporary file and renamed, and only then is the
        previous one deleted."""
        if not self.save_best:
            return
        several = len(self.key_indicators) > 1
        previous = dict(self.best_ckpt_path_dict) if several else {None: self.best_ckpt_path}
        # mmengine deletes what these name before it writes: hidden from it, deleted below
        if several:
            self.best_ckpt_path_dict = dict.fromkeys(previous)
        else:
            self.best_ckpt_path = None
        runner.save_checkpoint = self._atomic(runner.save_checkpoint)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del runner.save_checkpoint  # the Runner's own method again
            for key, old in previous.items():
                new = self.best_ckpt_path_dict[key] if several else self.best_ckpt_path
                if new is None:  # not better this time: the old one stays the best
                    if several:
                        self.best_ckpt_path_dict[key] = old
                    else:
                        self.best_ckpt_path = old
                elif old and old != new and is_main_process() and osp.isfile(new):
                    _remove_checkpoint(self.file_backend, old)
                    runner.logger.info(f'The previous best checkpoint {old} is removed')

    def _atomic(self, save_checkpoint):
        """``runner.save_checkpoint`` through a temporary file (what the best checkpoint is
        written with); the hook's own temporary files pass through as they are."""

        def save(out_dir, filename, *args, **kwargs):
            if filename.startswith('.') and _TMP_MARK in filename:
                return save_checkpoint(out_dir, filename, *args, **kwargs)
            tmp_filename = _temporary_name(filename)
            save_checkpoint(out_dir, tmp_filename, *args, **kwargs)
            if is_main_process():
                self.publish(osp.join(out_dir, tmp_filename), osp.join(out_dir, filename))

        return save


@HOOKS.register_module()
class AtomicCheckpointHook(AtomicSaveMixin, CheckpointHook):
    """``CheckpointHook`` (every argument works) whose files are never half written."""


# ------------------------------------------------------------------------ reading
def damage(path: str) -> Optional[str]:
    """Why ``path`` is not a complete checkpoint file, or None when it is (zip structure and
    every member's CRC; nothing is unpickled)."""
    if not osp.isfile(path):
        return 'the file does not exist'
    if osp.getsize(path) == 0:
        return 'the file is empty'
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        if not zipfile.is_zipfile(path):
            try:
                with open(path, 'rb') as f:
                    head = f.read(2)
            except OSError:
                head = b''
            if head[:1] == b'\x80':  # a legacy (pre-zip) torch file: no CRCs to check
                return _legacy_damage(path)
            return ('truncated or not a checkpoint (no zip central directory: was its '
                    'write interrupted?)')
        return f'damaged zip archive ({error})'
    if bad is not None:
        return f'damaged: member {bad} fails its CRC check'
    return None


def _legacy_damage(path: str) -> Optional[str]:
    """Why a legacy (torch < 1.6, non-zip) file is not a complete checkpoint, or None. It has
    no central directory and no CRCs: it is complete when the weights-only unpickler (which runs
    no code) reads its pickles and every storage to the end."""
    try:
        torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        return ('a legacy (non-zip) torch file whose completeness cannot be checked: it holds '
                f'objects the weights-only unpickler refuses ({str(error).splitlines()[0]}); '
                're-save it with torch.save')
    except (RuntimeError, EOFError, ValueError) as error:
        return f'truncated legacy (non-zip) torch file ({str(error).splitlines()[0]})'
    return None


def _why_refused(error: Exception) -> str:
    text = str(error)
    match = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text)
    what = f'the pickled object {match.group(1)}' if match else 'a pickled object'
    return (f'refused by the weights-only unpickler: it holds {what}, which is neither a '
            'tensor nor an mmengine checkpoint type, and loading it could run code. Load '
            'only checkpoints written by tools/train.py or tools/export_adapter.py '
            f'(original error: {text.splitlines()[0] if text else type(error).__name__})')


def load_local_checkpoint(filename, map_location=None):
    """mmengine's local checkpoint loader, with errors that name the file."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} not found')
    try:
        return torch.load(filename, map_location=map_location)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(f'checkpoint {filename}: {_why_refused(error)}') from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        why = damage(filename) or str(error).splitlines()[0]
        raise CheckpointLoadError(f'checkpoint {filename} cannot be read: {why}') from error


def install_named_loader() -> None:
    """Route mmengine's local-file checkpoint loading through :func:`load_local_checkpoint`."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_local_checkpoint)


# ------------------------------------------------------------------------ resuming
def _step_of(path: str) -> int:
    numbers = re.findall(r'\d+', osp.basename(path))
    return int(numbers[-1]) if numbers else -1


def candidate_checkpoints(work_dir: str) -> List[str]:
    """``last_checkpoint``'s file first, then the work dir's checkpoints, newest first."""
    found = []
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if named:
            found.append(named)
    others = [p for p in glob.glob(osp.join(work_dir, '*.pth'))
              if not osp.basename(p).startswith('.')]
    others.sort(key=lambda p: (_step_of(p), osp.getmtime(p)), reverse=True)
    found += [p for p in others if osp.abspath(p) not in map(osp.abspath, found)]
    return found


def resolve_resume(work_dir: str, explicit: Optional[str] = None) -> Optional[str]:
    """The checkpoint ``--resume`` should load.

    ``explicit`` (``--resume PATH``) must be complete, else an error names it. Without it,
    the newest complete checkpoint of ``work_dir``; each damaged or missing newer one is
    named in the log. None when there is none.
    """
    if explicit is not None:
        why = damage(explicit)
        if why is not None:
            raise CheckpointLoadError(f'--resume {explicit}: {why}')
        return explicit
    skipped = []
    for path in candidate_checkpoints(work_dir):
        why = damage(path)
        if why is None:
            if skipped:
                print_log(f'resuming from {path}, the newest complete checkpoint (skipped: '
                          + '; '.join(skipped) + ')', 'current', level=30)
            return path
        skipped.append(f'{path}: {why}')
        print_log(f'cannot resume from {path}: {why}', 'current', level=30)
    if skipped:
        raise CheckpointLoadError(f'no complete checkpoint in {work_dir} to resume from: '
                                  + '; '.join(skipped))
    return None


__all__ = ['AtomicCheckpointHook', 'AtomicSaveMixin', 'CheckpointLoadError', 'damage',
           'install_named_loader', 'load_local_checkpoint', 'resolve_resume']
