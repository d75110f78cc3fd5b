"""tools/summarize.py and tools/plot_tradeoff.py on two work dirs laid out as mmengine and
tools/test.py leave them: one with test_metrics.json, one with validation metrics only."""
import csv
import io
import json
import os
import os.path as osp
import runpy

import pytest
from mmengine.config import Config

from tests.pascal import pascal_delta_m
from mmpoly.utils.param_count import build_model_without_weights, count_parameters
from .conftest import REPO, run_tool

MT = 'configs/demo/multi_task_ft_swin-tiny_synthetic.py'
DEC = 'configs/demo/decoder_ft_swin-tiny_synthetic.py'
TEST_METRICS = {'semseg/mIoU': 41.23456789, 'human_parts/mIoU': 20.5, 'sal/mIoU': 55.125,
                'sal/maxF': 66.0, 'normals/mErr': 30.0625, 'normals/median': 28.0,
                'delta_m': -35.4321}
VAL_METRICS = {'semseg/mIoU': 12.345, 'human_parts/mIoU': 9.875, 'sal/mIoU': 40.5,
               'sal/maxF': 50.0, 'normals/mErr': 44.4, 'normals/median': 40.0,
               'delta_m': -60.25}


def make_work_dir(root, config, test_metrics=None, val_metrics=None):
    os.makedirs(root)
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.dump(osp.join(root, osp.basename(config)))  # what the Runner dumps
    if test_metrics is not None:
        with open(osp.join(root, 'test_metrics.json'), 'w') as f:
            json.dump(test_metrics, f)
    if val_metrics is None:
        return root
    vis = osp.join(root, '20250101_000000', 'vis_data')
    os.makedirs(vis)
    with open(osp.join(vis, 'scalars.json'), 'w') as f:
        # mmengine's format: training lines, then the validation line(s)
        f.write(json.dumps({'lr': 0.001, 'loss': 3.0, 'epoch': 1, 'iter': 8, 'step': 8}) + '\n')
        f.write(json.dumps({'semseg/mIoU': 1.0, 'delta_m': -99.0, 'step': 1}) + '\n')
        f.write(json.dumps({'lr': 0.0005, 'loss': 2.0, 'epoch': 2, 'iter': 16, 'step': 16})
                + '\n')
        f.write(json.dumps(dict(val_metrics, data_time=0.1, time=0.2, step=2)) + '\n')
    return root


@pytest.fixture
def runs(tmp_path):
    return (make_work_dir(str(tmp_path / 'mt_run'), MT, test_metrics=TEST_METRICS),
            make_work_dir(str(tmp_path / 'dec_run'), DEC, val_metrics=VAL_METRICS))


def expected_counts(config):
    return count_parameters(
        build_model_without_weights(Config.fromfile(osp.join(REPO, config))))


def test_summarize_prints_the_runs_numbers(runs, tmp_path):
    out = tmp_path / 'table.md'
    proc = run_tool('python', 'tools/summarize.py', *runs, '--out', str(out))
    lines = [line for line in proc.stdout.splitlines() if line.startswith('| ')]
    assert open(out).read() == proc.stdout
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    rows = {r[0]: dict(zip(header, r)) for r in
            ([c.strip() for c in line.strip('|').split('|')] for line in lines[1:])}
    mt, dec = rows['mt_run'], rows['dec_run']
    assert mt['method'] == 'Multi-task full fine-tuning'
    assert dec['method'] == 'Fine-tuning decoders'
    assert mt['backbone'] == 'Swin(C=32, depths=2-2-2-2) [random init]'
    for row, metrics, config in ((mt, TEST_METRICS, MT), (dec, VAL_METRICS, DEC)):
        assert float(row['semseg mIoU']) == round(metrics['semseg/mIoU'], 2)
        assert float(row['parts mIoU']) == round(metrics['human_parts/mIoU'], 2)
        assert float(row['sal mIoU']) == round(metrics['sal/mIoU'], 2)
        assert float(row['normals mErr']) == round(metrics['normals/mErr'], 2)
        assert float(row['Δm (%)']) == round(metrics['delta_m'], 2)
        counts = expected_counts(config)
        assert float(row['encoder (M)']) == round(counts['encoder'] / 1e6, 2)
        assert float(row['all (M)']) == round(counts['all'] / 1e6, 2)
    assert float(dec['encoder (M)']) == 0.0


def test_summarize_csv_keeps_every_digit(runs, capsys):
    tool = runpy.run_path(osp.join(REPO, 'tools', 'summarize.py'))
    tool['main']([*runs, '--format', 'csv'])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r['run'] for r in rows] == ['mt_run', 'dec_run']
    for row, metrics, config in zip(rows, (TEST_METRICS, VAL_METRICS), (MT, DEC)):
        for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'normals/mErr',
                    'delta_m'):
            assert float(row[key]) == metrics[key]
        counts = expected_counts(config)
        assert int(row['encoder_params']) == counts['encoder']
        assert int(row['all_params']) == counts['all']


def test_delta_m_is_computed_when_the_metrics_lack_it(tmp_path):
    metrics = {k: v for k, v in TEST_METRICS.items() if k != 'delta_m'}
    run = make_work_dir(str(tmp_path / 'run'), MT, test_metrics=metrics)
    tool = runpy.run_path(osp.join(REPO, 'tools', 'summarize.py'))
    row = tool['load_run'](run)
    reference = Config.fromfile(osp.join(REPO, MT)).test_evaluator.reference
    assert row['delta_m'] == pascal_delta_m(metrics, reference)


def test_summarize_names_a_work_dir_without_metrics(tmp_path, capsys):
    run = make_work_dir(str(tmp_path / 'empty'), MT)
    tool = runpy.run_path(osp.join(REPO, 'tools', 'summarize.py'))
    with pytest.raises(SystemExit):
        tool['main']([run])
    assert f'{run}: no test_metrics.json' in capsys.readouterr().err


def test_plot_tradeoff_plots_the_runs_values(runs, tmp_path):
    tool = runpy.run_path(osp.join(REPO, 'tools', 'plot_tradeoff.py'))
    points = tool['tradeoff_points'](runs)
    assert [(p['params_m'], p['delta_m']) for p in points] == [
        (expected_counts(MT)['encoder'] / 1e6, TEST_METRICS['delta_m']),
        (0.0, VAL_METRICS['delta_m'])]
    with_paper = tool['tradeoff_points'](runs, paper=True)
    paper = {p['label']: (p['params_m'], p['delta_m']) for p in with_paper
             if p['source'] == 'paper'}
    assert len(paper) == 17 and paper['Polyhistor'] == (6.41, 2.34)
    out = tmp_path / 'fig.png'
    tool['main']([*runs, '--out', str(out), '--paper'])
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    from PIL import Image
    assert Image.open(out).size == (800, 550)


NYUD = 'configs/demo/decoder_ft_swin-tiny_synthetic_nyud.py'
NYUD_METRICS = {'semseg/mIoU': 30.5, 'depth/rmse': 0.6125, 'depth/log_rmse': 0.25,
                'normals/mErr': 25.25, 'edge/odsF': 70.75}


def test_runs_of_two_datasets_share_one_table(tmp_path, capsys):
    """Each run's columns are its own tasks' main metrics (by kind): a NYUD-v2 run has depth
    rmse and edge odsF, a PASCAL-Context run parts / sal mIoU; '-' where a run lacks one."""
    pascal = make_work_dir(str(tmp_path / 'pascal'), MT, test_metrics=TEST_METRICS)
    nyud = make_work_dir(str(tmp_path / 'nyud'), NYUD, test_metrics=NYUD_METRICS)
    tool = runpy.run_path(osp.join(REPO, 'tools', 'summarize.py'))
    tool['main']([pascal, nyud])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    assert header[5:] == ['semseg mIoU', 'parts mIoU', 'sal mIoU', 'normals mErr',
                          'depth rmse', 'edge odsF', 'Δm (%)']
    rows = {r[0]: dict(zip(header, r)) for r in
            ([c.strip() for c in line.strip('|').split('|')] for line in lines[1:])}
    assert rows['nyud']['depth rmse'] == '0.61' and rows['nyud']['edge odsF'] == '70.75'
    assert rows['nyud']['semseg mIoU'] == '30.50' and rows['nyud']['parts mIoU'] == '-'
    assert rows['pascal']['depth rmse'] == '-' and rows['pascal']['sal mIoU'] == '55.12'
    # NYUD-v2 has no single-task references yet: no Δm (not one against PASCAL's numbers)
    assert rows['nyud']['Δm (%)'] == '-' and rows['pascal']['Δm (%)'] == '-35.43'
