"""One picture per image: the input, then each task's ground truth above its prediction.

Layout (all panels at the image's original size)::

    | input | semseg GT   | human_parts GT   | sal GT   | normals GT   |
    |       | semseg pred | human_parts pred | sal pred | normals pred |

Class maps use the dataset's fixed palettes (``semseg_palette``, ``human_parts_palette``;
VOC colours), label 255 (ignore / no person) is drawn white; saliency is grey (label 0/1 ->
black/white, prediction 255 x p); normals are RGB = 255 x (n + 1) / 2 (the dataset's PNG
encoding), invalid (zero) label pixels black. Every panel has a title band.

:class:`MultiTaskLocalVisualizer` (an mmseg ``SegLocalVisualizer``) draws it in
``add_datasample`` and hands it to its vis backends (Local, TensorBoard, W&B, ...) with
``add_image``; :class:`MultiTaskVisualizationHook` calls it during validation (every
``interval`` iterations) and testing (``tools/test.py --show-dir DIR`` writes every picture to
``DIR/<id>.png``).
"""
import os.path as osp
from typing import Optional, Sequence

import cv2
import mmcv
import numpy as np
from mmengine import fileio
from mmengine.hooks import Hook
from mmengine.visualization import Visualizer

from mmseg.registry import HOOKS, VISUALIZERS
from mmseg.visualization import SegLocalVisualizer
from mmpoly.task_kinds import IGNORE_COLOUR, VOC_PALETTE  # noqa: F401  (re-exported)
from mmpoly.tasks import TaskSpec, resolve_task_specs

TITLE_HEIGHT = 14


def _numpy(x) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().float().numpy() if x.is_floating_point() else \
            x.detach().cpu().numpy()
    return np.asarray(x)


def task_to_rgb(task: str, data, is_label: bool, palette=None,
                spec: Optional[TaskSpec] = None) -> np.ndarray:
    """A label or prediction tensor of ``task`` -> HxWx3 uint8 RGB (by the task's kind:
    ``TaskKind.to_rgb``; ``spec``: the task's spec, required; ``palette``: class colours,
    VOC's by default)."""
    if spec is None:
        raise ValueError(f'task_to_rgb: no task spec for {task!r}')
    return spec.task_kind.to_rgb(_numpy(data), is_label, spec, palette)


def _panel(rgb: np.ndarray, title: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    band = np.full((TITLE_HEIGHT, w, 3), 255, dtype=np.uint8)
    cv2.putText(band, title, (2, TITLE_HEIGHT - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, rgb], axis=0)


def _field(sample, name):
    field = sample.get(name) if isinstance(sample, dict) else getattr(sample, name, None)
    if field is None:
        return None
    return field.get('data') if isinstance(field, dict) else getattr(field, 'data', field)


def draw_multi_task(image: np.ndarray, data_sample, dataset_meta: Optional[dict] = None,
                    tasks: Optional[Sequence[str]] = None, draw_gt: bool = True,
                    draw_pred: bool = True) -> np.ndarray:
    """The picture of one sample (layout: module doc), RGB uint8.

    Args:
        image: the input at its original size, RGB HxWx3.
        data_sample: with ``gt_<task>`` and / or ``pred_<task>`` fields.
        dataset_meta: for the palettes (``<task>_palette``).
        tasks: tasks to draw; default: every task the sample has a field for.
    """
    meta = dataset_meta or {}
    specs = meta.get('task_specs')
    if not specs:
        raise ValueError("draw_multi_task: dataset_meta['task_specs'] is required (the "
                         "dataset's metainfo)")
    known = tuple(specs)
    specs = resolve_task_specs(known, specs, where='draw_multi_task')
    h, w = image.shape[:2]
    if tasks is None:
        tasks = [t for t in known
                 if _field(data_sample, f'gt_{t}') is not None
                 or _field(data_sample, f'pred_{t}') is not None]
    blank = np.full((h, w, 3), 255, dtype=np.uint8)
    rows = []
    for which, wanted in (('gt', draw_gt), ('pred', draw_pred)):
        if not wanted:
            continue
        first = _panel(image, 'input') if not rows else _panel(blank, '')
        row = [first]
        for task in tasks:
            data = _field(data_sample, f'{which}_{task}')
            if data is None:
                rgb = blank
            else:
                spec = specs[task]
                palette = meta.get(f'{task}_palette') or spec.palette or None
                rgb = task_to_rgb(task, data, is_label=which == 'gt', palette=palette,
                                  spec=spec)
                if rgb.shape[:2] != (h, w):  # e.g. a label not at the original size
                    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)
            row.append(_panel(rgb, f"{task} {'GT' if which == 'gt' else 'pred'}"))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


@VISUALIZERS.register_module()
class MultiTaskLocalVisualizer(SegLocalVisualizer):
    """mmseg's local visualizer for multi-task samples (picture: module doc).

    Use it as ``visualizer = dict(type='MultiTaskLocalVisualizer', vis_backends=[...])``;
    ``add_datasample`` draws the picture, stores it in every vis backend, and optionally
    shows it or writes it to ``out_file``.
    """

    def add_datasample(self, name: str, image: np.ndarray, data_sample=None,
                       draw_gt: bool = True, draw_pred: bool = True, show: bool = False,
                       wait_time: float = 0, out_file: Optional[str] = None,
                       step: int = 0, with_labels: bool = True, **kwargs) -> None:
        picture = draw_multi_task(image, data_sample, self.dataset_meta, draw_gt=draw_gt,
                                  draw_pred=draw_pred)
        self.set_image(picture)
        if show:
            self.show(picture, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(picture), out_file)
        else:
            self.add_image(name, picture, step)


@HOOKS.register_module()
class MultiTaskVisualizationHook(Hook):
    """Draw multi-task pictures during validation and testing.

    Validation: every ``interval``-th iteration, the batch's pictures go to the vis
    backends (``add_image``, named ``val_<id>``, at the training iteration). Testing: with
    ``test_out_dir`` every picture is written to ``test_out_dir/<id>.png`` (and not sent
    to the backends); otherwise every ``interval``-th batch goes to the backends.

    Works with the ``MultiTaskLocalVisualizer`` and with any mmengine ``Visualizer`` (the
    picture is then drawn here and stored with ``add_image``).

    Args:
        draw (bool): draw at all. Default: False (as mmseg's hook).
        interval (int): every n-th validation / test iteration. Default: 50.
        test_out_dir (str, optional): folder for the test pictures.
        show (bool): display the pictures (needs a screen). Default: False.
        wait_time (float): seconds to show each. Default: 0.
        backend_args (dict, optional): file backend to read images.
    """
    priority = 'NORMAL'

    def __init__(self, draw: bool = False, interval: int = 50,
                 test_out_dir: Optional[str] = None, show: bool = False,
                 wait_time: float = 0., backend_args: Optional[dict] = None):
        self.draw = draw
        self.interval = interval
        self.test_out_dir = test_out_dir
        self.show = show
        self.wait_time = wait_time
        self.backend_args = backend_args

    def _draw(self, runner, mode: str, outputs, out_dir: Optional[str]) -> None:
        from mmpoly.evaluation.prediction_writer import sample_id
        visualizer = Visualizer.get_current_instance()
        meta = getattr(visualizer, 'dataset_meta', None)
        if not (meta or {}).get('task_specs'):  # mmseg's visualizers keep classes only
            meta = getattr(getattr(runner, f'{mode}_dataloader').dataset, 'metainfo', None)
        for output in outputs:
            img = mmcv.imfrombytes(fileio.get(output.img_path, backend_args=self.backend_args),
                                   channel_order='rgb')
            name = f'{mode}_{sample_id(output)}'
            out_file = osp.join(out_dir, f'{sample_id(output)}.png') if out_dir else None
            if isinstance(visualizer, MultiTaskLocalVisualizer):
                visualizer.dataset_meta = meta
                visualizer.add_datasample(name, img, output, show=self.show,
                                          wait_time=self.wait_time, out_file=out_file,
                                          step=runner.iter)
                continue
            picture = draw_multi_task(img, output, meta)
            if out_file is not None:
                mmcv.imwrite(mmcv.rgb2bgr(picture), out_file)
            else:
                visualizer.add_image(name, picture, step=runner.iter)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs: Optional[Sequence] = None) -> None:
        if self.draw and self.every_n_inner_iters(batch_idx, self.interval):
            self._draw(runner, 'val', outputs or (), None)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        if not self.draw:
            return
        if self.test_out_dir is not None:
            self._draw(runner, 'test', outputs or (), self.test_out_dir)
        elif self.every_n_inner_iters(batch_idx, self.interval):
            self._draw(runner, 'test', outputs or (), None)
