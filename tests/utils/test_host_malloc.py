"""keep_freed_memory: freed 64 MiB tensors stay resident and serve the next one (glibc's
default unmaps them); tools/train.py and tools/test.py set it up unless the config says not.
Each case runs in a fresh interpreter: the settings are process-wide."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmpoly.engine.runtime import setup_runtime
from mmpoly.utils.host_malloc import glibc

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
pytestmark = pytest.mark.skipif(glibc() is None, reason='needs glibc')

PROBE = r'''
import json, re, sys
sys.path.insert(0, {repo!r})
import torch

def rss_mb():
    with open('/proc/self/status') as f:
        return int(re.search(r'VmRSS:\s+(\d+) kB', f.read()).group(1)) / 1024

{setup}
before = rss_mb()
after = []
for _ in range(6):
    t = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page touched
    del t
    after.append(rss_mb())
# kept: resident after the first free; growth: over the last three steps (a 2 MiB-aligned
# block may not fit the first freed one, so the heap settles within a few)
print(json.dumps(dict(kept=after[0] - before, growth=after[-1] - after[2])))
'''


def run_probe(setup: str) -> dict:
    out = subprocess.run([sys.executable, '-c', PROBE.format(repo=REPO, setup=setup)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_glibc_default_gives_a_large_block_back():
    assert run_probe('')['kept'] < 8  # unmapped on free: the next one is faulted in again


def test_kept_memory_serves_the_next_step():
    r = run_probe('from mmpoly.utils.host_malloc import keep_freed_memory\n'
                  'assert keep_freed_memory()')
    assert r['kept'] > 56 and r['growth'] < 8  # resident after free, then reused


@pytest.mark.parametrize('env,kept', [({}, True), (dict(keep_freed_memory=True), True),
                                      (dict(keep_freed_memory=False), False)])
def test_runs_set_it_up_unless_the_config_says_not(env, kept):
    setup = ('from mmengine.config import Config\n'
             'from mmpoly.engine.runtime import setup_runtime\n'
             f'setup_runtime(Config(dict(env_cfg={env!r})))')
    r = run_probe(setup)
    assert (r['kept'] > 56) == kept and r['growth'] < 8


def test_a_wrong_type_names_the_key():
    with pytest.raises(TypeError, match='env_cfg.keep_freed_memory'):
        setup_runtime(Config(dict(env_cfg=dict(keep_freed_memory='yes'))))
