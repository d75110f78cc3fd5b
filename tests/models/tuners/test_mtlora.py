"""MTLoRA: one shared pass whose last block of every stage forks into one stream per task.

Oracles: the frozen backbone (zero up-projections), the frozen backbone with TA-LoRA folded
into its weights (the shared stream), the reference's forked-block formulas written out by
hand on that backbone's modules, and the parameter counts the reference prints
(scale-lab/MTLoRA issue 5) and the paper's Table 1 totals.
"""
import pytest
import torch
import torch.nn.functional as F

from mmseg.registry import MODELS
from . import helpers
from .helpers import SWIN_T, TASKS, B, frozen_copy, per_task, randomize_tuner

#: float64 (``helpers.EXACT``): the formulas hold exactly, float32 rounding differs between CPUs
X = torch.randn(B, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def build(tasks=TASKS, seed=0, with_cp=False, **tuner):
    return helpers.build(dict(type='MTLoRA', **tuner), tasks, seed=seed, with_cp=with_cp).double()


def randomize_ups(model, std=0.05, task_stages=None):
    """Draw the up-projections B (zero at init); TS-LoRA only in ``task_stages``."""
    tuner = model.tuner
    task_B = [p for k, p in tuner.task_B.items()
              if task_stages is None or model.layer_infos[int(k[-1])].stage in task_stages]
    randomize_tuner(model, std, [*tuner.shared_B.values(), *task_B])


def modules(block):
    wmsa = block.attn.w_msa
    return dict(qkv=wmsa.qkv, proj=wmsa.proj, fc1=block.ffn.layers[0][0], fc2=block.ffn.layers[1])


def ta_folded_copy(model):
    """The frozen backbone whose projections are W + s B A: the shared stream (oracle)."""
    ref = frozen_copy(model, tasks=model.tuner.tasks)
    tuner = model.tuner
    with torch.no_grad():
        for info in model.layer_infos:
            block = ref.stages[info.stage].blocks[info.index_in_stage]
            for name, module in modules(block).items():
                key = f'{name}{info.index}'
                if key in tuner.shared_A:
                    delta = tuner.shared_B[key] @ tuner.shared_A[key]
                    module.weight += tuner.shared_scale[info.stage] * delta
    return ref


def test_zero_up_projections_compute_the_frozen_backbone_for_every_task():
    model = build()
    assert model.per_task_features and not model.task_specific
    assert model.tuner.fork_layers == {1, 3, 5, 7}  # the last block of each stage
    with torch.no_grad():
        outs, ref = model(X), frozen_copy(model)(X)
    for task_outs in per_task(outs, len(TASKS)):
        for o, r in zip(task_outs, ref):
            torch.testing.assert_close(o, r, **helpers.EXACT)


@pytest.mark.parametrize('mode', ['matrix', 'matrixv2'])
def test_streams_follow_the_reference_formulas(mode):
    """The shared stream is the TA-folded frozen backbone; each stage's last block forks as
    ``MTLoRALinear.forward``: the frozen fc1 / fc2 of a task stream read the *shared*
    stream's input, the TS branch the task's own; 'matrix' task streams have no TA on the
    forked projections, 'matrixv2' ones do. (proj has no LoRA here, so every stream's
    attention output is the shared one.)"""
    model = build(targets=('qkv', 'fc1', 'fc2'), shared_mode=mode, task_scale=[4., 4., 4., 3.])
    randomize_ups(model, 0.05)
    ref = ta_folded_copy(model)
    seen = {}
    for i, stage in enumerate(ref.stages):
        stage.blocks[-1].norm2.register_forward_hook(
            lambda m, inputs, out, i=i: seen.update({i: inputs[0]}))
    with torch.no_grad():
        per = per_task(model(X), len(TASKS))
        ref(X)
        tuner = model.tuner
        for i, stage in enumerate(model.stages):
            block, index = stage.blocks[-1], model.layer_infos[2 * i + 1].index
            fc1, fc2 = modules(block)['fc1'], modules(block)['fc2']  # the bare frozen W
            s, s_t = 4.0, (4.0, 4.0, 4.0, 3.0)[i]

            def ta(name, h):
                k = f'{name}{index}'
                return s * h @ tuner.shared_A[k].T @ tuner.shared_B[k].T

            def ts(name, h, t):
                k = f'{name}{index}'
                return s_t * h @ tuner.task_A[k][t].T @ tuner.task_B[k][t].T

            x1 = seen[i]  # the shared stream after the (shared) attention, (B, N, C)
            m = block.norm2(x1)
            h_shared = F.gelu(fc1(m) + ta('fc1', m))
            with_ta = mode == 'matrixv2'
            for t in range(len(TASKS)):
                h_t = F.gelu(fc1(m) + (ta('fc1', m) if with_ta else 0) + ts('fc1', m, t))
                y_t = fc2(h_shared) + (ta('fc2', h_shared) if with_ta else 0) + ts('fc2', h_t, t)
                side = 16 >> i
                expected = (x1 + y_t).view(B, side, side, -1).permute(0, 3, 1, 2)
                torch.testing.assert_close(per[t][i], expected, **helpers.EXACT)
            assert not torch.allclose(per[0][i], per[1][i])


def test_proj_fork_follows_the_reference():
    """The default fork, at proj: TS-LoRA on proj only (B_t random, TA and the MLPs' TS at
    zero). Task t's stream after the attention is the frozen block's with proj weight
    W + s_t B_t A_t; its MLP output is the *shared* stream's (its fc1 / fc2 read the shared
    input, their TS adds 0). Oracle: two frozen copies, one with the edited proj."""
    model = build(task_scale=[2., 2., 2., 3.])
    tuner = model.tuner
    randomize_tuner(model, 0.05, [p for k, p in tuner.task_B.items() if k.startswith('proj')])
    shared_copy = frozen_copy(model)
    seen = {}

    def tap(copy, tag):
        for i, stage in enumerate(copy.stages):
            stage.blocks[-1].norm2.register_forward_hook(
                lambda m, inputs, out, i=i: seen.update({(tag, i): inputs[0]}))

    tap(shared_copy, 'shared')
    with torch.no_grad():
        per = per_task(model(X), len(TASKS))
        shared_out = shared_copy(X)
        for t in range(len(TASKS)):
            for i in range(4):  # stage i edited alone: the task stream does not go on
                edited = frozen_copy(model)
                tap(edited, t)
                index = model.layer_infos[2 * i + 1].index
                delta = tuner.task_B[f'proj{index}'][t] @ tuner.task_A[f'proj{index}'][t]
                edited.stages[i].blocks[-1].attn.w_msa.proj.weight += (2., 2., 2., 3.)[i] * delta
                edited(X)
                side = 16 >> i
                x1_s = seen[('shared', i)].view(B, side, side, -1).permute(0, 3, 1, 2)
                x1_t = seen[(t, i)].view(B, side, side, -1).permute(0, 3, 1, 2)
                expected = x1_t + (shared_out[i] - x1_s)
                torch.testing.assert_close(per[t][i], expected, **helpers.EXACT)
        assert not torch.allclose(per[0][3], per[1][3])


def test_one_step_gives_each_task_its_own_features():
    model = build(dropout=0.0)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    outs = model(X)
    # a different objective per task: task t pulls its features towards t
    target = torch.arange(len(TASKS), dtype=X.dtype).view(-1, 1, 1, 1, 1)
    loss = sum(((o.view(len(TASKS), B, *o.shape[1:]) - target)**2).mean() for o in outs)
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        per = per_task(model(X), len(TASKS))
    for level in range(4):
        assert (per[0][level] - per[1][level]).abs().max() > 1e-4, level


@pytest.mark.parametrize('mode', ['matrix', 'matrixv2', 'addition', 'lora_only'])
def test_merged_equals_unmerged(mode):
    model = build(shared_mode=mode)
    randomize_ups(model)
    with torch.no_grad():
        unmerged = model(X)
        model.tuner.merge()
        merged = model(X)
    tuner = model.tuner
    forked = set(tuner.shared_A) & set(tuner.task_A)
    # 3 forked projections x 4 stages; 'matrix' less the unused last fc2 (``build_unused``)
    assert len(forked) == {'matrix': 11, 'matrixv2': 12}.get(mode, 0)
    # every TA-LoRA projection, but the forked ones whose task streams need the bare W
    assert len(tuner.cached_tensors()) == len(tuner.shared_A) - (
        len(forked) if mode == 'matrix' else 0)
    for a, b in zip(unmerged, merged):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    model.train()
    with pytest.raises(RuntimeError, match='cannot train while merged'):
        model(X)
    model.tuner.unmerge()
    model(X)


def test_stacked_equals_loop_and_lora_only_shares_the_features():
    model = build()
    randomize_ups(model)
    with torch.no_grad():
        stacked = model(X)
        model.task_batching = 'loop'
        looped = model(X)
    for a, b in zip(stacked, looped):
        assert torch.equal(a, b)
    shared = build(shared_mode='lora_only')
    assert not shared.per_task_features and not shared.tuner.task_A
    with torch.no_grad():
        assert [o.shape[0] for o in shared(X)] == [B] * 4


def test_every_trainable_parameter_gets_a_gradient_with_cp_on_and_off():
    def make(with_cp):
        model = build(seed=5, with_cp=with_cp, dropout=0.0)
        randomize_ups(model)
        return model

    g = helpers.assert_checkpointing_keeps_every_gradient(
        make, X, loss_tol=dict(rtol=1e-6, atol=0), grad_tol=dict(rtol=1e-5, atol=1e-7))
    # the backbone groups the reference trains (mark_only_lora_as_trainable), nothing else
    backbone = {n for n in g if not n.startswith('tuner.')}
    assert {n.split('.')[-2] for n in backbone if 'blocks' in n} == {
        'norm1', 'norm2', 'w_msa'}
    assert all(('norm' in n or n.startswith('patch_embed.') or 'relative_position' in n
                or 'downsample.reduction' in n) for n in backbone)
    assert any('downsample.reduction' in n for n in backbone)


def test_frozen_groups_by_key():
    model = build(train_norms=False, train_patch_merging=False)
    trained = {n for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith('tuner.')}
    assert trained and not any('norm' in n and not n.startswith('patch_embed.')
                               for n in trained)
    assert not any('downsample' in n for n in trained)
    assert {n for n in trained if n.startswith('patch_embed.')} == {
        'patch_embed.projection.weight', 'patch_embed.projection.bias',
        'patch_embed.norm.weight', 'patch_embed.norm.bias'}


# --------------------------------------------------------------------------- counts
TASKS4 = ('semseg', 'human_parts', 'sal', 'normals')
SWIN_T_DIMS, SWIN_T_HEADS, DEPTHS = (96, 192, 384, 768), (3, 6, 12, 24), (2, 2, 6, 2)
#: the HRNet decoders (and their downsamplers) of the reference, 4 PASCAL tasks (issue 5)
REFERENCE_DECODERS = 1_946_624


def swin_t_groups(**tuner):
    model = MODELS.build(dict(type='PolyhistorSwin', tasks=TASKS4, **SWIN_T,
                              tuner=dict(type='MTLoRA', **tuner)))
    lora = sum(p.numel() for p in model.tuner.parameters())
    extra = sum(p.numel() for n, p in model.named_parameters()
                if p.requires_grad and not n.startswith('tuner.'))
    return lora, extra


def hand_lora(r, r_t=4, tasks=4, every_block=True, unused=True):
    """TA: r (d_in + d_out) on qkv (4d), proj (2d), fc1 (5d), fc2 (5d); TS: proj, fc1, fc2
    (12d) per task in the last block of each stage; ``unused``: with the last block's fc2
    TA (5d r, d = 768), which no output reads."""
    blocks = [d for d, n in zip(SWIN_T_DIMS, DEPTHS) for _ in range(n if every_block else 1)]
    dead = 0 if unused else 5 * 768 * r
    return 16 * r * sum(blocks) - dead + tasks * 12 * r_t * sum(SWIN_T_DIMS)


def hand_extra():
    """Patch embedding (conv + LayerNorm), norm1/norm2 of every block, the patch mergings'
    norm and reduction, the relative position bias tables ((2 * 7 - 1)^2 per head)."""
    embed = 3 * 4 * 4 * 96 + 96 + 2 * 96
    norms = sum(4 * d * n for d, n in zip(SWIN_T_DIMS, DEPTHS)) + sum(
        2 * 4 * d for d in SWIN_T_DIMS[:3])
    reduction = sum(4 * d * 2 * d for d in SWIN_T_DIMS[:3])
    tables = 13 * 13 * sum(h * n for h, n in zip(SWIN_T_HEADS, DEPTHS))
    return embed + norms + reduction + tables


def test_counts_equal_the_hand_formula_the_reference_print_and_the_paper():
    # r = 64 as in the reference's print (issue 5) with TA-LoRA in each stage's last block
    lora_last, extra = swin_t_groups(rank=64, shared_layers='last', build_unused=True)
    assert lora_last == hand_lora(64, every_block=False) == 1_751_040
    assert extra == hand_extra() == 1_599_546
    # the paper's totals: TA-LoRA in every block, plus the extras and the HRNet decoders
    for rank, paper in ((16, 4.95), (32, 6.08), (64, 8.34)):
        lora, extra = swin_t_groups(rank=rank, build_unused=True)
        assert lora == hand_lora(rank)
        assert round((lora + extra + REFERENCE_DECODERS) / 1e6, 2) == paper
    # what mmpoly trains by default: without the update no output reads
    assert swin_t_groups(rank=16)[0] == hand_lora(16, unused=False) == 1_345_536


def test_refused_by_pvt():
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY
    with pytest.raises(ValueError, match='MTLoRA needs task_forks'):
        MODELS.build(dict(type='PolyhistorPVT', tasks=TASKS, tuner=dict(type='MTLoRA'),
                          **PVT_TINY))


def test_a_fork_needs_a_backbone_that_forks():
    """Any tuner with fork layers: refused by a backbone without fork support, and on Swin
    only in the last layer of a stage."""
    from mmpoly.models.tuners import BaseTuner
    from ..backbones.test_polyhistor_pvt import TINY as PVT_TINY

    class ForksFirstLayer(BaseTuner):
        fork_layers = frozenset({0})

    with pytest.raises(ValueError, match='PolyhistorPVT does not support'):
        MODELS.build(dict(type='PolyhistorPVT', tasks=TASKS, tuner=dict(type=ForksFirstLayer),
                          **PVT_TINY))
    with pytest.raises(ValueError, match=r'layers \[0\] are not the last layer'):
        helpers.build(dict(type=ForksFirstLayer))


def test_bad_keys_are_named():
    with pytest.raises(ValueError, match='MTLoRA.rank'):
        build(rank=[4, 4])
    with pytest.raises(ValueError, match='MTLoRA.shared_mode'):
        build(shared_mode='sum')
    with pytest.raises(ValueError, match='MTLoRA.task_rank.*stage 0'):
        build(task_rank=dict(semseg=4, human_parts=2))


# ------------------------------------------------------------------------ benchmark
def test_benchmark_suites_and_merged_case():
    """Tables (a) and (d) list MTLoRA (``tools/benchmark.py --suite``); the benchmark's
    merged MTLoRA case predicts what the unmerged one does (demo model, 64 x 64)."""
    from mmpoly.benchmark import Case
    from tools.benchmark import parse_args
    a = parse_args(['--suite', 'a'])
    assert a.config == 'configs/single_task_ft_swin-t.py' and a.iters == 3
    assert a.compare[-4:] == ['configs/mtlora_swin-t.py', 'configs/ditask_swin-t.py',
                              'configs/free_sinewich_swin-t.py', 'configs/tadformer_swin-t.py']
    assert len(a.compare) == 20
    d = parse_args(['--suite', 'd', '--iters', '1'])
    assert d.mode == 'test' and d.iters == 1 and d.warmup == 2
    assert 'configs/mtlora_swin-t.py@bench.merge_lora=1' in d.compare
    demo = 'configs/demo/mtlora_swin-tiny_synthetic.py'
    plain = Case(demo, img_size=64, batch_size=2, mode='test')
    merged = Case(demo + '@bench.merge_lora=1', img_size=64, batch_size=2, mode='test')
    with torch.no_grad():
        for name, p in plain.model.named_parameters():
            if '.tuner.' in name:
                p.add_(0.05 * torch.randn_like(p))
    merged.model.load_state_dict(plain.model.state_dict())
    assert merged.model.backbone.tuner.merged and not plain.model.backbone.tuner.merged

    def logits(case):
        case.model.eval()
        with torch.no_grad():
            data = case.model.data_preprocessor(case.batch, False)
            return case.model._forward(data['inputs'])

    expected = logits(plain)
    for task, out in logits(merged).items():
        torch.testing.assert_close(out, expected[task], rtol=1e-4, atol=1e-4)
