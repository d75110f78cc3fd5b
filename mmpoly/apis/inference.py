"""Predict every task on images, as ``mmseg.apis`` does for one task.

    from mmpoly.apis import init_model, inference_model
    model = init_model('configs/polyhistor_lite_swin-t.py', 'work_dirs/.../epoch_60.pth')
    result = inference_model(model, 'image.jpg')        # a SegDataSample
    result.pred_semseg.data, result.pred_normals.data    # at the image's size

The images go through the config's test pipeline without its label loading, so a prediction
here equals the one ``tools/test.py`` scores for the same image (a test checks it).
"""
import os.path as osp
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from torch import nn

from mmseg.structures import SegDataSample
from ..engine.config import fill_task_specs, load_config
from ..checkpoint.adapter import load_adapter_checkpoint
from ..engine.build_errors import explain_build_errors
from ..utils.param_count import build_model_without_weights

ImageType = Union[str, np.ndarray]


def _dataset_meta(model_cfg, model) -> dict:
    """What a dataset of the model's tasks would give as metainfo: its task source's
    ``METAINFO`` (palettes, class names) with the model's tasks and resolved specs."""
    from mmseg.registry import DATASETS
    source = model_cfg.get('task_source')
    cls = DATASETS.get(source) if isinstance(source, str) else source
    meta = dict(getattr(cls, 'METAINFO', None) or {})
    meta.update(tasks=tuple(model.tasks),
                task_specs={t: s.to_dict() for t, s in model.task_specs.items()})
    return meta


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the config's model in eval mode, with the checkpoint's weights.

    Args:
        config: config file or ``Config``.
        checkpoint: a full checkpoint (``tools/train.py``'s ``epoch_N.pth``) or an
            adapter-only one (rebuilt from the backbone file the config names, as
            ``tools/test.py`` does). ``None``: the config's initialisation (the pretrained
            backbone, random tuner and decoders): only useful for smoke tests.
        device: 'cpu', 'cuda', 'cuda:1', ...
        cfg_options: overrides of config keys.

    Returns:
        the model, with ``cfg`` (the config) and ``dataset_meta`` (class names and palettes,
        from the checkpoint when it has them) attached.
    """
    if isinstance(config, str):
        config = load_config(config, cfg_options)
    elif isinstance(config, Config):
        if cfg_options:
            config.merge_from_dict(cfg_options)
        fill_task_specs(config)
    else:
        raise TypeError(f'config must be a file name or a Config, got {type(config).__name__}')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    with explain_build_errors():
        model = build_model_without_weights(config)

    meta = {}
    if checkpoint is None:
        model.init_weights()
    else:  # an adapter-only checkpoint is completed from the backbone file
        meta = load_adapter_checkpoint(model, checkpoint).get('meta') or {}
    model.cfg = config
    model.dataset_meta = meta.get('dataset_meta') or _dataset_meta(config.model, model)
    return model.to(device).eval()


def _inference_pipeline(cfg: Config, from_array: bool) -> Compose:
    """The test pipeline (the one ``tools/test.py`` runs) without label loading."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline')
    if not pipeline:
        raise KeyError('the config has no test pipeline (test_dataloader.dataset.pipeline or '
                       'test_pipeline) to prepare the images with')
    steps = []
    for step in pipeline:
        step = dict(step)
        if step['type'] == 'LoadMultiTaskAnnotations':
            continue
        if step['type'] == 'LoadImageFromFile' and from_array:
            step['type'] = 'LoadImageFromNDArray'
        steps.append(step)
    return Compose(steps)


def inference_model(model: nn.Module, img: Union[ImageType, Sequence[ImageType]]
                    ) -> Union[SegDataSample, List[SegDataSample]]:
    """Predict every task of the model on one image or a list of images.

    Args:
        model: from :func:`init_model`.
        img: an image file, an HxWx3 uint8 BGR array (as ``mmcv.imread`` gives), or a list
            of them.

    Returns:
        a ``SegDataSample`` per image (one, or a list for a list) with a ``pred_<task>``
        field per task at the image's original size: class ids (1, H, W) for semseg and
        human_parts, the saliency probability (1, H, W) and unit normals (3, H, W).
    """
    single = not isinstance(img, (list, tuple))
    images = [img] if single else list(img)
    pipelines = {}  # from an array or not -> pipeline, built once per call
    data = dict(inputs=[], data_samples=[])
    for image in images:
        from_array = isinstance(image, np.ndarray)
        if from_array not in pipelines:
            pipelines[from_array] = _inference_pipeline(model.cfg, from_array)
        if from_array:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f'an image array must be HxWx3 (BGR), got {image.shape}')
            results = pipelines[True](dict(img=image))
        elif isinstance(image, str):
            if not osp.isfile(image):
                raise FileNotFoundError(f'image {image} not found')
            results = pipelines[False](dict(img_path=image))
        else:
            raise TypeError(f'an image must be a file name or an array, got '
                            f'{type(image).__name__}')
        data['inputs'].append(results['inputs'])
        data['data_samples'].append(results['data_samples'])
    with torch.no_grad():
        predictions = model.test_step(data)
    return predictions[0] if single else predictions
