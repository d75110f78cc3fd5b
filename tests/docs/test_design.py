"""docs/design.md stays true: every path it names exists, and it names every package of
mmpoly and every backbone and hook a new contributor meets."""
import glob
import os.path as osp
import re

from mmpoly.models.tuners import BaseTuner

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEXT = open(osp.join(REPO, 'docs', 'design.md')).read()


def test_every_named_path_exists():
    paths = [p for p in re.findall(r'`([\w./-]+\.(?:py|md)|mmpoly/[\w/]*)`', TEXT)
             if not p.startswith('../')]
    assert len(paths) > 15
    missing = [p for p in paths if not osp.exists(osp.join(REPO, p.rstrip('/')))]
    assert not missing, missing


def test_every_package_and_hook_is_named():
    packages = sorted(osp.basename(osp.dirname(p)) for p in
                      glob.glob(osp.join(REPO, 'mmpoly', '*', '__init__.py')))
    assert [p for p in packages if f'`mmpoly/{p}/`' not in TEXT] == []
    hooks = ['layer_prompts', 'linear', 'attn_bias', 'attn_branch', 'mlp_branch',
             'before_forward', 'fork_layers']
    assert all(hasattr(BaseTuner, h) for h in hooks)
    assert [h for h in hooks if h not in TEXT] == []
    for name in ('_forward_once', '_parts', '_attention', 'provides', 'LayerInfo'):
        assert name in TEXT, name
