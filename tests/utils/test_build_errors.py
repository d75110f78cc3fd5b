"""Config mistakes give errors that name the key and suggest what was meant."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401
from mmseg.registry import MODELS
from mmpoly.engine import explain_build_errors
from mmpoly.engine.build_errors import explain
from ..tools.conftest import REPO, run_tool

DEMO = 'configs/demo/decoder_ft_swin-tiny_synthetic.py'


def build_with(**backbone):
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO)
    cfg.model.backbone.update(backbone)
    with explain_build_errors():
        MODELS.build(cfg.model)


def test_unknown_type_lists_close_registered_names():
    with pytest.raises(KeyError) as info:
        build_with(tuner=dict(type='PolyhistorLight'))
    message = str(info.value)
    assert 'PolyhistorLight is not in the' in message
    assert 'PolyhistorLite' in message.split('Did you mean')[1]


def test_unknown_key_lists_accepted_arguments():
    with pytest.raises(TypeError) as info:
        build_with(task_batchnig='loop')
    message = str(info.value)
    assert "unexpected keyword argument 'task_batchnig'" in message
    assert "did you mean ['task_batching']" in message


def test_explain_leaves_other_messages_alone():
    assert explain('something else') == 'something else'


def test_train_tool_reports_a_misspelt_type(python, tmp_path):
    with pytest.raises(AssertionError) as info:
        run_tool(python, 'tools/train.py', DEMO, '--work-dir', str(tmp_path), '--cfg-options',
                 'model.backbone.tuner.type=FullFinetuning', timeout=120)
    assert 'FullFineTuning' in str(info.value).split('Did you mean')[1]


def test_missing_config_file_is_named(python):
    with pytest.raises(AssertionError, match='configs/nope.py not found'):
        run_tool(python, 'tools/train.py', 'configs/nope.py', timeout=60)


def test_custom_imports_given_as_an_option_are_imported(tmp_path, monkeypatch):
    """``--cfg-options custom_imports.imports=[...]`` imports what it names (Config.fromfile
    imported only the file's own custom_imports, so an option's module was silently ignored
    and its types were 'not in the registry')."""
    import sys
    from mmpoly.engine.config import load_config
    (tmp_path / 'my_option_module.py').write_text('IMPORTED = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'my_option_module', raising=False)
    config = osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_synthetic.py')
    load_config(config, {'custom_imports.imports': ['mmpoly', 'my_option_module']})
    assert sys.modules['my_option_module'].IMPORTED
    with pytest.raises(ImportError, match='no_such_option_module'):
        load_config(config, {'custom_imports.imports': ['mmpoly', 'no_such_option_module']})
