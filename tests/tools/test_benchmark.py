"""tools/benchmark.py: runs on every config, reports the fields of issue 7 item 1, and the
variants it compares compute the same outputs (so they compare equal work).

Timings are measured, never asserted here."""
import glob
import json
import os.path as osp
import re
import runpy

import pytest
import torch

from mmpoly.benchmark import Case, random_batch
from tests.mmpretrain_configs import HAVE_MMPRETRAIN, uses_mmpretrain
from tests.pascal import PASCAL_TASK_SPECS
from .conftest import REPO, run_tool

#: LoRA without the authors' input LayerNorm: the form that merges into the frozen weights
MERGEABLE_LORA = '@model.backbone.tuner.input_norm=False'

# configs whose encoder is mmpretrain's only where it is installed (tools/setup_env.sh)
DEMOS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', 'demo', '*.py'))
               if HAVE_MMPRETRAIN or not uses_mmpretrain(p))
FULL = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '*.py'))
              if HAVE_MMPRETRAIN or not uses_mmpretrain(p))
RESULT_FIELDS = {'config', 'name', 'mode', 'device', 'amp', 'batch_size', 'img_size', 'iters',
                 'step_time_s', 'images_per_s', 'peak_mem_mb', 'state_mb', 'peak_step_mb',
                 'mem_method', 'breakdown_ms', 'hypernet_fwd_bwd_ms', 'hypernet_frac'}
SPREAD = {'median', 'q25', 'q75', 'min', 'max', 'all'}
BREAKDOWN = {'data_preprocessor', 'hypernet', 'backbone', 'decoders', 'losses', 'backward',
             'optimizer', 'other', 'profiled_step'}


def rel(path):
    return osp.relpath(path, REPO)


def prediction_shapes(config, img_size):
    """task -> the shape of its ``pred_<task>`` map, from the config's task specs: class ids,
    probabilities and edges one channel, normals three, regressions their outputs."""
    from mmpoly.engine.config import load_config
    from mmpoly.tasks import resolve_task_specs
    model = load_config(osp.join(REPO, config)).model
    specs = resolve_task_specs(model.tasks, model.get('task_specs'))
    channels = {'class': 1, 'binary': 1, 'edge': 1, 'normal': 3}
    return {t: [channels.get(s.kind, s.num_outputs), img_size, img_size]
            for t, s in specs.items()}


def check_task_losses(result):
    """A training step gave every task of the config a finite loss (and the total)."""
    losses = result['task_losses']
    tasks = prediction_shapes(result['config'], result['img_size'])
    assert sorted(k for k in losses if k != 'loss') == sorted(f'loss_{t}' for t in tasks), (
        result['config'], losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    assert losses['loss'] == pytest.approx(sum(v for k, v in losses.items() if k != 'loss'))


def benchmark_json(python, *args):
    return json.loads(run_tool(python, 'tools/benchmark.py', *args, '--json').stdout)


def test_demo_configs_interleaved_json(python, demo_data):
    """Every demo config in one --compare run (train), with the data pipeline."""
    demos = [rel(p) for p in DEMOS]
    report = benchmark_json(python, demos[0], '--compare', *demos[1:], '--img-size', '64',
                            '--batch-size', '1', '--iters', '2', '--warmup', '0',
                            '--data', demos[0], '--data-root', demo_data,
                            '--data-samples', '4')
    assert {'machine', 'args', 'results', 'ratios', 'data'} <= set(report)
    assert [r['config'] for r in report['results']] == demos
    for r in report['results']:
        assert RESULT_FIELDS <= set(r), set(RESULT_FIELDS) - set(r)
        assert SPREAD <= set(r['step_time_s'])
        st = r['step_time_s']
        assert 0 < st['min'] <= st['q25'] <= st['median'] <= st['q75'] <= st['max']
        assert len(st['all']) == r['iters'] == 2
        assert r['images_per_s'] == pytest.approx(1 / st['median'])
        assert r['peak_mem_mb'] >= r['state_mb'] > 0
        assert BREAKDOWN <= set(r['breakdown_ms'])
        assert r['breakdown_ms']['backbone'] > 0 and r['breakdown_ms']['decoders'] > 0
        assert r['breakdown_ms']['backward'] > 0 and r['breakdown_ms']['optimizer'] > 0
        assert r['loss'] > 0 and r['mode'] == 'train' and r['img_size'] == 64
        check_task_losses(r)
    by_name = {osp.basename(r['config']): r for r in report['results']}
    hyper = by_name['polyhistor_lite_swin-tiny_synthetic.py']
    assert hyper['breakdown_ms']['hypernet'] > 0 and hyper['hypernet_fwd_bwd_ms'] > 0
    assert by_name['lora_swin-tiny_synthetic.py']['hypernet_fwd_bwd_ms'] is None
    assert report['ratios'][0]['time_ratio'] == 1 and report['ratios'][0]['mem_ratio'] == 1
    assert len(report['ratios']) == len(demos)
    assert report['data']['samples_per_s_per_worker'] > 0
    assert report['data']['sample_shape'] == [3, 96, 96]


def test_metric_time_json(python, demo_data):
    """--metric scores the validation labels of the config's dataset at their original size
    with random predictions: every task's metric and delta_m come out, and the time is the
    median of the images'."""
    config = 'configs/demo/polyhistor_lite_swin-tiny_synthetic.py'
    report = benchmark_json(python, '--metric', config, '--data-root', demo_data,
                            '--metric-images', '3')
    m = report['metric']
    assert m['config'] == config and m['data_root'] == demo_data and m['images'] == 3
    assert m['tasks'] == ['human_parts', 'normals', 'sal', 'semseg']  # the demo's four
    assert m['image_shape'] == [96, 128]
    assert 0 < m['ms_range'][0] <= m['ms_per_image'] <= m['ms_range'][1]
    assert {'semseg/mIoU', 'human_parts/mIoU', 'sal/maxF', 'normals/mErr', 'delta_m'} <= set(
        m['metrics'])
    assert report['results'] == [] and report['data'] is None


def test_data_and_metric_generate_the_datasets_own_format(python, tmp_path):
    """--data and --metric on a NYUD-v2 config whose data is not here: a synthetic NYUD_MT in
    the release's format, at NYUD-v2's image size, is generated at the missing --data-root,
    and both read it; a root that exists is read as it is (cycled for more samples)."""
    config = 'configs/polyhistor_lite_swin-t_nyud.py'
    root = str(tmp_path / 'NYUD_MT')
    report = benchmark_json(python, '--data', config, '--data-samples', '2', '--metric',
                            config, '--metric-images', '1', '--data-root', root)
    data, metric = report['data'], report['metric']
    assert data['data_root'] == root and data['synthetic'] is True
    assert data['samples'] == data['distinct_samples'] == 2
    for split in ('train', 'val'):  # the NYUD_MT layout: gt_sets/<split>.txt, images/<id>.jpg
        with open(osp.join(root, 'gt_sets', f'{split}.txt')) as f:
            ids = f.read().split()
        assert len(ids) == 2 and all(
            osp.isfile(osp.join(root, 'images', f'{i}.jpg')) for i in ids), (split, ids)
    assert metric['data_root'] == root and metric['image_shape'] == [480, 640]
    assert metric['tasks'] == ['depth', 'edge', 'normals', 'semseg']
    again = benchmark_json(python, '--data', config, '--data-samples', '3', '--data-root',
                           root)['data']
    assert again['synthetic'] is False  # an existing root given: taken for real data
    assert again['samples'] == 3 and again['distinct_samples'] == 2


#: the NYUD-v2 twins differ from their PASCAL configs in the decoders' outputs only (which
#: count_params --all builds and the NYUD demo test runs): two of them run here
NYUD_RUN = ('configs/polyhistor_lite_swin-t_nyud.py', 'configs/mtlora_swin-t_nyud.py')
INFERENCE = [p for p in FULL if not p.endswith('_nyud.py') or rel(p) in NYUD_RUN]


def full_config_shards(size: int = 18):
    """The configs of ``INFERENCE`` in groups of at most ``size`` with the same backbone, so
    that ``pytest -n N`` spreads them over its workers; one process per group (each process
    start costs seconds: no more groups than the balance needs)."""
    groups = {}
    for path in INFERENCE:
        name = osp.basename(path)[:-len('.py')]
        backbone = re.search(r'_((?:swin|pvt|moby|dinov2)[^_]*)(?:_.*)?$', name)
        groups.setdefault(backbone.group(1) if backbone else name, []).append(rel(path))
    shards = {}
    for key, paths in sorted(groups.items()):
        n = -(-len(paths) // size)  # as few shards as the size allows, of even lengths
        shards.update({f'{key}-{i}': paths[i::n] for i in range(n)})
    return shards


SHARDS = full_config_shards()


def test_full_config_shards_hold_every_config_once():
    held = [c for shard in SHARDS.values() for c in shard]
    assert sorted(held) == [rel(p) for p in INFERENCE]
    assert len(INFERENCE) == len([p for p in FULL if not p.endswith('_nyud.py')]) + 2


@pytest.mark.parametrize('shard', sorted(SHARDS))
def test_every_full_config_inference_tiny(python, shard):
    """All configs/*.py (every method x backbone, and the floor; two NYUD-v2 twins): built
    (zero-filled weights: drawing random ones was most of the time), one inference step at
    32 x 32, each model freed before the next."""
    configs = SHARDS[shard]
    compare = ['--compare', *configs[1:]] if len(configs) > 1 else []
    report = benchmark_json(python, configs[0], *compare, '--sequential', '--zero-init',
                            '--mode', 'test', '--img-size', '32', '--iters', '1', '--warmup',
                            '0', '--profile-iters', '0')
    assert [r['config'] for r in report['results']] == configs
    for r in report['results']:
        assert r['mode'] == 'test' and r['step_time_s']['median'] > 0
        assert r['breakdown_ms'] is None
        # every task's map, at the input's size, finite
        shapes = prediction_shapes(r['config'], 32)
        assert {t: o['shape'] for t, o in r['outputs'].items()} == shapes, r['config']
        assert all(o['finite'] for o in r['outputs'].values()), r['config']


def test_full_configs_train_step(python):
    """A training step of three full configs (three backbones), one process."""
    configs = ['configs/polyhistor_lite_swin-t.py', 'configs/lora_pvt-s.py',
               'configs/vpt_deep_moby-t.py']
    report = benchmark_json(python, configs[0], '--compare', *configs[1:], '--sequential',
                            '--img-size', '64', '--batch-size', '1', '--iters', '1',
                            '--warmup', '0')
    assert [r['config'] for r in report['results']] == configs
    for r in report['results']:
        assert r['img_size'] == 64 and r['mode'] == 'train'
        assert r['breakdown_ms']['backward'] > 0 and r['loss'] > 0
        check_task_losses(r)


def test_text_report_and_bench_options(python):
    demo = 'configs/demo/lora_swin-tiny_synthetic.py'
    merged = demo + MERGEABLE_LORA + '@bench.merge_lora=1'
    out = run_tool(python, 'tools/benchmark.py', demo, '--compare', merged,
                   f'{demo}@model.backbone.task_batching=loop', '--mode', 'test',
                   '--img-size', '32', '--iters', '1', '--warmup', '0').stdout
    assert 'ratios to the first' in out and 'merge_lora=1' in out and 'task_batching=loop' in out


# ---------------------------------------------------------------- equal work

def outputs(case: Case):
    """Per-task logits of the case's model on its batch (eval mode: no dropout)."""
    model = case.model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(case.batch, False)
        return model._forward(data['inputs'])


def same_weights(src: Case, dst: Case):
    missing, unexpected = dst.model.load_state_dict(src.model.state_dict(), strict=False)
    assert not unexpected
    assert all('.tuner.' in k for k in missing)  # the floor has no tuner parameters


def assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for task in a:
        torch.testing.assert_close(a[task], b[task], atol=atol, rtol=1e-4)


def test_floor_computes_decoder_ft_outputs():
    """The floor runs the frozen backbone on T x B images: same outputs as running it once."""
    demo = 'configs/demo/{}_swin-tiny_synthetic.py'
    ref = Case(demo.format('decoder_ft'), img_size=64, batch_size=2, mode='test')
    floor = Case(demo.format('floor'), img_size=64, batch_size=2, mode='test')
    same_weights(ref, floor)
    assert floor.model.backbone.task_specific and not ref.model.backbone.task_specific
    assert sum(p.numel() for p in floor.model.backbone.tuner.parameters()) == 0
    assert_same(outputs(ref), outputs(floor))


def test_single_pass_floor_computes_decoder_ft_outputs_and_backpropagates_the_backbone():
    """The one-pass floor: decoder fine-tuning's outputs from one shared pass, but its
    training backward crosses every frozen layer (decoder_ft's never enters the backbone)."""
    demo = 'configs/demo/{}_swin-tiny_synthetic.py'
    ref = Case(demo.format('decoder_ft'), img_size=64, batch_size=2, mode='test')
    floor = Case(demo.format('floor_single-pass'), img_size=64, batch_size=2, mode='test')
    same_weights(ref, floor)
    assert not floor.model.backbone.task_specific and not floor.model.backbone.tuner.fork_layers
    assert_same(outputs(ref), outputs(floor))
    for case, crosses in ((floor, True), (ref, False)):
        model = case.model.train()
        reached = []
        deep = model.backbone.stages[0].blocks[1].norm1  # past the first layer's attention
        deep.register_full_backward_hook(lambda *args: reached.append(True))
        data = model.data_preprocessor(case.batch, True)
        losses = model(**data, mode='loss')
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        assert bool(reached) == crosses


def test_floor_ratios_are_arithmetic_at_the_first_rate():
    """Hand-computed: the first takes 2 s, 4 s for 10 FLOPs; the second 3 s, 8 s for 20: per
    round 1.5x, 2x the time for 2x the arithmetic, so 0.75x, 1x its floor (median 0.875)."""
    from mmpoly.benchmark import ratios

    def result(name, times, flops):
        return dict(name=name, step_time_s=dict(all=times, median=sum(times) / 2),
                    peak_mem_mb=1.0, step_flops=flops)

    ref, other = ratios([result('floor', [2.0, 4.0], 10), result('m', [3.0, 8.0], 20)])
    assert ref['floor_ratio_paired'] == 1.0 and ref['floor_s'] == 3.0
    assert other['flops_ratio'] == 2.0 and other['floor_s'] == 6.0
    assert (other['floor_ratio_paired'], other['floor_ratio_paired_min'],
            other['floor_ratio_paired_max']) == (0.875, 0.75, 1.0)
    assert 'floor_ratio_paired' not in ratios([result('a', [1.0, 1.0], None)])[0]


def test_counted_flops_add_up_across_the_floors():
    """In test mode the task-stacked floor runs the backbone on T x B images where the
    one-pass floor runs it on B, with the same decoders: the counts differ by exactly T - 1
    backbone forwards, counted on their own."""
    from torch.utils.flop_counter import FlopCounterMode
    demo = 'configs/demo/{}_swin-tiny_synthetic.py'
    one = Case(demo.format('floor_single-pass'), img_size=64, batch_size=2, mode='test')
    stacked = Case(demo.format('floor'), img_size=64, batch_size=2, mode='test')
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        one.model.backbone(one.model.data_preprocessor(one.batch, False)['inputs'])
    backbone = counter.get_total_flops()
    T = len(one.tasks)
    assert backbone > 0 and T == 4
    assert stacked.count_flops() - one.count_flops() == (T - 1) * backbone


@pytest.mark.parametrize('method', ['adapter', 'lora', 'polyhistor_lite'])
def test_task_loop_equals_stacked(method):
    demo = f'configs/demo/{method}_swin-tiny_synthetic.py'
    stacked = Case(demo, img_size=64, batch_size=2, mode='test')
    loop = Case(demo + '@model.backbone.task_batching=loop', img_size=64, batch_size=2,
                mode='test')
    with torch.no_grad():  # make every tuner parameter matter (LoRA's B starts at zero)
        for name, p in stacked.model.named_parameters():
            if '.tuner.' in name:
                p.add_(0.05 * torch.randn_like(p))
    loop.model.load_state_dict(stacked.model.state_dict())
    assert loop.model.backbone.task_batching == 'loop'
    assert_same(outputs(stacked), outputs(loop))


def test_merged_lora_equals_unmerged():
    demo = 'configs/demo/lora_swin-tiny_synthetic.py' + MERGEABLE_LORA
    plain = Case(demo, img_size=64, batch_size=2, mode='test')
    merged = Case(demo + '@bench.merge_lora=1', img_size=64, batch_size=2, mode='test')
    with torch.no_grad():
        for name, p in plain.model.named_parameters():
            if '.tuner.' in name:
                p.add_(0.05 * torch.randn_like(p))
    merged.model.load_state_dict(plain.model.state_dict())
    assert merged.model.backbone.tuner.merged and not plain.model.backbone.tuner.merged
    assert_same(outputs(plain), outputs(merged))


def test_merge_refused_with_lora_input_norm():
    # the authors' LoRA normalises the branch input: it cannot be folded into the weight
    with pytest.raises(RuntimeError, match='input_norm=False'):
        Case('configs/demo/lora_swin-tiny_synthetic.py@bench.merge_lora=1', img_size=32,
             batch_size=1, mode='test')


def test_random_batch_labels_in_range():
    batch = random_batch(('semseg', 'human_parts', 'sal', 'normals'), 2, 32,
                         task_specs=PASCAL_TASK_SPECS)
    assert [img.dtype for img in batch['inputs']] == [torch.uint8] * 2
    s = batch['data_samples'][0]
    for task, classes in (('semseg', 21), ('human_parts', 7)):
        v = getattr(s, f'gt_{task}').data
        assert v.dtype == torch.int64 and v.shape == (1, 32, 32)
        assert set(v.unique().tolist()) <= set(range(classes)) | {255}
    assert set(s.gt_sal.data.unique().tolist()) <= {0, 1}
    n = s.gt_normals.data
    assert n.dtype == torch.float32
    torch.testing.assert_close(n.norm(dim=0), torch.ones(32, 32))


def test_markdown_table_of_a_saved_report(python, tmp_path, capsys):
    """--render prints a saved --json report as the README's table, numbers from the JSON."""
    demos = [rel(p) for p in DEMOS[:2]]
    proc = run_tool(python, 'tools/benchmark.py', demos[0], '--compare', demos[1], '--mode',
                    'test', '--img-size', '32', '--iters', '1', '--warmup', '0',
                    '--profile-iters', '0', '--json')
    (tmp_path / 'report.json').write_text(proc.stdout)
    report = json.loads(proc.stdout)
    tool = runpy.run_path(osp.join(REPO, 'tools', 'benchmark.py'))  # --render: no model
    tool['main'](['--render', str(tmp_path / 'report.json')])
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith('| config | step (s, median)') and len(table) == 2 + 2
    for line, r, q in zip(table[2:], report['results'], report['ratios']):
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert cells[0] == f"`{r['name']}`"
        assert cells[1].startswith(f"{r['step_time_s']['median']:.2f} [")
        assert cells[2].startswith(f"{q['time_ratio_paired']:.3f} [")
        assert cells[3] == (f"{r['peak_mem_mb']:.0f} ({r['state_mb']:.0f} + "
                            f"{r['peak_step_mb']:.0f})")
