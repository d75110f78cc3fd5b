"""tools/count_params.py on every config, against the paper's Table 1 where the count follows
from the text (method.md section 7)."""
import json

from ..models.tuners.test_training_all_tuners import PAPER_ROWS
from .conftest import run_tool

# paper Table 1, trainable encoder parameters (M), rows whose count follows from the text
PAPER_EXACT = {
    'decoder_ft': 0.0, 'single_task_ft': 110.07, 'multi_task_ft': 27.51, 'relative_bias': 0.09,
    'vpt_shallow': 0.02, 'vpt_deep': 0.88, 'adapter': 8.69, 'shared_adapter': 2.20,
    'bitfit': 0.30,
}
BACKBONES = ('swin-t', 'swin-b', 'swin-b-in22k', 'moby-t', 'pvt-s')


def test_count_params_all_configs(python):
    rows = json.loads(run_tool(python, 'tools/count_params.py', '--all', '--json').stdout)
    by_name = {row['config'][len('configs/'):-len('.py')]: row for row in rows}
    # every method on every backbone, except relative bias on PVT (no tables there)
    expected = {f'{m}_{b}' for m in PAPER_ROWS for b in BACKBONES} - {'relative_bias_pvt-s'}
    assert expected <= set(by_name)
    assert 'relative_bias_pvt-s' not in by_name
    for name, row in by_name.items():
        assert 0 <= row['encoder'] <= row['all'] <= row['total'], name
        decoders = row['all'] - row['encoder']
        same_backbone = by_name['decoder_ft_' + name.split('_')[-1]]
        assert decoders == same_backbone['all'], name  # the decoders are the same in all rows
    assert by_name['decoder_ft_swin-t']['all'] == 2_553_120  # paper: 2.55M
    for method, paper in PAPER_EXACT.items():
        ours = by_name[f'{method}_swin-t']['encoder'] / 1e6
        # the paper rounds to 2 decimals: within 3% or within that rounding
        assert abs(ours - paper) <= max(0.03 * paper, 0.005), (method, ours, paper)
    # Swin-B doubles nothing but widths: MoBY-T has Swin-T's counts, Swin-B in22k Swin-B's
    for method in ('adapter', 'polyhistor_lite', 'lora'):
        assert by_name[f'{method}_moby-t']['encoder'] == by_name[f'{method}_swin-t']['encoder']
        assert by_name[f'{method}_swin-b-in22k']['encoder'] == \
            by_name[f'{method}_swin-b']['encoder']


def test_count_params_json_and_overrides(python):
    def count(*options):
        out = run_tool(python, 'tools/count_params.py', 'configs/polyhistor_swin-t.py',
                       '--json', *options).stdout
        return json.loads(out)['encoder']
    default, rank1 = count(), count('--cfg-options', 'model.backbone.tuner.rank=1')
    half = count('--cfg-options', 'model.backbone.tuner.rank_ratio=0.5')
    eighth = count('--cfg-options', 'model.backbone.tuner.rank_ratio=0.125')
    assert rank1 < eighth < default < half
    # the rank-dependent part is linear in r (paper Table 5): n/8 -> n/4 -> n/2 doubles
    assert abs((half - default) / (default - eighth) - 2) < 0.1
