"""An unknown key of any registered component lists that component's own accepted keys (found
by introspecting the class that was built, following ``**kwargs`` up its bases) and the
closest one; not those of the base class whose ``__init__`` raised."""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401
from mmseg.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from mmpoly.engine import explain_build_errors
from mmpoly.engine.build_errors import accepted_arguments

DEMO = 'configs/demo/decoder_ft_swin-tiny_synthetic.py'


def message_of(build, cfg):
    init_default_scope('mmseg')
    with pytest.raises(TypeError) as info:
        with explain_build_errors():
            build(cfg)
    return str(info.value)


def model_with(tuner=None, **head):
    cfg = Config.fromfile(DEMO).model
    if tuner is not None:
        cfg.backbone.tuner = tuner
    cfg.decode_head.update(head)
    return cfg.to_dict()


def hint(message):
    """(class named by the hint, its listed keys, the suggestions)."""
    line = message.splitlines()[-1]
    name, rest = line.split(' accepts ', 1)
    keys = rest.split('; did you mean')[0]
    suggestion = rest.split('; did you mean ')[1] if '; did you mean' in rest else ''
    return name, keys, suggestion


@pytest.mark.parametrize('tuner, key, cls_name, best', [
    (dict(type='Polyhistor', reduction=16, rank_ratio=0.25, task_embed_dims=16),
     'task_embed_dims', 'Polyhistor', 'task_embed_dim'),
    (dict(type='LoRA', rnk=2), 'rnk', 'LoRA', 'rank'),
    (dict(type='Adapter', reductoin=4), 'reductoin', 'Adapter', 'reduction'),
])
def test_tuner_keys_are_the_methods_own(tuner, key, cls_name, best):
    message = message_of(MODELS.build, model_with(tuner))
    assert f"unexpected keyword argument '{key}'" in message
    name, keys, suggestion = hint(message)
    assert name == cls_name
    cls = MODELS.get(cls_name)
    # the class's actual keys, whatever they are today (introspected, not a fixed list)
    assert keys == str(accepted_arguments(cls))
    assert best in keys and suggestion.startswith(f"['{best}'")


def test_accepted_arguments_follow_kwargs_to_the_base():
    keys = accepted_arguments(MODELS.get('Polyhistor'))
    assert 'task_embed_dim' in keys  # its own
    assert 'layers' in keys and 'tasks' in keys  # BaseTuner's, reached through **kwargs


def test_head_loss_metric_dataset_transform():
    cases = [
        (MODELS.build, model_with(dropout_ratoi=0.1), 'MultiTaskSegformerHead',
         'dropout_ratio'),
        (MODELS.build, model_with(losses=dict(
            semseg=dict(type='PixelCrossEntropyLoss', loss_wieght=1.0),
            human_parts=dict(type='PixelCrossEntropyLoss'), sal=dict(type='BalancedBCELoss'),
            normals=dict(type='NormalL1Loss'))), 'PixelCrossEntropyLoss', 'loss_weight'),
        (METRICS.build, dict(type='MultiTaskMetric', taks=('semseg', )), 'MultiTaskMetric',
         'tasks'),
        (DATASETS.build, dict(type='PascalContextMTDataset', data_root='x', splt='val'),
         'PascalContextMTDataset', 'split'),
        (TRANSFORMS.build, dict(type='MTRandomScale', scale_rang=(0.5, 1.0)), 'MTRandomScale',
         'scale_range'),
    ]
    for build, cfg, cls_name, best in cases:
        name, keys, suggestion = hint(message_of(build, cfg))
        assert name == cls_name, (cls_name, name)
        assert suggestion.startswith(f"['{best}'"), (cls_name, suggestion)
