"""Pretrained checkpoints named by URL, as mmseg's configs name them.

mmengine's ``CheckpointLoader`` reads an ``http(s)://`` checkpoint from the torch hub cache
(``<torch.hub.get_dir()>/checkpoints/<file name>``, i.e. ``$TORCH_HOME/hub/checkpoints``),
downloading it there first. :func:`fetch_checkpoint` does that download itself (rank 0
first, the others after a barrier) so that a machine without a network gets an error that
says which URL was needed and where to put the file; the loader then finds it cached.
"""
import os
import os.path as osp
import sys
import urllib.error
import urllib.parse

import torch
from mmengine.dist import get_dist_info


def is_url(path: str) -> bool:
    return isinstance(path, str) and path.startswith(('http://', 'https://'))


def hub_cache_file(url: str) -> str:
    """Where mmengine's ``load_from_http`` (torch's ``load_state_dict_from_url``) keeps
    ``url``: the hub cache's ``checkpoints/`` folder and the URL's file name."""
    name = osp.basename(urllib.parse.urlparse(url).path)
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def local_checkpoint_file(path: str) -> str:
    """The file a checkpoint path or URL is read from (a URL: its hub cache file)."""
    return hub_cache_file(path) if is_url(path) else path


class PretrainedUnavailableError(FileNotFoundError):
    """A pretrained checkpoint URL is neither cached nor downloadable."""


def fetch_checkpoint(url: str) -> str:
    """The hub cache file of ``url``, downloaded there unless already cached.

    Raises:
        PretrainedUnavailableError: the download failed (offline?); the message names the
            URL, the cache file to put it at and the local-path override.
    """
    cached = hub_cache_file(url)
    rank, world_size = get_dist_info()
    error = None
    if rank == 0 and not osp.isfile(cached):
        try:
            os.makedirs(osp.dirname(cached), exist_ok=True)
            # writes a temporary file beside ``cached`` and renames it: never half a file
            torch.hub.download_url_to_file(url, cached, progress=sys.stderr.isatty())
        except (urllib.error.URLError, OSError, ValueError) as e:
            error = e
    if world_size > 1:
        torch.distributed.barrier()
    if not osp.isfile(cached):
        reason = f' ({error!r})' if error is not None else ''
        raise PretrainedUnavailableError(
            f'pretrained checkpoint {url} is not in the torch hub cache and could not be '
            f'downloaded{reason}. Download it where there is a network and put it at '
            f'{cached} (the hub cache, $TORCH_HOME/hub/checkpoints), or put it anywhere and '
            f'pass --cfg-options model.backbone.init_cfg.checkpoint=PATH (e.g. '
            f'pretrained/{osp.basename(cached)})')
    return cached
