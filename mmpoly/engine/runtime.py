"""What tools/train.py and tools/test.py do before building a Runner once the config is
loaded: set the allocator, choose the backend and the work dir."""
import gc
import os.path as osp
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from ..utils.host_malloc import keep_freed_memory


def setup_runtime(cfg: Config, launcher: str = 'none') -> Config:
    """glibc's allocator keeps freed memory (``env_cfg.keep_freed_memory``, default True:
    :mod:`mmpoly.utils.host_malloc`); nccl on GPUs; without one, gloo and CPU DDP.

    mmengine 0.10.7 assumes a GPU per process for the pytorch launcher (it calls
    ``torch.cuda.set_device`` and passes ``device_ids``), so without CUDA the process group is
    started here with gloo (the Runner then skips its own start) and DDP gets no device ids.
    """
    env_cfg = cfg.setdefault('env_cfg', {})
    keep = env_cfg.get('keep_freed_memory', True)
    if not isinstance(keep, bool):
        raise TypeError(f'env_cfg.keep_freed_memory must be True or False, got {keep!r}')
    if keep:
        keep_freed_memory()  # before the model and the data take memory
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if torch.cuda.is_available():
        return cfg
    dist_cfg['backend'] = 'gloo'
    if launcher == 'none':
        return cfg
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if launcher == 'pytorch' and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    return cfg


def prepare_run(cfg: Config, launcher: str = 'none', work_dir: Optional[str] = None) -> Config:
    """Make a loaded config (``mmpoly.engine.load_config``) ready for ``Runner.from_cfg``.

    Records the launcher and sets up its backend (:func:`setup_runtime`). ``work_dir``
    overrides the config's; without either it is ``./work_dirs/<config name>``.
    """
    cfg.launcher = launcher
    setup_runtime(cfg, launcher)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        name = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def finish_distributed() -> None:
    """Let every rank arrive, then close the process group and collect it: a gloo rank whose
    peer has already exited, or whose process group is destroyed only at interpreter shutdown
    (still held by a DDP wrapper), can abort there ("terminate called without an active
    exception"). Call it once nothing holds the model (``del runner`` first)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
        gc.collect()  # the process group's threads end now, not in the interpreter's teardown
