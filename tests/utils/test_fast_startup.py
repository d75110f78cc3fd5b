"""Two shortcuts of the tools that must not change what they produce: zero-filled building
(``count_params``, ``summarize``, ``benchmark --zero-init``) counts exactly what a random
build counts, and the remembered yapf formatting gives yapf's own text."""
import pytest
import torch
from mmengine.config import Config
from mmengine.config import config as mmengine_config
from yapf.yapflib.yapf_api import FormatCode

from mmpoly.engine import load_config
from mmpoly.utils.param_count import (build_model_without_weights, count_parameters,
                                      zero_filled_init)

CONFIGS = ('configs/demo/polyhistor_swin-tiny_synthetic.py',
           'configs/demo/mtlora_swin-tiny_synthetic.py',
           'configs/demo/ditask_swin-tiny_synthetic.py',
           'configs/demo/free_sinewich_swin-tiny_synthetic.py',
           'configs/demo/tadformer_swin-tiny_synthetic.py',
           'configs/demo/lora_swin-tiny_hrnet_synthetic.py')


@pytest.mark.parametrize('config', CONFIGS)
def test_zero_filled_build_counts_what_a_random_build_counts(config):
    cfg = load_config(config)
    torch.manual_seed(0)
    drawn = build_model_without_weights(cfg)
    drawn.init_weights()
    with zero_filled_init():
        zero = build_model_without_weights(cfg)
        zero.init_weights()
    assert count_parameters(zero) == count_parameters(drawn)
    drawn_state = drawn.state_dict()
    assert {k: v.shape for k, v in zero.state_dict().items()} == \
        {k: v.shape for k, v in drawn_state.items()}
    n_random = 0
    for name, value in zero.state_dict().items():
        # what the initialisers drew is zero; constants (LayerNorm's ones, buffers) stay
        if not torch.equal(value, drawn_state[name]):
            assert not value.is_floating_point() or not value.any(), name
            n_random += 1
    assert n_random > 10  # the random draws were there to be replaced


def test_zero_filled_init_gives_the_drawers_back_even_after_an_error():
    with pytest.raises(RuntimeError):
        with zero_filled_init():
            assert not torch.empty(100).uniform_().any()
            assert not torch.empty(100).normal_().any()
            raise RuntimeError('build failed')
    assert torch.empty(100).uniform_().unique().numel() > 50
    assert torch.empty(100).normal_().unique().numel() > 50
    assert torch.full((3,), 0.5).erfinv_().ne(0.5).all()


def test_config_text_is_yapfs_and_formatted_once():
    """mmengine reads ``pretty_text`` four times a run; the remembered formatting returns
    the very object of the first call, equal to yapf's output."""
    import mmpoly  # noqa: F401  (installs the memo)
    cfg = Config.fromfile('configs/polyhistor_lite_swin-t.py')
    first = cfg.pretty_text
    raw_cfg = Config.fromfile('configs/polyhistor_lite_swin-t.py', format_python_code=False)
    style = dict(based_on_style='pep8', blank_line_before_nested_class_or_def=True,
                 split_before_expression_after_opening_paren=True)
    assert first == FormatCode(raw_cfg.pretty_text, style_config=style)[0]
    call = mmengine_config.FormatCode
    assert call(raw_cfg.pretty_text, style_config=style) is \
        call(raw_cfg.pretty_text, style_config=style)
    cfg.model.backbone.tuner.rank = 3  # a changed config is formatted anew
    assert cfg.pretty_text != first and 'rank=3' in cfg.pretty_text
