"""``import mmpoly`` changes torch and mmengine in one module (``mmpoly/patches.py``): each
change is in force after the import, and no other module patches at import."""
import ast
import glob
import os.path as osp

import torch
from mmengine.config import config as mmengine_config
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

import mmpoly
from mmpoly.checkpoint.atomic import load_local_checkpoint

PATCHES = ('allow_mmengine_checkpoints', 'install_named_loader', 'remember_formatted_configs')


def test_every_patch_is_in_force_after_import():
    assert HistoryBuffer in torch.serialization.get_safe_globals()
    assert CheckpointLoader._schemes[''] is load_local_checkpoint
    assert getattr(mmengine_config.FormatCode, 'remembers', False)


def test_apply_is_idempotent():
    before = mmengine_config.FormatCode
    mmpoly.patches.apply()
    assert mmengine_config.FormatCode is before  # not wrapped twice
    assert CheckpointLoader._schemes[''] is load_local_checkpoint


def test_only_patches_py_calls_the_patches_at_import():
    """A module-level call of a patch anywhere but ``patches.apply`` is a second place."""
    root = osp.dirname(mmpoly.__file__)
    offenders = []
    for path in glob.glob(osp.join(root, '**', '*.py'), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:  # module level only: definitions may call them freely
            for call in ast.walk(node) if isinstance(node, ast.Expr) else ():
                if isinstance(call, ast.Call):
                    name = getattr(call.func, 'id', getattr(call.func, 'attr', ''))
                    if name in PATCHES:
                        offenders.append(f'{osp.relpath(path, root)}:{node.lineno} {name}')
    assert not offenders, offenders
