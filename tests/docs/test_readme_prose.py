"""The numbers in the README's prose about measurements come from the stored reports.

Each sentence of ``## Performance`` and ``## Measured`` that states a measured number is a
template here, rendered from ``docs/benchmarks/*.json``; the README must hold the rendered
text (a failure prints it, to paste). Any other measured-looking number in those sections
(a decimal, or a number of s / ms / min / MB / %) outside tables and code fails the scan:
a number is generated or it is a named constant (``CONSTANTS``).
"""
import json
import os.path as osp
import re

from .test_readme import BENCH, README, benchmark_reports, named

SECTIONS = ('## Performance', '## Measured')
#: numbers in those sections that are not measurements: the targets' thresholds, the bf16
#: test's bound, torch's version
CONSTANTS = {'0.85', '1.15', '1.12', '0.8', '0.4', '1.35', '2%', '1.3', '3%', '1%', '2.13',
             '0.65', '0.70'}
#: the methods that (a)'s first sentence ranges over: task-specific parts in every layer
#: and T passes; the others have sentences of their own
EVERY_LAYER = ('bitfit', 'relative_bias', 'vpt_shallow', 'phm', 'compacter', 'compacter_pp',
               'lora', 'adapter', 'low_rank_adapter', 'shared_adapter', 'polyhistor',
               'polyhistor_lite')


class Reports:
    """Accessors of the stored reports by table and config name."""

    def __init__(self):
        self.reports = benchmark_reports()
        self.tables = {'a': 'a_every_method.json', 'b': 'b_floor.json',
                       'b2': 'b2_checkpointing.json', 'c': 'c_task_loop.json',
                       'd': 'd_inference.json', 'tiny': 'tiny_configs.json',
                       'e': 'e_one_pass_floor.json', 'f': 'f_dinov2.json'}

    def result(self, table, name):
        return named(self.reports[self.tables[table]], name)[0]

    def ratio(self, table, name):
        """The paired time ratio to the table's first config."""
        return named(self.reports[self.tables[table]], name)[1]['time_ratio_paired']

    def floor(self, table, name):
        """The paired time ratio to the config's own floor (its FLOPs at the first's rate)."""
        return named(self.reports[self.tables[table]], name)[1]['floor_ratio_paired']

    def step(self, table, name):
        return self.result(table, name)['step_time_s']['median']

    def mem(self, table, name, reference=None):
        m = self.result(table, name)['peak_mem_mb']
        return m / self.result(table, reference)['peak_mem_mb'] if reference else m

    def run_file(self, name):
        with open(osp.join(BENCH, name)) as f:
            return json.load(f)


def sentences(r):
    """Every generated sentence of the two sections, in README order."""
    a, st, lite = 'a', 'single_task_ft_swin-t', 'polyhistor_lite_swin-t'
    cp = 'polyhistor_lite_swin-t with_cp='
    ratios = [r.ratio(a, f'{m}_swin-t') for m in EVERY_LAYER]
    mems = [r.mem(a, f'{m}_swin-t', st) for m in EVERY_LAYER]
    commits = sorted({rep['commit'][:7] for rep in r.reports.values()})
    dec, mt, lora = (r.step(a, f'{m}_swin-t') for m in ('decoder_ft', 'mtlora', 'lora'))
    hyper = r.result(a, 'hyperformer_swin-t')
    enc = (hyper['trainable_params'] - r.result(a, 'decoder_ft_swin-t')['trainable_params'])
    mt_enc = (r.result(a, 'mtlora_swin-t')['trainable_params']
              - r.result(a, 'decoder_ft_swin-t')['trainable_params'])
    b_lite = r.result('b', lite)
    b_cp = r.result('b', cp + '[0, 1, 2]')
    floor_vs_st = 1 / r.ratio('b', st)
    d_merged = r.result('d', 'lora_swin-t input_norm=False merge_lora=1')
    d_plain = r.result('d', 'lora_swin-t input_norm=False')
    dec_d = r.step('d', 'decoder_ft_swin-t')
    mt_merged = r.step('d', 'mtlora_swin-t merge_lora=1')
    e_floor = r.result('e', 'floor_single-pass_swin-t')
    e_mt = named(r.reports[r.tables['e']], 'mtlora_swin-t')[1]
    one_pass = {m: r.floor('e', f'{m}_swin-t') for m in ('ditask', 'free_sinewich', 'tadformer')}
    main, nyud = r.run_file('main_job.json'), r.run_file('nyud_demo.json')
    data = r.run_file('data_pipeline.json')['data']['samples_per_s_per_worker']
    metric_ms = {name: r.run_file(f'metric_{name}.json')['metric']['ms_per_image']
                 for name in ('pascal', 'nyud')}
    return [
        f"Every table below was measured at commit {', '.join(commits)}",
        # (a)
        f'so it lands at {min(ratios):.2f}-{max(ratios):.2f}x the single-task full FT step in '
        f'this run (which runs four backbones on B images and updates them with Adam) and at '
        f'{min(mems):.2f}-{max(mems):.2f}x its memory',
        f"**VPT-deep** ({r.ratio(a, 'vpt_deep_swin-t'):.2f}x, "
        f"{r.mem(a, 'vpt_deep_swin-t', st):.2f}x memory)",
        f"**Compacter / Low-rank adapter** ({r.mem(a, 'compacter_swin-t', st):.2f}x / "
        f"{r.mem(a, 'low_rank_adapter_swin-t', st):.2f}x memory)",
        f"one adapter per layer ({r.mem(a, 'phm_swin-t', st):.2f}x memory)",
        f"**Hyperformer** ({r.ratio(a, 'hyperformer_swin-t'):.2f}x, "
        f"{r.mem(a, 'hyperformer_swin-t', st):.2f}x memory): its hypernetworks hold "
        f"{enc / 1e6:.1f}M trained parameters (state {hyper['state_mb']:.0f} MB",
        f"**MTLoRA** ({r.ratio(a, 'mtlora_swin-t'):.2f}x, {r.mem(a, 'mtlora_swin-t', st):.2f}x "
        f'memory)',
        f'not by the factor T: {mt / lora:.2f}x LoRA\'s step and '
        f"{mt / r.step(a, lite):.2f}x Polyhistor-Lite's",
        f'decoder fine-tuning alone is {dec:.2f} s of the {mt:.2f} s',
        f'the patch mergings it trains ({mt_enc / 1e6:.2f}M trained encoder parameters, LoRA '
        f'included)',
        f'Without the decoders, its backbone share (about {mt - dec:.1f} s) is '
        f"{(mt - dec) / (lora - dec):.2f}x LoRA's ({lora - dec:.1f} s)",
        # (b')
        f"Checkpointing stages 0-1 gives {r.mem('b2', cp + '[0, 1]', st):.2f}x the memory of "
        f"single-task FT ({r.mem('b2', cp + '[0, 1]'):.0f} / {r.mem('b2', st):.0f} MB) for "
        f"{r.ratio('b2', cp + '[0, 1]'):.2f}x the time",
        f"Stages 0-2 keep most of full checkpointing's saving "
        f"({r.mem('b2', cp + '[0, 1, 2]', st):.2f}x vs {r.mem('b2', cp + 'True', st):.2f}x) "
        f"for {r.ratio('b2', cp + '[0, 1, 2]'):.2f}x the time here and "
        f"{round(r.ratio('b', cp + '[0, 1, 2]'), 3) / round(r.ratio('b', lite), 3):.2f}x in "
        f"(b); full checkpointing takes {r.ratio('b2', cp + 'True'):.2f}x",
        # (d)
        f"Merged LoRA (the no-norm form that folds into the frozen weights) takes "
        f"{r.ratio('d', 'lora_swin-t input_norm=False merge_lora=1'):.3f}x the frozen T-pass "
        f"forward and unmerged {r.ratio('d', 'lora_swin-t input_norm=False'):.3f}x; the "
        f"authors' form with its input LayerNorm, which cannot be merged, "
        f"{r.ratio('d', 'lora_swin-t'):.3f}x",
        f"The eval cache (generated weights kept between test steps) gives "
        f"{r.ratio('d', lite):.2f}x against {r.ratio('d', lite + ' eval_cache=0'):.2f}x "
        f'regenerated',
        f"merged, its test step is {r.ratio('d', 'mtlora_swin-t merge_lora=1'):.2f}x the "
        f'frozen T-pass floor, but {mt_merged / dec_d:.2f}x ({mt_merged:.2f} / {dec_d:.2f} s) '
        f'the frozen single pass of decoder fine-tuning',
        f"(merged {mt_merged:.2f} s vs {r.step('d', 'mtlora_swin-t'):.2f} s unmerged)",
        # (e)
        f"The frozen single pass does {e_floor['step_flops'] / 1e9:.0f} GFLOP in "
        f"{r.step('e', 'floor_single-pass_swin-t'):.2f} s; MTLoRA does "
        f"{r.result('e', 'mtlora_swin-t')['step_flops'] / 1e9:.0f} GFLOP "
        f"({e_mt['flops_ratio']:.2f}x) and takes {r.floor('e', 'mtlora_swin-t'):.2f}x its floor "
        f"of {e_mt['floor_s']:.2f} s; DiTASK {one_pass['ditask']:.2f}x, Free Sinewich "
        f"{one_pass['free_sinewich']:.2f}x and TADFormer {one_pass['tadformer']:.2f}x theirs",
        f"at its floor MTLoRA would take about "
        f"{mt / r.floor('e', 'mtlora_swin-t') / r.step(a, lite):.2f}x Polyhistor-Lite's step "
        f"((a)'s times, (e)'s ratio)",
        # (f)
        f"On DINOv2 ViT-S/14 LoRA takes {r.ratio('f', 'lora_dinov2-s'):.2f}x and "
        f"Polyhistor-Lite {r.ratio('f', 'polyhistor_lite_dinov2-s'):.2f}x the frozen T-pass "
        f"floor ({r.step('f', 'floor_dinov2-s'):.2f} s), at "
        f"{r.mem('f', 'lora_dinov2-s', 'floor_dinov2-s'):.2f}x and "
        f"{r.mem('f', 'polyhistor_lite_dinov2-s', 'floor_dinov2-s'):.2f}x its memory",
        # fixed / left
        f"the backbone forward is {100 * b_lite['breakdown_frac']['backbone']:.0f}% of a "
        f'Polyhistor-Lite step here',
        f"(the profiled backward grows from {b_lite['breakdown_ms']['backward'] / 1e3:.1f} s to "
        f"{b_cp['breakdown_ms']['backward'] / 1e3:.1f} s with stages 0-2 checkpointed in (b))",
        f"**Cached inference at {r.ratio('d', lite):.2f}x the frozen T-pass forward**",
        f"Merging costs {d_merged['state_mb'] - d_plain['state_mb']:.0f} MB more state",
        f'the floor is {floor_vs_st:.2f}x a single-task full FT step in (b), and '
        f"Polyhistor-Lite {r.ratio('b', lite):.2f}x the floor",
        f"bfloat16 on this AVX-512-bf16 CPU): "
        f"{r.step('b', lite + ' amp=1') / r.step('b', lite):.2f}x the float32 step time of "
        f"Polyhistor-Lite ({r.step('b', lite + ' amp=1'):.2f} / "
        f"{r.step('b', lite):.2f} s in (b)) and {r.mem('b', lite + ' amp=1', lite):.2f}x its "
        f"peak memory ({r.mem('b', lite + ' amp=1'):.0f} / {r.mem('b', lite):.0f} MB)",
        f'gives {data:.1f} samples/s per worker on this machine, so a GPU step of B images '
        f'every t seconds needs B / ({data:.1f} t) workers',
        f"the four PASCAL-Context tasks take {metric_ms['pascal']:.1f} ms of CPU per image at "
        f"375 x 500 and NYUD-v2's four {metric_ms['nyud']:.1f} ms at 480 x 640",
        # the demo runs
        f"The main-job command took {fmt_duration(main['wall_s']['polyhistor_lite'])} "
        f"(decoder fine-tuning {fmt_duration(main['wall_s']['decoder_ft'])}) on the 2-core "
        f"machine, at commit {main['commit'][:7]} (`tools/measure_demo_runs.py main`)",
        f"It took {nyud['wall_s']['polyhistor_lite']:.0f} s and "
        f"{nyud['wall_s']['decoder_ft']:.0f} s on the 2-core machine, at commit "
        f"{nyud['commit'][:7]} (`tools/measure_demo_runs.py nyud`)",
        "the depth head has barely left its start in both runs (" + ' and '.join(
            f"{run['depth/rmse']:.2f}" for run in nyud['runs']) + ' m RMSE)',
    ]


def fmt_duration(seconds):
    minutes, s = divmod(round(seconds), 60)
    return f'{minutes} min {s} s' if minutes else f'{s} s'


def normalized(text):
    return re.sub(r'\s+', ' ', text)


def section_prose():
    """The two sections' text without tables, code blocks and inline code."""
    with open(README) as f:
        lines = f.read().splitlines()
    out, inside, fenced = [], False, False
    for line in lines:
        if line.startswith('## '):
            inside = line.startswith(SECTIONS)
        if line.startswith('```'):
            fenced = not fenced
            continue
        if inside and not fenced and not line.startswith('|'):
            out.append(line)
    return re.sub(r'`[^`]*`', '', normalized(' '.join(out)))


def test_prose_numbers_are_the_reports():
    with open(README) as f:
        readme = normalized(f.read())
    rendered = sentences(Reports())
    missing = [s for s in rendered if normalized(s) not in readme]
    assert not missing, 'README prose differs from the reports; it should read:\n' + \
        '\n'.join(missing)


def test_no_other_measured_numbers_in_the_prose():
    prose = section_prose()
    for sentence in sentences(Reports()):
        prose = prose.replace(re.sub(r'`[^`]*`', '', normalized(sentence)), ' ')
    found = re.findall(r'\d+\.\d+|\b\d+ ?(?:ms|s|MB|min|%)(?!\w)', prose)
    stray = [n for n in found if n.replace(' ', '') not in CONSTANTS]
    assert not stray, f'numbers in the README prose with no report behind them: {stray}'
