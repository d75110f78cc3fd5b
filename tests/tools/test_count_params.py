"""tools/count_params.py on every config, against the paper's Tables 1, 2 and 5: the exact
integers of the paper's structure (method.md section 8) and the printed figures."""
import json
import re

from mmpoly.utils.paper_tables import ABLATIONS, TABLE1, TRUNCATED_IN_PAPER, printed
from ..models.tuners.test_training_all_tuners import PAPER_ROWS
from .conftest import run_tool

#: the exact Swin-T encoder counts of the paper's structure (method.md sections 7 and 8)
EXACT = {
    'single_task_ft': 110_071_272, 'decoder_ft': 0, 'multi_task_ft': 27_517_818,
    'bitfit': 299_112, 'relative_bias': 93_288, 'vpt_shallow': 19_200, 'vpt_deep': 883_200,
    'phm': 593_264, 'compacter': 229_888, 'compacter_pp': 114_848, 'lora': 317_952,
    'adapter': 8_688_000, 'low_rank_adapter': 335_616, 'shared_adapter': 2_198_496,
    'hyperformer': 72_772_304, 'polyhistor': 6_410_684, 'polyhistor_lite': 413_552,
}
#: Table 5 (Polyhistor's rank) and Table 2 (Polyhistor-Lite's k), same order as ABLATIONS
EXACT_ABLATIONS = (2_379_644, 4_076_924, 6_410_684, 11_078_204, 225_248, 288_016, 413_552)
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
        setting = re.search(r'_((?:swin|pvt|moby|dinov2|convnextv2)[^_]*(?:_.*)?)$', name).group(1)
        same_setting = by_name['decoder_ft_' + setting]  # backbone (and dataset)
        assert decoders == same_setting['all'], name  # the decoders are the same in all rows
        if setting.endswith('_nyud'):  # four tasks too: the encoder is PASCAL's
            assert row['encoder'] == by_name[name[:-len('_nyud')]]['encoder'], name
    nyud = {name for name in by_name if name.endswith('_swin-t_nyud')}
    assert nyud == {f'{name}_nyud' for name in by_name if name.endswith('_swin-t')}
    assert by_name['decoder_ft_swin-t']['all'] == 2_553_120  # paper: 2.55M
    for method, exact in EXACT.items():
        assert by_name[f'{method}_swin-t']['encoder'] == exact, method
    # Swin-B doubles nothing but widths: MoBY-T has Swin-T's counts, Swin-B in22k Swin-B's
    for method in ('adapter', 'polyhistor_lite', 'lora'):
        assert by_name[f'{method}_moby-t']['encoder'] == by_name[f'{method}_swin-t']['encoder']
        assert by_name[f'{method}_swin-b-in22k']['encoder'] == \
            by_name[f'{method}_swin-b']['encoder']


def test_paper_tables_to_the_printed_digit(python):
    """``--paper``: every row of Tables 1, 2 and 5 equals the paper's printed figure."""
    rows = json.loads(run_tool(python, 'tools/count_params.py', '--paper', '--json').stdout)
    assert [r['config'] for r in rows['table1']] == [f'{m}_swin-t.py' for m in TABLE1]
    for r, (method, (_, paper_encoder, _)) in zip(rows['table1'], TABLE1.items()):
        assert r['paper_encoder'] == paper_encoder
        if method in TRUNCATED_IN_PAPER:  # printed truncated: 27.5178 -> 27.51
            assert r['equal'] == 'truncated in the paper'
            assert int(r['encoder'] / 1e4) / 100 == paper_encoder
        else:
            assert r['equal'] == 'yes', r
            assert printed(r['encoder']) == paper_encoder, r
        if method in EXACT:
            assert r['encoder'] == EXACT[method], method
        assert r['all'] - r['encoder'] == 2_553_120  # the decoders, the same in every row
    assert len(rows['ablations']) == len(ABLATIONS) == len(EXACT_ABLATIONS)
    for r, (_, _, _, options, paper_encoder), exact in zip(rows['ablations'], ABLATIONS,
                                                           EXACT_ABLATIONS):
        assert r['options'] == options
        assert (r['encoder'], r['equal']) == (exact, 'yes'), r
        assert printed(r['encoder']) == paper_encoder
