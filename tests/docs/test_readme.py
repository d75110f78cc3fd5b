"""The README's tables of measured or counted numbers, held to their sources.

* the benchmark tables: ``tools/benchmark.py --render docs/benchmarks/<table>.json`` (the
  ``--json`` report each table was made from), cell by cell;
* the targets table: the same reports (each row's numbers formatted from them);
* the parameter table and the ablation tables (Tables 5 and 2): ``tools/count_params.py``,
  counted live for each row's config (and options), read by column name;
* the checkpoint-size table: ``docs/benchmarks/checkpoint_sizes.json``
  (``tools/export_adapter.py --measure --json``), and that report against the live counts
  (a report measured for other parameter counts is stale);
* the demo runs' tables (the main job, the NYUD-v2 demo): ``docs/benchmarks/main_job.json``
  and ``nyud_demo.json`` (the runs' metrics, as ``tools/summarize.py`` reads them), and
  their parameter counts against the live ones.

A failure names the table, the row and the column. ``MMPOLY_README`` points the tests at
another copy of the README (to try a changed number without touching the real one).
"""
import contextlib
import copy
import functools
import glob
import json
import os
import os.path as osp
import re
import runpy

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
README = os.environ.get('MMPOLY_README', osp.join(REPO, 'README.md'))
BENCH = osp.join(REPO, 'docs', 'benchmarks')


# ------------------------------------------------------------------ reading the README
class Table:

    def __init__(self, line, title, header, rows):
        self.line, self.title, self.header, self.rows = line, title, header, rows

    def __repr__(self):
        return f'README table at line {self.line} ({self.header[0]!r} | {self.title[:50]!r})'

    def col(self, row, name):
        return row[self.header.index(name)]

    def has(self, name):
        return name in self.header


def split_row(line):
    return [c.strip() for c in line.strip().strip('|').split('|')]


@functools.lru_cache()
def tables(path=README):
    """Every Markdown table: its first line, the text before it (its title), header, rows."""
    with open(path) as f:
        lines = f.read().splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].startswith('|') and i + 1 < len(lines) and \
                re.fullmatch(r'\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*', lines[i + 1]):
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            title = []
            while j >= 0 and lines[j].strip() and not lines[j].startswith('|'):
                title.insert(0, lines[j])
                j -= 1
            header, rows, k = split_row(lines[i]), [], i + 2
            while k < len(lines) and lines[k].startswith('|'):
                rows.append(split_row(lines[k]))
                k += 1
            out.append(Table(i + 1, ' '.join(title), header, rows))
            i = k
        else:
            i += 1
    return tuple(out)


def plain(cell):
    return cell.replace('**', '').replace('`', '').strip()


def compare(table, row_name, column, readme, expected, errors):
    if plain(readme) != plain(expected):
        errors.append(f'{table}, row {row_name!r}, column {column!r}: README says '
                      f'{readme!r}, the source gives {expected!r}')


def report_errors(errors):
    assert not errors, f'{len(errors)} README numbers differ from their source:\n' + \
        '\n'.join(errors)


# ------------------------------------------------------------------ sources
def benchmark_reports():
    out = {}
    for path in sorted(glob.glob(osp.join(BENCH, '*.json'))):
        with open(path) as f:
            text = f.read()
        try:
            report = json.loads(text.strip().splitlines()[-1])  # as --render reads it
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict) and report.get('results') and 'ratios' in report:
            out[osp.basename(path)] = report
    return out


@functools.lru_cache()
def count_tool():
    return runpy.run_path(osp.join(REPO, 'tools', 'count_params.py'))


@contextlib.contextmanager
def no_random_init():
    """Counting needs the shapes only: the random initialisation (most of the time a
    Swin-T build takes) is skipped."""
    names = ('uniform_', 'normal_', 'erfinv_', 'fill_', 'zero_', 'exponential_')
    saved = {n: getattr(torch.Tensor, n) for n in names}
    for n in names:
        setattr(torch.Tensor, n, lambda self, *args, **kwargs: self)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


@functools.lru_cache(maxsize=None)
def counts(config, options=()):
    """``count_params`` of configs/<config> with ``options`` ((key, value) pairs)."""
    with no_random_init():
        return count_tool()['count_config'](osp.join(REPO, 'configs', config),
                                            dict(options) or None)


def millions(n):
    return f'{n / 1e6:.2f}'


def parse_options(cell):
    """'`a.b=1 c=0.5`' -> (('a.b', 1), ('c', 0.5)); 'default' -> ()."""
    import ast
    text = plain(cell)
    if text in ('default', ''):
        return ()
    out = []
    for item in text.split():
        key, value = item.split('=', 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        out.append((key, value))
    return tuple(sorted(out))


# ------------------------------------------------------------------ which table is which
BENCH_HEADER = 'step (s, median) [min-max]'


def is_benchmark(t):
    return t.has(BENCH_HEADER)


def is_param_table(t):
    return t.header[0] == 'method' and t.has('config') and t.has('encoder')


def is_ablation(t):
    return t.has('option') and any(h.startswith('encoder') for h in t.header)


def is_size_table(t):
    return t.has('adapter-only (MiB)')


def is_targets(t):
    return t.header[:3] == ['target', 'measured', 'met?']


#: the tables of demo runs and the ``tools/summarize.py --format json`` file of their runs
#: (by a column only that table has)
DEMO_RUNS = {'parts mIoU': 'main_job.json', 'depth rmse': 'nyud_demo.json'}


def is_demo_runs(t):
    return t.has('trainable encoder')


BACKBONES = ('swin-t', 'swin-b', 'swin-b-in22k', 'moby-t', 'pvt-s')


def column_backbones(column):
    names = [n.strip() for n in column.split('/')]
    return names if all(n in BACKBONES for n in names) else None


def is_other_backbones(t):
    return t.header[0] == 'method' and len(t.header) > 1 and all(
        column_backbones(h) for h in t.header[1:])


def is_mtlora_table(t):
    return t.header[0] == 'MTLoRA'


def is_ditask_table(t):
    return t.header[0] == 'DiTASK'


def is_free_sinewich_table(t):
    return t.header[0] == 'Free Sinewich'


def is_mmpretrain_table(t):
    return t.header[0] == 'mmpretrain backbone'


def is_tadformer_table(t):
    return t.header[0] == 'TADFormer'


CHECKED = (is_benchmark, is_param_table, is_ablation, is_size_table, is_targets, is_demo_runs,
           is_other_backbones, is_mtlora_table, is_ditask_table, is_free_sinewich_table,
           is_mmpretrain_table,
           is_tadformer_table)
#: tables whose digits are configuration, not measured or counted: the tuners' keys, the
#: old forms' --cfg-options, the reliability guarantees and their tests
NOT_NUMBERS = (['method', 'tuner'], ['method', 'old form'], ['Guarantee', 'How', 'Test'])


def the(kind):
    found = [t for t in tables() if kind(t)]
    assert found, f'no README table found by {kind.__name__}'
    return found


def test_every_table_with_numbers_is_checked():
    """A new table of numbers needs a source and a check here (the method table's digits
    are the tuners' defaults, read from the code by other tests)."""
    unchecked = [t for t in tables() if not any(kind(t) for kind in CHECKED)
                 and any(re.search(r'\d', c) for r in t.rows for c in r)
                 and not any(t.header[:len(h)] == h for h in NOT_NUMBERS)]
    assert not unchecked, unchecked


# ------------------------------------------------------------------ benchmark tables
def test_benchmark_tables_are_their_reports():
    from mmpoly.benchmark import format_markdown
    reports = benchmark_reports()
    assert len(reports) >= 6, sorted(reports)
    readme_tables, errors = the(is_benchmark), []
    shown = set()
    for name, report in reports.items():
        rendered = format_markdown(report).splitlines()
        header, rows = split_row(rendered[0]), [split_row(r) for r in rendered[2:]]
        configs = [r[0] for r in rows]
        matches = [t for t in readme_tables if [r[0] for r in t.rows] == configs]
        if not matches:
            errors.append(f'docs/benchmarks/{name}: no README table lists its configs '
                          f'{configs}')
            continue
        table = matches[0]
        shown.add(table.line)
        label = f'{table} from docs/benchmarks/{name}'
        if table.header != header:
            errors.append(f'{label}: header {table.header} != {header}')
            continue
        for got, want in zip(table.rows, rows):
            for column, a, b in zip(header[1:], got[1:], want[1:]):
                compare(label, got[0], column, a, b, errors)
    orphans = [t for t in readme_tables if t.line not in shown]
    errors += [f'{t}: a benchmark table with no report in docs/benchmarks' for t in orphans]
    report_errors(errors)


def hashable(value):
    return tuple(map(hashable, value)) if isinstance(value, (list, tuple)) else value


def test_benchmark_reports_are_todays_code():
    """A report is stale once the code it timed changes: each records its commit (clean), and
    each case the blob ids of the files it ran and its trainable count; all must be today's
    (else: re-measure with the table's ``tools/benchmark.py --suite NAME --json``)."""
    from mmpoly.benchmark.cases import parse_spec
    from mmpoly.benchmark.provenance import changed_sources
    errors = []
    for name, report in benchmark_reports().items():
        label = f'docs/benchmarks/{name}'
        commit = report.get('commit') or ''
        if not re.fullmatch(r'[0-9a-f]{40}', commit):
            errors.append(f'{label}: no commit recorded (measured before reports recorded it)')
            continue
        if report.get('dirty'):
            errors.append(f'{label}: measured at {commit[:7]} with uncommitted changes to '
                          f'{report["dirty"]}')
        for r in report['results']:
            if not r.get('sources') or 'spec' not in r:
                errors.append(f'{label} {r["name"]}: no sources recorded')
                continue
            changed = changed_sources(r['sources'])
            if changed:
                errors.append(f'{label} {r["name"]}: measured at {commit[:7]}; changed since: '
                              f'{changed}')
            path, options = parse_spec(r['spec'])
            model_options = tuple(sorted((k, hashable(v)) for k, v in options.items()
                                         if not k.startswith('bench.')))
            today = counts(osp.relpath(path, 'configs'), model_options)['all']
            if r['trainable_params'] != today:
                errors.append(f'{label} {r["name"]}: {r["trainable_params"]:,} trainable '
                              f'parameters measured, {today:,} today')
    report_errors(errors)


# ------------------------------------------------------------------ targets
def named(report, name):
    for r, q in zip(report['results'], report['ratios']):
        if r['name'] == name:
            return r, q
    raise KeyError(f'{name} not in the report ({[r["name"] for r in report["results"]]})')


def spread(q, digits=2):
    f = f'{{:.{digits}f}}'
    return (f"{f.format(q['time_ratio_paired'])} [{f.format(q['time_ratio_paired_min'])}-"
            f"{f.format(q['time_ratio_paired_max'])}]")


def printed_ratio(a, b):
    """a / b as the README computes it: from the ratios as the tables print them (3 d.p.)."""
    return f"{round(a, 3) / round(b, 3):.2f}"


def yes(ok):
    return 'yes' if ok else 'no'


def targets_from(reports):
    """target -> (the 'measured' cell, the 'met?' cell), every number formatted from the
    reports and every verdict computed from the target's threshold (on the printed value);
    the words are the README's."""
    a, b = reports['a_every_method.json'], reports['b_floor.json']
    b2, c, d = (reports[k] for k in ('b2_checkpointing.json', 'c_task_loop.json',
                                     'd_inference.json'))
    lite, cp = 'polyhistor_lite_swin-t', 'polyhistor_lite_swin-t with_cp='
    plain_lora = 'lora_swin-t input_norm=False'
    b_lite, b_st = named(b, lite)[1], named(b, 'single_task_ft_swin-t')[1]
    mem_st = named(b2, 'single_task_ft_swin-t')[0]['peak_mem_mb']

    def mem(name):
        return named(b2, name)[0]['peak_mem_mb'] / mem_st

    def r2(x):  # as printed
        return round(x, 2)

    hyper = named(b, lite)[0]
    loop = {m: printed_ratio(named(c, f'{m}_swin-t task_batching=loop')[1]['time_ratio_paired'],
                             named(c, f'{m}_swin-t')[1]['time_ratio_paired'])
            for m in ('adapter', 'lora', 'polyhistor_lite')}
    names = {'adapter': 'Adapter', 'lora': 'LoRA', 'polyhistor_lite': 'Polyhistor-Lite'}
    b_cp = named(b, f'{cp}[0, 1, 2]')[1]['time_ratio_paired']
    st_mem = named(b, 'single_task_ft_swin-t')[0]['peak_mem_mb']
    lite_mem = named(b, lite)[0]['peak_mem_mb']
    a_lite = named(a, lite)[1]['time_ratio_paired']
    b_vs_st = printed_ratio(b_lite['time_ratio_paired'], b_st['time_ratio_paired'])
    cp_time = {s: named(b2, cp + s)[1]['time_ratio_paired']
               for s in ('[0, 1]', '[0, 1, 2]', 'True')}
    cp_ok = {s: (r2(mem(cp + s)) <= 0.4, r2(t) <= 1.35) for s, t in cp_time.items()}
    cp_ok['[0, 1, 2] (b)'] = (cp_ok['[0, 1, 2]'][0],
                              float(printed_ratio(b_cp, b_lite['time_ratio_paired'])) <= 1.35)
    merged = named(d, f'{plain_lora} merge_lora=1')[1]['time_ratio_paired']
    e = reports['e_one_pass_floor.json']
    a_mtlora = named(a, 'mtlora_swin-t')[1]['time_ratio_paired']
    mtlora_vs_lite = printed_ratio(a_mtlora, a_lite)
    e_mtlora = named(e, 'mtlora_swin-t')[1]
    return {
        'Polyhistor-Lite step <= 0.85x single-task full FT': (
            f"{spread(named(a, lite)[1])} ((a)); {b_vs_st} "
            f"({b_lite['time_ratio_paired']:.3f} / {b_st['time_ratio_paired']:.3f}, (b))",
            f"{yes(r2(a_lite) <= 0.85)} ((a)), {yes(float(b_vs_st) <= 0.85)} ((b))"),
        'Polyhistor-Lite step <= 1.15x the floor': (
            f"{spread(b_lite)} ((b))", yes(r2(b_lite['time_ratio_paired']) <= 1.15)),
        'issue 25: Polyhistor-Lite step <= 0.80x single-task full FT and <= 1.10x the floor': (
            f"{r2(a_lite):.2f} ((a)); {b_vs_st} ((b)); {spread(b_lite)} ((b))",
            f"{yes(r2(a_lite) <= 0.80)} ((a)), {yes(float(b_vs_st) <= 0.80)} ((b)); "
            f"{yes(r2(b_lite['time_ratio_paired']) <= 1.10)}"),
        'issue 25: MTLoRA r 64 step <= 0.65x Polyhistor-Lite\'s and <= 1.15x its own floor': (
            f"{mtlora_vs_lite} ({a_mtlora:.3f} / {a_lite:.3f}, (a)); "
            f"{e_mtlora['floor_ratio_paired']:.2f} [{e_mtlora['floor_ratio_paired_min']:.2f}-"
            f"{e_mtlora['floor_ratio_paired_max']:.2f}] of {e_mtlora['floor_s']:.2f} s ((e))",
            f"{yes(float(mtlora_vs_lite) <= 0.65)}; "
            f"{yes(r2(e_mtlora['floor_ratio_paired']) <= 1.15)}"),
        'cached inference <= 1.12x the frozen T-pass forward': (
            f"{spread(named(d, lite)[1])} ((d))",
            yes(r2(named(d, lite)[1]['time_ratio_paired']) <= 1.12)),
        'peak training memory <= 0.8x single-task full FT': (
            f"{lite_mem:.0f} / {st_mem:.0f} MB = {lite_mem / st_mem:.2f}",
            yes(r2(lite_mem / st_mem) <= 0.8)),
        'with activation checkpointing <= 0.4x, at <= 1.35x the time': (
            f"stages 0-1 (`with_cp=[0,1]`): {mem(cp + '[0, 1]'):.2f}x, "
            f"{spread(named(b2, cp + '[0, 1]')[1]).replace(' [', 'x [')}; stages 0-2: "
            f"{mem(cp + '[0, 1, 2]'):.2f}x, {cp_time['[0, 1, 2]']:.2f}x and "
            f"{printed_ratio(b_cp, b_lite['time_ratio_paired'])}x in two runs; every layer "
            f"(`with_cp=True`): {mem(cp + 'True'):.2f}x, "
            f"{spread(named(b2, cp + 'True')[1]).replace(' [', 'x [')} ((b'), (b))",
            '; '.join(f'{label}: memory {yes(cp_ok[s][0])}, time {yes(cp_ok[s][1])}'
                      for label, s in (('stages 0-1', '[0, 1]'), ('stages 0-2', '[0, 1, 2]'),
                                       ('stages 0-2 in (b)', '[0, 1, 2] (b)'),
                                       ('every layer', 'True')))),
        'hypernetwork generation < 2% of a step': (
            f"forward + backward alone {hyper['hypernet_fwd_bwd_ms']:.0f} ms = "
            f"{100 * hyper['hypernet_frac']:.1f}% of the step; its forward range "
            f"{hyper['breakdown_ms']['hypernet']:.0f} ms = "
            f"{100 * hyper['breakdown_frac']['hypernet']:.1f}% ((b))",
            yes(round(100 * hyper['hypernet_frac'], 1) < 2)),
        'task-stacked pass never slower than the per-task loop on CPU': (
            f"loop / stacked: Adapter {loop['adapter']}, LoRA {loop['lora']}, "
            f"Polyhistor-Lite {loop['polyhistor_lite']} ((c))",
            ', '.join(f'{names[m]} {yes(float(v) >= 1)}' for m, v in loop.items())),
        'task-stacked >= 1.3x faster than the loop on GPU': (
            'not measured (no GPU lent)', 'unknown'),
        'merged LoRA inference within 3% of the frozen forward': (
            f"{spread(named(d, f'{plain_lora} merge_lora=1')[1], 3)} ((d), LoRA without the "
            f"input LayerNorm, the form that merges); unmerged "
            f"{named(d, plain_lora)[1]['time_ratio_paired']:.3f}",
            yes(abs(round(merged, 3) - 1) <= 0.03)),
    }


def test_targets_table_is_the_reports():
    (table, ) = the(is_targets)
    expected, errors = targets_from(benchmark_reports()), []
    listed = [plain(r[0]) for r in table.rows]
    if sorted(listed) != sorted(expected):
        errors.append(f'{table}: rows {listed}, checked here {sorted(expected)}')
    for row in table.rows:
        if plain(row[0]) in expected:
            measured, met = expected[plain(row[0])]
            compare(table, plain(row[0]), 'measured', table.col(row, 'measured'), measured,
                    errors)
            compare(table, plain(row[0]), 'met?', table.col(row, 'met?'), met, errors)
    report_errors(errors)


# ------------------------------------------------------------------ parameter counts
def test_parameter_table_is_count_params():
    from mmpoly.utils.paper_tables import TABLE1, TRUNCATED_IN_PAPER, printed
    (table, ) = the(is_param_table)
    errors = []
    configs = [plain(table.col(r, 'config')) for r in table.rows]
    expected_configs = [f'{m}_swin-t.py' for m in TABLE1]
    if sorted(configs) != sorted(expected_configs):
        errors.append(f'{table}: configs {configs} != the Table 1 rows {expected_configs}')
    for row in table.rows:
        config = plain(table.col(row, 'config'))
        name = plain(row[0])
        if not osp.isfile(osp.join(REPO, 'configs', config)):
            errors.append(f'{table}, row {name!r}: configs/{config} does not exist')
            continue
        c = counts(config)
        cells = {'encoder': f"{c['encoder']:,d}", 'encoder (M)': millions(c['encoder']),
                 'all (M)': millions(c['all']), 'all': f"{c['all']:,d}"}
        method = config[:-len('_swin-t.py')]
        paper = TABLE1.get(method)
        if paper is not None:
            _, paper_encoder, paper_all = paper
            cells['paper encoder'] = f'{paper_encoder:.2f}'
            cells['paper all'] = f'{paper_all:.2f}'
            cells['paper (printed) encoder / all'] = f'{paper_encoder:.2f} / {paper_all:.2f}'
            ours = printed(c['encoder'])
            if ours == paper_encoder:
                cells['encoder vs paper'] = 'same at 2 decimals'
                cells['equal at the printed digits'] = 'yes'
            else:
                change = 100 * (c['encoder'] / 1e6 / paper_encoder - 1)
                cells['encoder vs paper'] = f'{change:+.1f}%'
                truncated = (method in TRUNCATED_IN_PAPER
                             and int(c['encoder'] / 1e4) / 100 == paper_encoder)
                cells['equal at the printed digits'] = ('truncated in the paper' if truncated
                                                        else 'no')
        for column, value in cells.items():
            if table.has(column):
                readme = table.col(row, column)
                if column == 'equal at the printed digits':  # may carry a reason after it
                    readme = readme.split(' (')[0].split(':')[0]
                compare(table, name, column, readme, value, errors)
    report_errors(errors)


def test_other_backbones_table_is_count_params():
    from mmpoly.utils.paper_tables import TABLE1
    method_of = {row: method for method, (row, _, _) in TABLE1.items()}
    errors = []
    for table in the(is_other_backbones):
        names = [plain(r[0]) for r in table.rows]
        if sorted(names) != sorted(method_of):
            errors.append(f'{table}: rows {names} != the Table 1 rows {sorted(method_of)}')
        for row in table.rows:
            name = plain(row[0])
            method = method_of.get(name)
            if method is None:
                continue
            for column, cell in zip(table.header[1:], row[1:]):
                for backbone in column_backbones(column):
                    config = f'{method}_{backbone}.py'
                    if not osp.isfile(osp.join(REPO, 'configs', config)):
                        if re.search(r'\d', cell):
                            errors.append(f'{table}, row {name!r}, column {column!r}: '
                                          f'{cell!r} but configs/{config} does not exist')
                        continue
                    compare(table, name, f'{column} ({config})', cell,
                            f"{counts(config)['encoder']:,d}", errors)
    report_errors(errors)


#: the mmpretrain table's method columns -> config prefix
MMPRETRAIN_METHODS = {'Fine-tuning decoders': 'decoder_ft',
                      'Multi-task full fine-tuning': 'multi_task_ft', 'BitFit': 'bitfit',
                      'LoRA': 'lora', 'Adapter': 'adapter', 'Polyhistor': 'polyhistor',
                      'Polyhistor-Lite': 'polyhistor_lite',
                      "MTLoRA's shared LoRA": 'mtlora_shared'}


def test_mmpretrain_table_is_the_configs_and_count_params():
    """Weights: the config's URL and (where mmpretrain is installed) its model index's
    ``Weights`` for the name in the row; counts: count_params, the neck its own group."""
    from mmengine.config import Config
    pytest.importorskip('mmpretrain')  # the configs' encoder (tools/setup_env.sh installs it)
    errors = []
    (table, ) = the(is_mmpretrain_table)
    assert len(table.rows) >= 2
    for row in table.rows:
        cells = dict(zip(table.header, row))
        backbone = plain(cells['config'])
        base = Config.fromfile(osp.join(REPO, 'configs', f'decoder_ft_{backbone}.py'))
        compare(table, backbone, 'weights', cells['weights'],
                base.model.backbone.init_cfg.checkpoint, errors)
        index_name = re.search(r'`([^`]+)`', cells['mmpretrain backbone']).group(1)
        url = model_index_weights(index_name)
        if url is not None:
            compare(table, backbone, 'weights (model index)', cells['weights'], url, errors)
        for column, method in MMPRETRAIN_METHODS.items():
            config = f'{method}_{backbone}.py'
            if plain(cells[column]) == 'refused':  # no config, and the backbone refuses it
                if osp.exists(osp.join(REPO, 'configs', config)):
                    errors.append(f'{backbone}: {column} says refused, {config} exists')
                refused_by_name(base, method, backbone, errors)
                continue
            found = counts(config)
            compare(table, backbone, column, cells[column], f"{found['encoder']:,d}", errors)
        neck = found['groups'].get('neck (pyramid of a plain ViT)')  # hierarchical: none
        compare(table, backbone, 'neck', cells['neck'],
                '—' if neck is None else f'{neck:,d}', errors)
    report_errors(errors)


def refused_by_name(base, method, backbone, errors):
    """``base`` (a config of ``backbone``) with the DINOv2-S config's tuner of ``method``
    must fail to build, with an error naming the tuner and the encoder."""
    from mmengine.config import Config
    from mmpoly.utils.param_count import build_model_without_weights
    cfg = copy.deepcopy(base)
    tuner = Config.fromfile(osp.join(REPO, 'configs', f'{method}_dinov2-s.py')).model.backbone.tuner
    cfg.model.backbone.tuner = tuner
    try:
        build_model_without_weights(cfg, random_init=False)
    except ValueError as error:
        if tuner['type'] in str(error) and 'MMPretrainBackbone(' in str(error):
            return
        errors.append(f'{backbone}: {method} fails, but not by name: {error}')
        return
    errors.append(f'{backbone}: the README says {method} is refused, it builds')


def model_index_weights(name):
    """The ``Weights`` URL of model ``name`` in mmpretrain's installed model index, or None
    without mmpretrain."""
    try:
        import mmpretrain
    except ImportError:
        return None
    root = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')
    for path in glob.glob(osp.join(root, '*', 'metafile.yml')):
        text = open(path).read()
        match = re.search(rf'- Name: {re.escape(name)}\n(?:(?!  - Name:).*\n)*?    Weights: (\S+)',
                          text)
        if match:
            return match.group(1)
    raise AssertionError(f'{name} is not in mmpretrain\'s model index ({root})')


ABLATION_CONFIGS = (('Polyhistor-Lite', 'polyhistor_lite_swin-t.py'),
                    ('Polyhistor', 'polyhistor_swin-t.py'))


#: scale-lab/MTLoRA: its paper's Table 1 totals (M) by rank, and main.py's print in issue 5
MTLORA_PUBLISHED = {16: '4.95', 32: '6.08', 64: '8.34', 'print': '5.30'}
#: the reference's four HRNet heads with their downsamplers (issue 5's "Decoder params")
MTLORA_HRNET_HEADS = 1_946_624


def test_mtlora_table_is_count_params():
    """Every cell from ``count_params`` (its MTLoRA lines) of the row's config and options,
    the reference build = LoRA + unused + extra + the HRNet heads, and that build equal to
    the published figure at its digits."""
    (table, ) = the(is_mtlora_table)
    errors = []
    for row in table.rows:
        name, config = plain(row[0]), plain(table.col(row, 'config'))
        options = parse_options(table.col(row, 'options'))
        ours = counts(config, options)['reference']
        built = counts(config, tuple(sorted(
            options + (('model.backbone.tuner.build_unused', True), ))))['reference']
        reference = built['lora'] + built['extra'] + MTLORA_HRNET_HEADS
        cells = {'LoRA (TA + TS)': ours['lora'], 'extra (backbone parts)': ours['extra'],
                 'decoders': ours['decoders'], 'trained': ours['trainable'],
                 'unused last fc2 (not built)': built['lora'] - ours['lora'],
                 'reference build': reference}
        for column, value in cells.items():
            compare(table, name, column, table.col(row, column), f'{value:,d}', errors)
        compare(table, name, 'published (M)', table.col(row, 'published (M)'),
                millions(reference), errors)
        key = 'print' if 'print' in name else int(name.split('=')[1].split(',')[0])
        compare(table, name, 'published (M) vs the publication',
                table.col(row, 'published (M)'), MTLORA_PUBLISHED[key], errors)
    report_errors(errors)


#: DiTASK's paper: 1.61M trainable parameters, encoder side (ipsitmantri/DiTASK, 4 tasks)
DITASK_PUBLISHED = '1.61'


def test_ditask_table_is_count_params():
    """Every cell from ``count_params`` of the row's config and options, and the reference
    build (``build_unused=True``: the last block's shared thetas) beside the paper's figure,
    which it does not reach (the gap is stated in the README)."""
    (table, ) = the(is_ditask_table)
    errors = []
    for row in table.rows:
        name, config = plain(row[0]), plain(table.col(row, 'config'))
        options = parse_options(table.col(row, 'options'))
        ours = counts(config, options)
        built = counts(config, tuple(sorted(
            options + (('model.backbone.tuner.build_unused', True), ))))
        groups = ours['groups']
        shared, tasks = groups['tuner.shared_theta'], groups['tuner.task_theta']
        cells = {'shared theta': shared, 'task theta': tasks,
                 'extra (backbone parts)': ours['encoder'] - shared - tasks,
                 'encoder': ours['encoder'],
                 'unused last thetas (not built)': built['encoder'] - ours['encoder']}
        for column, value in cells.items():
            compare(table, name, column, table.col(row, column), f'{value:,d}', errors)
        compare(table, name, 'reference build', table.col(row, 'reference build'),
                f"{built['encoder']:,d} ({millions(built['encoder'])}M)", errors)
        compare(table, name, 'published (M) vs the publication',
                table.col(row, 'published (M)'), DITASK_PUBLISHED, errors)
    report_errors(errors)


#: Free Sinewich's paper (arXiv 2603.21111): trainable parameters (M) by rank, 4 tasks
FREE_SINEWICH_PUBLISHED = {64: '6.53', 32: '4.04'}


def test_free_sinewich_table_is_count_params():
    """Every cell from ``count_params`` of the row's config and options (its groups and its
    ``paper`` line: encoder + the reference HRNet heads), and the published figure the
    paper's."""
    (table, ) = the(is_free_sinewich_table)
    errors = []
    for row in table.rows:
        name, config = plain(row[0]), plain(table.col(row, 'config'))
        ours = counts(config, parse_options(table.col(row, 'options')))
        groups = ours['groups']
        cells = {'LoRA (A, B)': groups['tuner.shared_A'] + groups['tuner.shared_B'],
                 'W_mid': groups['tuner.mid'],
                 'tokens + clock': groups['tuner.task_tokens'] + groups['tuner.clock'],
                 'encoder': ours['encoder'], 'reference build': ours['paper']['reference']}
        for column, value in cells.items():
            compare(table, name, column, table.col(row, column), f'{value:,d}', errors)
        compare(table, name, 'published (M)', table.col(row, 'published (M)'),
                ours['paper']['published'], errors)
        compare(table, name, 'published (M) vs the publication',
                table.col(row, 'published (M)'),
                FREE_SINEWICH_PUBLISHED[int(name.split('=')[1])], errors)
    report_errors(errors)


#: TADFormer's paper (arXiv 2501.04293): trainable parameters (M) by rank, 4 tasks
TADFORMER_PUBLISHED = {16: '3.56', 32: '4.78', 64: '7.38'}


def test_tadformer_table_is_count_params():
    """Every cell from ``count_params`` of the row's config and options (its groups and its
    ``paper`` line), the published figure the paper's; the paper builds print it, the
    released ones do not."""
    (table, ) = the(is_tadformer_table)
    errors = []
    for row in table.rows:
        name, config = plain(row[0]), plain(table.col(row, 'config'))
        ours = counts(config, parse_options(table.col(row, 'options')))
        groups = ours['groups']
        cells = {'LoRA (A, B)': groups['tuner.shared_A'] + groups['tuner.shared_B'],
                 'filters': sum(v for k, v in groups.items() if k.startswith('tuner.filter')),
                 'prompt LNs': groups['tuner.prompt_norm'],
                 'prompts + widening + gates': groups['tuner.prompts']
                 + groups['tuner.prompt_up'] + groups['tuner.gates'],
                 'extra (backbone parts)': sum(v for k, v in groups.items()
                                               if k.startswith('backbone')),
                 'encoder': ours['encoder'], 'reference build': ours['paper']['reference']}
        for column, value in cells.items():
            compare(table, name, column, table.col(row, column), f'{value:,d}', errors)
        rank = int(name.split('=')[1].split(',')[0])
        for column, value in (('published (M)', ours['paper']['published']),
                              ('published (M) vs the publication', TADFORMER_PUBLISHED[rank])):
            compare(table, name, column, table.col(row, 'published (M)'), value, errors)
        if 'paper build' in name and millions(ours['paper']['reference']) != \
                TADFORMER_PUBLISHED[rank]:
            errors.append(f'{name}: the paper build prints '
                          f"{millions(ours['paper']['reference'])}, not the paper's figure")
    report_errors(errors)


def test_ablation_tables_are_count_params():
    from mmpoly.utils.paper_tables import ABLATIONS, printed
    found, errors = the(is_ablation), []
    checked = set()
    for table in found:
        for row in table.rows:
            name = plain(row[0])
            if table.has('config'):
                config = plain(table.col(row, 'config'))
            else:
                config = next(c for prefix, c in ABLATION_CONFIGS
                              if table.header[0].startswith(prefix))
            options = parse_options(table.col(row, 'option'))
            c = counts(config, options)
            checked.add((config, options))
            encoder_cell = table.col(row, 'encoder')
            match = re.fullmatch(r'([\d,]+)(?: \(([\d.]+)M\))?', plain(encoder_cell))
            if not match:
                errors.append(f'{table}, row {name!r}: encoder cell {encoder_cell!r}')
                continue
            compare(table, name, 'encoder', match.group(1), f"{c['encoder']:,d}", errors)
            if match.group(2) is not None:
                compare(table, name, 'encoder (M)', match.group(2), millions(c['encoder']),
                        errors)
            if table.has('encoder (M)'):
                compare(table, name, 'encoder (M)', table.col(row, 'encoder (M)'),
                        millions(c['encoder']), errors)
            paper = [p for _, _, cfg, opts, p in ABLATIONS if f'{cfg}.py' == config
                     and tuple(sorted(opts.items())) == options]
            if not paper:
                errors.append(f'{table}, row {name!r}: {config} {options} is not an ablation '
                              'of mmpoly/utils/paper_tables.py')
                continue
            for column in ('paper', 'paper (printed)'):
                if table.has(column):
                    readme = table.col(row, column)
                    compare(table, name, column, readme.rstrip('M'), f'{paper[0]:.2f}', errors)
            if table.has('equal at the printed digits'):
                compare(table, name, 'equal at the printed digits',
                        table.col(row, 'equal at the printed digits'),
                        'yes' if printed(c['encoder']) == paper[0] else 'no', errors)
    missing = [(f'{cfg}.py', tuple(sorted(opts.items()))) for _, _, cfg, opts, _ in ABLATIONS
               if (f'{cfg}.py', tuple(sorted(opts.items()))) not in checked]
    errors += [f'ablation {m} of paper_tables.py is in no README table' for m in missing]
    report_errors(errors)


# ------------------------------------------------------------------ checkpoint sizes
def test_checkpoint_size_table_is_the_measured_report():
    export = runpy.run_path(osp.join(REPO, 'tools', 'export_adapter.py'))
    with open(osp.join(BENCH, 'checkpoint_sizes.json')) as f:
        report = json.load(f)
    (table, ) = the(is_size_table)
    rendered = export['size_table'](report).splitlines()
    header, rows = split_row(rendered[0]), [split_row(r) for r in rendered[2:]]
    errors = []
    if table.header != header:
        errors.append(f'{table}: header {table.header} != {header}')
    if [r[0] for r in table.rows] != [r[0] for r in rows]:
        errors.append(f'{table}: configs {[r[0] for r in table.rows]} != the report\'s '
                      f'{[r[0] for r in rows]}')
    by_name = {r[0]: r for r in rows}
    for row in table.rows:
        want = by_name.get(row[0])
        if want is None:
            continue
        for i, column in enumerate(header[1:], start=1):
            compare(table, row[0], f'{column} (#{i})', row[i], want[i], errors)
    report_errors(errors)


def test_checkpoint_size_report_is_not_stale():
    """The report records the parameter counts it was measured for: a config whose count
    changed since needs ``export_adapter.py --measure --json`` again."""
    with open(osp.join(BENCH, 'checkpoint_sizes.json')) as f:
        report = json.load(f)
    stale = []
    for row in report:
        c = counts(osp.relpath(row['config'], 'configs'))
        if (row['encoder_params'], row['all_params']) != (c['encoder'], c['all']):
            stale.append(f"{row['config']}: measured for {row['encoder_params']:,d} / "
                         f"{row['all_params']:,d} trainable (encoder / all), the config now "
                         f"has {c['encoder']:,d} / {c['all']:,d}")
    assert not stale, ('docs/benchmarks/checkpoint_sizes.json is stale (re-run python '
                       'tools/export_adapter.py --measure --json CONFIGS):\n' + '\n'.join(stale))


# ------------------------------------------------------------------ the main job
def metric_key(column):
    """A demo table's metric column -> the metric key ('parts mIoU' -> 'human_parts/mIoU')."""
    task, metric = column.split(' ')
    return f"{'human_parts' if task == 'parts' else task}/{metric}"


def test_demo_run_tables_are_the_stored_runs():
    """The main job's table (main_job.json) and the NYUD-v2 demo's (nyud_demo.json)."""
    found = the(is_demo_runs)
    errors = []
    for table in found:
        source = [f for column, f in DEMO_RUNS.items() if table.has(column)]
        if len(source) != 1:
            errors.append(f'{table}: no stored runs for it (DEMO_RUNS: {DEMO_RUNS})')
            continue
        with open(osp.join(BENCH, source[0])) as f:
            record = json.load(f)
        runs = {r['method']: r for r in record['runs']}
        # tools/measure_demo_runs.py records the full commit of a clean tree
        if not re.fullmatch(r'[0-9a-f]{40}', record.get('commit', '')) or record.get('dirty'):
            errors.append(f"docs/benchmarks/{source[0]}: commit {record.get('commit')!r}, "
                          f"uncommitted changes {record.get('dirty')}: re-run "
                          'tools/measure_demo_runs.py')
        if sorted(plain(r[0]) for r in table.rows) != sorted(runs):
            errors.append(f'{table}: rows {[r[0] for r in table.rows]} != runs {sorted(runs)}')
        metrics = [c for c in table.header[2:] if c != 'Δm']
        for row in table.rows:
            run = runs.get(plain(row[0]))
            if run is None:
                continue
            enc = run['encoder_params']
            compare(table, row[0], 'trainable encoder', table.col(row, 'trainable encoder'),
                    '0' if enc == 0 else f'{millions(enc)}M', errors)
            for column in metrics:
                compare(table, row[0], column, table.col(row, column),
                        f'{run[metric_key(column)]:.2f}', errors)
            if table.has('Δm'):
                compare(table, row[0], 'Δm', table.col(row, 'Δm'), f"{run['delta_m']:.2f} %",
                        errors)
            # the stored run's count is the config's today
            c = counts(osp.relpath(run['config'], 'configs'))
            if c['encoder'] != enc:
                errors.append(f"docs/benchmarks/{source[0]} is stale for {row[0]}: run with "
                              f"{enc:,d} trainable encoder parameters, {run['config']} has "
                              f"{c['encoder']:,d} now")
    assert sorted({f for t in found for c, f in DEMO_RUNS.items() if t.has(c)}) == \
        sorted(DEMO_RUNS.values()), 'a stored demo run has no README table'
    report_errors(errors)
