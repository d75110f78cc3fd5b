"""The helpers every tuner shares (``tuners/base.py``, ``tuners/merging.py``), against hand
formulas and the backbones' own modules."""
import pytest
import torch
from torch import nn

from mmseg.registry import MODELS
from mmpoly.models.tuners.base import BaseTuner, stage_last_layers, subset_of
from mmpoly.models.tuners.merging import MergedWeights, low_rank_weight
from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
from .helpers import SWIN_T, TINY


def test_layer_widths_are_the_modules_own():
    """Every routed linear's (d_in, d_out) equals the nn.Linear's, on Swin and PVT (PVT's
    q / kv), so MTLoRA, DiTASK and Free Sinewich size their updates from LayerInfo alone."""
    swin = MODELS.build(dict(type='PolyhistorSwin', **TINY))
    pvt = MODELS.build(dict(type='PolyhistorPVT', **PVT_TINY))
    checked = 0
    for model in (swin, pvt):
        modules = dict(model.named_modules())
        for layer in model.layer_infos:
            block = modules[layer.name]
            parts = model._parts(block)
            linears = {n.split('.')[-1]: m for n, m in block.named_modules()
                       if isinstance(m, nn.Linear)}
            linears.update(fc1=parts.fc1, fc2=parts.fc2)  # the MLP's, whatever their names
            for name, d_in, d_out in layer.linears:
                m = linears[name]
                assert layer.widths(name) == (d_in, d_out) == (m.in_features, m.out_features)
                checked += 1
            with pytest.raises(KeyError, match='routes no linear'):
                layer.widths('nope')
    assert checked == 4 * len(swin.layer_infos) + 5 * len(pvt.layer_infos)


def test_stage_last_layers_of_swin_t():
    """Swin-T (depths 2, 2, 6, 2): layers 1, 3, 9, 11 end their stages."""
    model = MODELS.build(dict(type='PolyhistorSwin', **SWIN_T))
    assert stage_last_layers(model.layer_infos) == frozenset({1, 3, 9, 11})
    assert stage_last_layers(()) == frozenset()


def test_subset_of_orders_refuses_and_names_the_key():
    allowed = ('qkv', 'proj', 'fc1', 'fc2')
    assert subset_of(('fc2', 'qkv'), allowed, 'X.targets') == ('qkv', 'fc2')
    assert subset_of('proj', allowed, 'X.targets') == ('proj', )
    assert subset_of((), allowed, 'X.targets', allow_empty=True) == ()
    with pytest.raises(ValueError, match=r'X.targets must be a non-empty subset'):
        subset_of((), allowed, 'X.targets')
    with pytest.raises(ValueError, match=r'X.targets .*got \[\'fc1\', \'fc1\'\]'):
        subset_of(('fc1', 'fc1'), allowed, 'X.targets')
    with pytest.raises(ValueError, match=r'got \[\'qkv\'\] \(why not\)'):
        subset_of(('qkv', ), allowed[1:], 'X.task_targets', refused='why not')


class _Folding(MergedWeights, BaseTuner):
    """A tuner that keeps one merged weight and one (stamp, tensor, None) entry."""


def test_merged_weights_lifecycle_and_cached_tensors():
    tuner = _Folding()
    assert not tuner.merged and tuner.cached_tensors() == []
    tuner.merge()
    assert tuner.merged and tuner.cached_tensors() == []
    a, b = torch.ones(2), torch.zeros(3)
    tuner._merged.update(x=a, y=((1, 2), b, None))
    assert [t is u for t, u in zip(tuner.cached_tensors(), (a, b))] == [True, True]
    tuner.clear_cache()
    assert tuner.merged and tuner.cached_tensors() == []
    tuner.train()
    with pytest.raises(RuntimeError, match='_Folding: cannot train while merged'):
        tuner.check_not_training()
    tuner.unmerge()
    assert not tuner.merged
    tuner.clear_cache()
    assert not tuner.merged


def test_low_rank_weight_is_w_plus_s_ba():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 7, generator=g, dtype=torch.float64)
    B = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    A = torch.randn(3, 2, 7, generator=g, dtype=torch.float64)
    merged = low_rank_weight(W, B, A, 0.5)
    for t in range(3):
        expected = W + 0.5 * sum(torch.outer(B[t, :, k], A[t, k]) for k in range(2))
        torch.testing.assert_close(merged[t], expected, rtol=1e-14, atol=1e-14)


def test_count_report_default_is_empty():
    assert BaseTuner().count_report(nn.Linear(2, 2), {}) == {}
