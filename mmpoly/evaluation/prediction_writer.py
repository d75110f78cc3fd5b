"""Predictions on disk in the benchmark's reference format, and back.

``tools/test.py CONFIG CKPT --out DIR`` adds :class:`MultiTaskPredictionWriter`; it writes, for
every evaluated image at its original size (shared/spec/benchmark.md):

=================================  ==========================================================
``DIR/semseg/<id>.png``            uint8 gray, class ids 0..20
``DIR/human_parts/<id>.png``       uint8 gray, class ids 0..6
``DIR/sal/<id>.png``               uint8 gray, ``quantize_probability(p)`` = floor(255 p)
``DIR/normals/<id>.png``           uint8 RGB = (x, y, z), floor(255 (n + 1) / 2)
``DIR/edge/<id>.png``              uint8 gray, ``quantize_probability(p)`` = floor(255 p)
``DIR/depth/<id>.mat``             MATLAB file, ``{'depth': (H, W) float32}`` in metres
``DIR/<regression>/<id>.npy``      float32 (C, H, W), a regression task's default format
=================================  ==========================================================

The file format of a task is its spec's ``prediction_format`` (its kind's default unless a
dataset sets it): NYUD-v2 depth is written as the reference's ``save_model_predictions``
writes it (``sio.savemat(path, {'depth': map})``), edges as its 8-bit PNG of 255 x p.

Saliency and normals are quantised by truncation, exactly as the reference
(Multi-Task-Learning-PyTorch writes ``(255 * p).astype(np.uint8)``) and as
:func:`~mmpoly.evaluation.metrics.functional.quantize_probability` /
:func:`~mmpoly.evaluation.metrics.functional.quantize_normals` model it, so the files score
exactly what ``MultiTaskMetric`` scores on in-memory predictions, up to the quantisation
itself (and bit for bit with ``quantize_normals=True``).

Images are written with PIL, which keeps RGB order: the normals PNGs read back with the
dataset's reader give (x, y, z) in the same channels as the dataset's ``normals_distill``.
"""
import os
import os.path as osp
import tempfile
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from PIL import Image
from scipy.io import loadmat, savemat

from mmseg.registry import HOOKS
from mmpoly.tasks import TaskSpec, resolve_task_specs


def _spec(task: str, spec: Optional[TaskSpec]) -> TaskSpec:
    if spec is None:  # no default dataset: the kind decides the file format
        raise ValueError(f'no task spec for {task!r}: pass the dataset\'s spec')
    return spec


def encode_prediction(task: str, data, spec: Optional[TaskSpec] = None) -> np.ndarray:
    """A ``pred_<task>`` tensor -> the uint8 array of its PNG (HxW or HxWx3); for a
    regression task, the float32 array of its ``.npy`` (C, H, W) or ``.mat`` (H, W) file
    (by the task's kind: ``TaskKind.encode_prediction``)."""
    spec = _spec(task, spec)
    return spec.task_kind.encode_prediction(task, data, spec)


def prediction_path(out_dir: str, task: str, img_id: str,
                    spec: Optional[TaskSpec] = None) -> str:
    ext = spec.prediction_format if spec is not None else 'png'
    return osp.join(out_dir, task, f'{img_id}.{ext}')


def write_prediction(out_dir: str, task: str, img_id: str, data,
                     spec: Optional[TaskSpec] = None) -> str:
    """Write one prediction atomically (a rank writing the same file twice is harmless)."""
    spec = _spec(task, spec)
    array = encode_prediction(task, data, spec)
    path = prediction_path(out_dir, task, img_id, spec)
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    ext = osp.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f'.{img_id}.', suffix=ext, dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            if ext == '.npy':
                np.save(f, array, allow_pickle=False)
            elif ext == '.mat':
                savemat(f, {task: array})
            else:
                Image.fromarray(array).save(f, format='PNG')
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def read_prediction(out_dir: str, task: str, img_id: str,
                    spec: Optional[TaskSpec] = None) -> torch.Tensor:
    """Read a prediction PNG back as a ``pred_<task>`` tensor.

    Class maps: (1, H, W) int64; saliency: (1, H, W) uint8 (the metric takes uint8 as
    already quantised); normals: (3, H, W) float64 ``2 v / 255 - 1`` (the metric
    normalises); edges as saliency; regression: the float32 array of its ``.npy``, or of
    its ``.mat`` as (1, H, W). A missing or malformed file raises an error naming it.
    """
    spec = _spec(task, spec)
    path = prediction_path(out_dir, task, img_id, spec)
    if not osp.isfile(path):
        raise FileNotFoundError(f'prediction file missing: {path} (task {task!r}, image '
                                f'{img_id!r})')
    try:
        array = _read_file(path, task, spec.prediction_format)
    except (OSError, ValueError) as e:
        raise ValueError(f'cannot read prediction file {path}: {e}') from e
    return spec.task_kind.decode_prediction(task, array, spec, path)


def _read_file(path: str, task: str, file_format: str) -> np.ndarray:
    """The array of a prediction file: a ``.mat`` map as (1, H, W) float32, a ``.npy`` as
    stored, a PNG as its pixels."""
    if file_format == 'mat':
        mat = loadmat(path)
        if task not in mat:
            raise ValueError(f'no variable {task!r} in it (variables: '
                             f'{sorted(k for k in mat if not k.startswith("__"))})')
        values = np.asarray(mat[task], dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f'{task!r} must be an (H, W) map, got shape {values.shape}')
        return np.ascontiguousarray(values[None])
    if file_format == 'npy':
        return np.load(path, allow_pickle=False)
    with Image.open(path) as img:
        return np.array(img)


def sample_id(data_sample) -> str:
    """``img_id`` of a data sample, else the base name of its image."""
    meta = data_sample.metainfo
    if 'img_id' in meta:
        return str(meta['img_id'])
    if 'img_path' in meta:
        return osp.splitext(osp.basename(meta['img_path']))[0]
    raise KeyError('data sample has neither img_id nor img_path: cannot name its files')


@HOOKS.register_module()
class MultiTaskPredictionWriter(Hook):
    """Write every ``pred_<task>`` of the test loop to ``out_dir`` (format: module doc).

    Every rank writes the samples it evaluated. mmengine's ``DefaultSampler`` pads the
    last round by repeating the first samples; those padded positions are skipped, so on N
    ranks each image is written exactly once (and writes are atomic renames anyway).

    Args:
        out_dir (str): output folder (created).
        tasks (Sequence[str], optional): tasks to write. Default: every ``pred_<task>``.
    """
    priority = 'NORMAL'

    def __init__(self, out_dir: str, tasks: Optional[Sequence[str]] = None):
        self.out_dir = out_dir
        self.tasks = tuple(tasks) if tasks is not None else None
        self._seen = 0
        self._written = 0

    def before_test(self, runner) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        self._seen = self._written = 0
        loader = runner.test_dataloader
        self._dataset_len = len(loader.dataset)
        self._skip_padding = isinstance(loader.sampler, DefaultSampler)
        self._rank, self._world = get_dist_info()
        # the dataset's task specs (kind: how to write a prediction)
        specs = (getattr(loader.dataset, 'metainfo', None) or {}).get('task_specs')
        if not specs:
            raise ValueError(f'PredictionWriterHook: the test dataset '
                             f'{type(loader.dataset).__name__} declares no task_specs')
        self._specs = resolve_task_specs(self.tasks or tuple(specs), specs,
                                         where='PredictionWriterHook.tasks')

    def _is_padding(self, position: int) -> bool:
        # DefaultSampler gives rank r the positions r, r + N, r + 2N, ... of the padded list
        if not self._skip_padding:
            return False
        return self._rank + position * self._world >= self._dataset_len

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or ():
            position, self._seen = self._seen, self._seen + 1
            if self._is_padding(position):
                continue
            img_id = sample_id(sample)
            tasks = self.tasks or [t for t in self._specs if f'pred_{t}' in sample]
            for task in tasks:
                write_prediction(self.out_dir, task, img_id,
                                 getattr(sample, f'pred_{task}').data, self._specs[task])
            self._written += 1

    def after_test(self, runner) -> None:
        print_log(f'rank {self._rank}: wrote the predictions of {self._written} images to '
                  f'{self.out_dir}', logger='current')


__all__ = [
    'MultiTaskPredictionWriter', 'encode_prediction', 'write_prediction', 'read_prediction',
    'prediction_path', 'sample_id'
]
