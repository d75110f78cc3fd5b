"""init_model / inference_model / demo/image_demo.py.

The oracle is the evaluation path: the prediction for an image must equal what
``model.test_step`` gives for that image through the test dataset (labels and all), which
is what ``tools/test.py`` scores.
"""
import copy
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from PIL import Image
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from mmseg.registry import DATASETS
from mmpoly.apis import inference_model, init_model
from mmpoly.evaluation.prediction_writer import encode_prediction, prediction_path
from mmpoly.checkpoint.adapter import make_adapter_checkpoint
from tests.tools.conftest import REPO, demo_data, run_tool  # noqa: F401
from tests.utils.test_adapter_checkpoint import (backbone, build, config_on,  # noqa: F401
                                                 pretend_training)

LITE = osp.join(REPO, 'configs', 'demo', 'polyhistor_lite_swin-tiny_synthetic.py')
LORA = osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_synthetic.py')
TASKS = ('semseg', 'human_parts', 'sal', 'normals')


def on_data(config, data_root):
    cfg = Config.fromfile(config)
    cfg.test_dataloader.dataset.data_root = data_root
    return cfg


def save_trained(config, path, seed=7):
    """A full checkpoint of ``config``'s model, every trained part changed."""
    model = build(config)
    pretend_training(model, seed)
    torch.save({'meta': {'dataset_meta': {'classes': ('a', 'b')}},
                'state_dict': model.state_dict()}, path)
    return model


def assert_same_predictions(got, expected):
    for task in TASKS:
        a, b = got.get(f'pred_{task}').data, expected.get(f'pred_{task}').data
        assert a.shape == b.shape, task
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=task)
        else:
            assert torch.equal(a, b), task


@pytest.fixture(scope='module')
def lite(demo_data, tmp_path_factory):  # noqa: F811
    ckpt = str(tmp_path_factory.mktemp('lite') / 'lite.pth')
    trained = save_trained(LITE, ckpt)
    model = init_model(on_data(LITE, demo_data), ckpt)
    return trained, model, ckpt


def test_loads_the_checkpoint(lite):
    trained, model, _ = lite
    assert not model.training
    state = model.state_dict()
    for key, value in trained.state_dict().items():
        assert torch.equal(state[key], value), key
    assert model.dataset_meta == {'classes': ('a', 'b')}  # from the checkpoint's meta


def test_prediction_equals_the_test_path(lite, demo_data):  # noqa: F811
    _, model, _ = lite
    dataset = DATASETS.build(copy.deepcopy(model.cfg.test_dataloader.dataset))
    items = [dataset[0], dataset[1]]
    with torch.no_grad():
        expected = model.test_step(pseudo_collate(items))
    paths = [item['data_samples'].img_path for item in items]

    got = inference_model(model, paths)
    assert isinstance(got, list) and len(got) == 2
    for g, e in zip(got, expected):
        assert_same_predictions(g, e)
        # at the original (non-square) size, not the 96 x 96 the network saw
        assert g.pred_semseg.data.shape[1:] == e.gt_semseg.data.shape[1:] == (96, 128)

    one = inference_model(model, mmcv.imread(paths[1]))  # a BGR array, as mmcv reads it
    assert_same_predictions(one, expected[1])


def test_adapter_only_checkpoint(backbone, tmp_path):  # noqa: F811
    config = config_on(tmp_path / 'lora_on_file.py', backbone)
    trained = build(config, backbone)
    pretend_training(trained)
    full = {'meta': {}, 'state_dict': trained.state_dict()}
    torch.save(make_adapter_checkpoint(trained, full, 'cfg'), tmp_path / 'adapter.pth')
    model = init_model(config, str(tmp_path / 'adapter.pth'))
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_clear_errors(lite, tmp_path):
    _, model, lite_ckpt = lite
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        init_model(LITE, str(tmp_path / 'nowhere.pth'))
    with pytest.raises(FileNotFoundError, match='no_config.py'):
        init_model(str(tmp_path / 'no_config.py'))
    with pytest.raises(ValueError, match=r'lite\.pth does not fit this model'):
        init_model(LORA, lite_ckpt)  # Polyhistor-Lite weights, LoRA config
    torch.save({'weights': 1}, tmp_path / 'odd.pth')
    with pytest.raises(ValueError, match='odd.pth has no state_dict'):
        init_model(LITE, str(tmp_path / 'odd.pth'))
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        inference_model(model, str(tmp_path / 'missing.jpg'))
    with pytest.raises(ValueError, match='HxWx3'):
        inference_model(model, np.zeros((32, 32), np.uint8))


def test_image_demo(lite, demo_data, tmp_path, python):  # noqa: F811
    _, model, ckpt = lite
    dataset = DATASETS.build(copy.deepcopy(model.cfg.test_dataloader.dataset))
    img = dataset[0]['data_samples'].img_path
    name = osp.splitext(osp.basename(img))[0]
    run_tool(python, 'demo/image_demo.py', img, LITE, ckpt, '--out-dir',
             str(tmp_path / 'pictures'), '--pred-dir', str(tmp_path / 'preds'),
             '--cfg-options', f'test_dataloader.dataset.data_root={demo_data}')
    picture = mmcv.imread(str(tmp_path / 'pictures' / f'{name}.png'))
    assert picture.shape[1] == 5 * 128  # the input and four predictions, side by side
    expected = inference_model(model, img)
    for task in TASKS:
        spec = model.task_specs[task]
        written = np.array(Image.open(prediction_path(str(tmp_path / 'preds'), task, name,
                                                      spec)))
        encoded = encode_prediction(task, expected.get(f'pred_{task}').data, spec)
        if task in ('semseg', 'human_parts'):  # class ids: exact
            assert np.array_equal(written, encoded), task
        else:
            # saliency and normals are floor(255 x) of floats that another process computes
            # with other float rounding (threads): a value on a level boundary may move by one
            diff = np.abs(written.astype(int) - encoded.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (task, diff.max())


def test_mmseg_init_model_builds_a_nyud_config():
    """mmseg's own ``init_model`` (it reads the file with ``Config.fromfile`` and sets
    ``model.pretrained = None``) builds a NYUD-v2 model: the tasks' specs come from the
    config's ``task_source``, not from a PASCAL default."""
    from mmseg.apis import init_model as mmseg_init_model
    config = osp.join(REPO, 'configs', 'demo', 'decoder_ft_swin-tiny_synthetic_nyud.py')
    model = mmseg_init_model(config, device='cpu')
    assert model.tasks == ('semseg', 'depth', 'normals', 'edge')
    assert model.decode_head.decoders['semseg'].out_channels == 40
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 72, 96))
        logits = model.decode_head.forward_task('depth', feats['depth'])
    assert logits.shape[:2] == (1, 1)
