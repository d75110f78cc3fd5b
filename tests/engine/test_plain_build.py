"""The config is the whole truth: ``Config.fromfile`` + the registries build, for every shipped
config, exactly what the tools build (``load_config``), with nothing filled in by the project.

Oracles besides the equality (so "equal and both wrong" fails): the datasets' declared specs,
read here from the dataset modules, not from the configs."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401  (registration)
from mmpoly.datasets.nyud_mt import NYUD_TASK_SPECS
from mmpoly.datasets.pascal_context_mt import PASCAL_TASK_SPECS
from mmpoly.engine.config import dataset_configs, load_config, metric_configs
from mmpoly.utils.param_count import zero_filled_init
from tests.mmpretrain_configs import skip_without_mmpretrain

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                                            recursive=True) if '_base_' not in p)


def _builds(cfg):
    """What a config builds: the model (zero-filled), each split's dataset metainfo, and
    each evaluator's metric after the runner would have given it that metainfo."""
    from mmseg.registry import DATASETS, METRICS, MODELS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    with zero_filled_init():
        model = MODELS.build(cfg.model.copy())
    metas = {}
    for part in ('train', 'val', 'test'):
        for dataset in dataset_configs(cfg[f'{part}_dataloader']['dataset']):
            metas[part] = DATASETS.build(dict(dataset, lazy_init=True)).metainfo
    metrics = {}
    for part in ('val', 'test'):
        for metric_cfg in metric_configs(cfg[f'{part}_evaluator']):
            metric = METRICS.build(metric_cfg)
            metric.dataset_meta = metas[part]
            metrics[part] = metric
    return model, metas, metrics


def _model_record(model):
    return dict(
        state=[(k, tuple(v.shape)) for k, v in model.state_dict().items()],
        specs=model.task_specs,
        losses={t: (type(d.loss_decode).__name__, d.loss_decode.loss_weight,
                    getattr(d.loss_decode, 'pos_weight', None))
                for t, d in model.decode_head.decoders.items()},
        pads=model.data_preprocessor.label_pad_values)


@pytest.mark.parametrize('path', CONFIGS)
def test_plain_build_equals_the_tools_build(path):
    skip_without_mmpretrain(path)
    plain_model, plain_metas, plain_metrics = _builds(Config.fromfile(osp.join(REPO, path)))
    tool_model, tool_metas, tool_metrics = _builds(load_config(osp.join(REPO, path)))
    assert _model_record(plain_model) == _model_record(tool_model)
    assert plain_metas == tool_metas
    for part, metric in plain_metrics.items():
        other = tool_metrics[part]
        assert (metric.tasks, metric.task_specs, metric.reference) == (
            other.tasks, other.task_specs, other.reference), part

    # independent oracles: the dataset module's declared specs
    declared = NYUD_TASK_SPECS if 'nyud' in path else PASCAL_TASK_SPECS
    assert tuple(plain_model.task_specs) == plain_model.tasks
    for task, spec in plain_model.task_specs.items():
        assert spec.kind == declared[task]['kind'], (path, task)
        decoder = plain_model.decode_head.decoders[task]
        assert decoder.out_channels == declared[task]['num_outputs'], (path, task)
        assert decoder.loss_decode.loss_weight == declared[task]['loss']['loss_weight']
        assert plain_metas['train']['task_specs'][task]['kind'] == declared[task]['kind']
        assert plain_metrics['test'].task_specs[task].kind == declared[task]['kind']


def test_oracle_values_by_hand():
    """The few numbers the test above relies on, written out (a change to a dataset's
    declaration is a decision, not a side effect)."""
    assert NYUD_TASK_SPECS['semseg']['num_outputs'] == 40
    assert NYUD_TASK_SPECS['edge']['loss']['loss_weight'] == 50.0
    assert NYUD_TASK_SPECS['depth']['kind'] == 'regression'
    assert PASCAL_TASK_SPECS['human_parts']['loss']['loss_weight'] == 2.0
    assert len(CONFIGS) >= 120


def test_a_model_without_task_source_or_specs_names_what_is_missing():
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'decoder_ft_swin-tiny_synthetic.py'))
    cfg.model.pop('task_source')
    with pytest.raises(ValueError, match=r"model.tasks: unknown task\(s\).*task_source"):
        MODELS.build(cfg.model)
    cfg.model.task_source = 'NoSuchDataset'
    with pytest.raises(KeyError, match='NoSuchDataset'):
        MODELS.build(cfg.model)
