"""What each Table-1 method's encoder computes at initialisation, against the frozen backbone.

Every method is its ``configs/<method>_swin-t.py`` (Swin) or ``configs/<method>_pvt-s.py``
(PVT) tuner, as the config gives it, on a narrow backbone of the same class (random weights,
then perturbed so that biases and tables matter): Swin is the backbone of
``configs/_base_/models/swin-tiny-test_mt-segformer.py`` (widths 32, 64, 128, 256), PVT the
tiny PVT of the backbone tests at twice its width (32, 64, 160, 256: every config's lambda and
PHM dimension divide its adapter widths). For each method, every task's four output levels
are compared with those of the frozen backbone (same weights, no tuner):

==========================  ==========  ============================================
method                      at init     why
==========================  ==========  ============================================
single-task / multi-task    identical   the tuned copy starts at the pretrained weights
FT, decoder FT (no tuner)
BitFit, Relative bias       identical   task deltas of the biases / tables start at 0
                                        (= the pretrained values); no tables on PVT
Adapter, Shared Adapter,    identical   W_up (its rank / Kronecker factor) starts at 0,
Low-rank adapter, PHM,                  so every adapter branch adds exactly 0
Compacter, Compacter++
LoRA                        identical   B_t = 0: the update s B_t A_t LN_t(x) is 0
MTLoRA (beyond Table 1,     identical   B = B_t = 0: TA- and TS-LoRA add 0, and every
Swin only)                              task stream of a forked block is the shared one
Free Sinewich (beyond       identical   B = 0: the LoRA adds 0, and M = B W_mid A = 0, so
Table 1, Swin only)                     every task weight W + s_t G * sin(omega_t M) is W
Hyperformer, Polyhistor,    identical   the generated adapter LayerNorm (post-norm) has
Polyhistor-Lite                         weight 0 at init: the adapters start at 0
VPT-shallow, VPT-deep       differ      the prompts are random tokens that every window
                                        attends to from the first step: there is no
                                        "zero prompt" that leaves attention unchanged
DiTASK (beyond Table 1,     differ      theta starts at U(+-1/sqrt(d)) (the reference's
Swin only)                              kaiming init): every spectrum is warped from the
                                        first step (``theta_init='zeros'`` is identical:
                                        test_ditask.py)
TADFormer (beyond Table 1,  differ      its task prompts join every window's softmax
Swin only)                              from step 0, and the stage gate sigma(0) = 0.5
                                        mixes the TPC skip into every task output
==========================  ==========  ============================================

"identical" is checked in float64 to 1e-10 (float32 rounding differs between CPUs: a stacked
batch and the frozen B-row batch take other matmul blockings); for the methods with tuner parameters the test also
moves them off their init and checks that the features then move (the tuner is in the path).
"""
import pytest
import torch
from mmengine.config import Config

import mmpoly  # noqa: F401
from mmseg.registry import MODELS
from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
from .helpers import EXACT

TASKS = ('semseg', 'human_parts')
B = 2

#: Table 1's methods (config prefixes) whose encoder starts as the frozen backbone
IDENTICAL = ('single_task_ft', 'decoder_ft', 'multi_task_ft', 'bitfit', 'relative_bias', 'phm',
             'compacter', 'compacter_pp', 'lora', 'adapter', 'low_rank_adapter',
             'shared_adapter', 'hyperformer', 'polyhistor', 'polyhistor_lite')
#: methods beyond Table 1 whose encoder starts as the frozen backbone
IDENTICAL_BEYOND_TABLE1 = ('mtlora', 'free_sinewich')
#: ... and those whose encoder does not, by construction
DIFFERS = ('vpt_shallow', 'vpt_deep')
#: methods beyond Table 1 whose encoder does not start as the frozen backbone
DIFFERS_BEYOND_TABLE1 = ('ditask', 'tadformer')
#: the hypernetwork-based methods (generated adapters)
HYPERNET = ('hyperformer', 'polyhistor', 'polyhistor_lite')
#: no tuner parameters, or the backbone itself is what is trained
NO_TUNER_PARAMS = ('single_task_ft', 'decoder_ft', 'multi_task_ft')
#: Swin-only methods (PVT has no relative-position-bias tables)
SWIN_ONLY = ('relative_bias', 'mtlora', 'ditask', 'free_sinewich', 'tadformer')


def test_every_table1_method_is_classified():
    from mmpoly.utils.paper_tables import TABLE1
    assert set(IDENTICAL) | set(DIFFERS) == set(TABLE1)
    assert not set(IDENTICAL) & set(DIFFERS)


def backbone_cfg(backbone):
    if backbone == 'swin':
        cfg = Config.fromfile('configs/_base_/models/swin-tiny-test_mt-segformer.py')
        return cfg.model.backbone.to_dict()
    return dict(type='PolyhistorPVT', **dict(PVT_TINY, embed_dims=(32, 64, 160, 256)))


def tuner_cfg(method, backbone):
    suffix = 'swin-t' if backbone == 'swin' else 'pvt-s'
    return Config.fromfile(f'configs/{method}_{suffix}.py').model.backbone.tuner.to_dict()


def build_pair(method, backbone, seed=0):
    """(the tuned backbone, the frozen one with the same weights), both in eval mode."""
    cfg = dict(backbone_cfg(backbone), tasks=TASKS)
    cfg.pop('init_cfg', None)
    torch.manual_seed(seed)
    model = MODELS.build(dict(cfg, tuner=tuner_cfg(method, backbone)))
    model.init_weights()
    with torch.no_grad():  # biases and tables start at 0 upstream: make them matter
        for name, p in model.named_parameters():
            if not name.startswith('tuner.'):
                p.add_(0.1 * torch.randn_like(p))
    frozen = MODELS.build(dict(cfg, tuner=dict(type='NoTuner')))
    missing, _ = frozen.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    model.eval()  # (upstream Swin's train() returns None: no chaining)
    frozen.eval()
    return model.double(), frozen.double()


def per_task(outs, ref):
    """Task t's levels of ``outs``: task-stacked (T * B rows) or shared (B rows)."""
    if outs[0].shape[0] == ref[0].shape[0]:
        return [outs] * len(TASKS)
    assert outs[0].shape[0] == len(TASKS) * ref[0].shape[0]
    return [[o.view(len(TASKS), -1, *o.shape[1:])[t] for o in outs] for t in range(len(TASKS))]


def features(model, frozen, x):
    with torch.no_grad():
        ref = frozen(x)
        return per_task(model(x), ref), ref


def cases(methods):
    return [pytest.param(m, b, id=f'{m}-{b}') for m in methods for b in ('swin', 'pvt')
            if not (b == 'pvt' and m in SWIN_ONLY)]


@pytest.mark.parametrize('method,backbone', cases(IDENTICAL + IDENTICAL_BEYOND_TABLE1))
def test_starts_as_the_frozen_backbone(method, backbone):
    model, frozen = build_pair(method, backbone)
    x = torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    outs, ref = features(model, frozen, x)
    for t, levels in enumerate(outs):
        for i, (a, b) in enumerate(zip(levels, ref)):
            torch.testing.assert_close(a, b, **EXACT,
                                       msg=lambda m: f'{method}, task {t}, level {i}: {m}')
    if method in NO_TUNER_PARAMS:
        return
    # not vacuous: the tuner is in the path, moving its parameters moves every task
    params = list(model.tuner.parameters())
    assert params, f'{method}: no tuner parameters'
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        for p in params:
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    moved, _ = features(model, frozen, x)
    for t, levels in enumerate(moved):
        assert (levels[3] - ref[3]).abs().max() > 1e-3, f'{method}, task {t} did not move'


@pytest.mark.parametrize('method,backbone', cases(DIFFERS + DIFFERS_BEYOND_TABLE1))
def test_prompts_change_the_features_from_the_start(method, backbone):
    """VPT: the prompt tokens join attention at step 0 (random init, nothing zero about
    them), so every task's features differ from the frozen backbone's at every level;
    DiTASK: its random thetas warp every projection's spectrum at step 0; TADFormer: its
    prompts join every softmax and its gate mixes the TPC skip in at step 0."""
    model, frozen = build_pair(method, backbone)
    x = torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    outs, ref = features(model, frozen, x)
    for t, levels in enumerate(outs):
        for i, (a, b) in enumerate(zip(levels, ref)):
            assert a.shape == b.shape
            assert (a - b).abs().max() > 1e-3, f'{method}, task {t}, level {i}: same'
