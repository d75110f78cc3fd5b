"""The multi-task picture: colours, layout, and the hook feeding vis backends."""
import glob
import os.path as osp
import uuid
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmengine.visualization import Visualizer

from mmseg.structures import SegDataSample
from mmpoly.visualization import (MultiTaskLocalVisualizer, MultiTaskVisualizationHook,
                                  draw_multi_task, task_to_rgb)
from mmpoly.visualization.multi_task_visualizer import TITLE_HEIGHT, VOC_PALETTE
from tests.pascal import PASCAL_META, PASCAL_SPECS

H, W = 6, 8


def sample(img_path='x/img_7.jpg'):
    s = SegDataSample(metainfo=dict(img_path=img_path, img_id='img_7'))
    semseg = torch.zeros(1, H, W, dtype=torch.int64)
    semseg[0, 0, 0], semseg[0, 0, 1] = 15, 255
    normals = torch.zeros(3, H, W)
    normals[2, :, 4:] = 1.0  # right half: (0, 0, 1); left half: no label
    s.set_data(dict(
        gt_semseg=PixelData(data=semseg), pred_semseg=PixelData(data=semseg.clamp(max=20)),
        gt_sal=PixelData(data=torch.tensor([[0, 1, 255] * 2 + [0, 1]] * H)[None]),
        pred_sal=PixelData(data=torch.full((1, H, W), 0.5)),
        gt_normals=PixelData(data=normals), pred_normals=PixelData(data=normals)))
    return s


def pascal_rgb(task, data, is_label, palette=None):
    """``task_to_rgb`` with the PASCAL task's spec (what the hook gives it)."""
    return task_to_rgb(task, data, is_label, palette, spec=PASCAL_SPECS[task])


def test_colours():
    s = sample()
    rgb = pascal_rgb('semseg', s.gt_semseg.data, True)
    assert tuple(rgb[0, 0]) == tuple(VOC_PALETTE[15]) and tuple(rgb[0, 2]) == (0, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)  # ignore
    sal = pascal_rgb('sal', s.gt_sal.data, True)
    assert [tuple(sal[0, i]) for i in range(2)] == [(0, 0, 0), (255, 255, 255)]
    assert tuple(pascal_rgb('sal', s.pred_sal.data, False)[0, 0]) == (127, 127, 127)
    n = pascal_rgb('normals', s.gt_normals.data, True)
    assert tuple(n[0, 7]) == (127, 127, 255) and tuple(n[0, 0]) == (0, 0, 0)
    palette = [[1, 2, 3]] * 21
    assert tuple(pascal_rgb('semseg', s.gt_semseg.data, True, palette)[0, 2]) == (1, 2, 3)


def test_layout():
    image = np.full((H, W, 3), 9, dtype=np.uint8)
    picture = draw_multi_task(image, sample(), PASCAL_META)
    tasks = 3  # semseg, sal, normals
    assert picture.shape == (2 * (H + TITLE_HEIGHT), (1 + tasks) * W, 3)
    top = TITLE_HEIGHT
    assert (picture[top:top + H, :W] == 9).all()  # the input
    np.testing.assert_array_equal(picture[top:top + H, W:2 * W],
                                  pascal_rgb('semseg', sample().gt_semseg.data, True))
    bottom = 2 * TITLE_HEIGHT + H
    np.testing.assert_array_equal(picture[bottom:, 2 * W:3 * W],
                                  pascal_rgb('sal', sample().pred_sal.data, False))


@pytest.mark.parametrize('kind', ['Visualizer', 'MultiTaskLocalVisualizer'])
def test_hook_sends_validation_pictures_to_the_vis_backends(tmp_path, kind):
    img_path = str(tmp_path / 'img_7.jpg')
    mmcv.imwrite(np.zeros((H, W, 3), dtype=np.uint8), img_path)
    cls = Visualizer if kind == 'Visualizer' else MultiTaskLocalVisualizer
    cls.get_instance(f'vis_{uuid.uuid4().hex}', save_dir=str(tmp_path / 'vis'),
                     vis_backends=[dict(type='LocalVisBackend')])
    runner = SimpleNamespace(iter=12, val_dataloader=SimpleNamespace(
        dataset=SimpleNamespace(metainfo=dict(PASCAL_META, semseg_palette=VOC_PALETTE))))
    hook = MultiTaskVisualizationHook(draw=True, interval=2)
    hook.after_val_iter(runner, 0, outputs=[sample(img_path)])
    hook.after_val_iter(runner, 1, outputs=[sample(img_path)])  # not every iteration
    files = glob.glob(str(tmp_path / 'vis' / '**' / '*.png'), recursive=True)
    assert [osp.basename(f) for f in files] == ['val_img_7_12.png']
    assert mmcv.imread(files[0]).shape == (2 * (H + TITLE_HEIGHT), 4 * W, 3)


def test_hook_writes_test_pictures(tmp_path):
    img_path = str(tmp_path / 'img_7.jpg')
    mmcv.imwrite(np.zeros((H, W, 3), dtype=np.uint8), img_path)
    MultiTaskLocalVisualizer.get_instance(f'vis_{uuid.uuid4().hex}')
    runner = SimpleNamespace(iter=0, test_dataloader=SimpleNamespace(
        dataset=SimpleNamespace(metainfo=PASCAL_META)))
    hook = MultiTaskVisualizationHook(draw=True, test_out_dir=str(tmp_path / 'show'))
    hook.after_test_iter(runner, 3, outputs=[sample(img_path)])
    assert osp.isfile(tmp_path / 'show' / 'img_7.png')
