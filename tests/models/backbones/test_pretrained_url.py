"""Pretrained backbones named by URL (as the real configs name them), offline: a local HTTP
server serves a narrow Swin checkpoint in the official release's layout, ``TORCH_HOME`` is a
temporary folder. Oracles: the served file's bytes and sha256, the source weights."""
import functools
import hashlib
import http.server
import os.path as osp
import socket
import threading

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmpoly.checkpoint.adapter import check_backbones, make_adapter_checkpoint
from mmpoly.utils.param_count import build_model_without_weights
from .test_swin_checkpoints import to_official

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO = osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_synthetic.py')
NAME = 'swin_narrow_patch4_window7_224.pth'


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(folder served, base URL, stop()) of a local file server."""
    folder = tmp_path / 'release'
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05),
                     daemon=True).start()

    def stop():
        if server.socket.fileno() != -1:
            server.shutdown()
            server.server_close()

    yield folder, f'http://127.0.0.1:{server.server_address[1]}', stop
    stop()


def demo_config(checkpoint=None):
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO)
    if checkpoint is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    return cfg


def official_checkpoint(weights):
    """mmseg-named Swin weights -> the official release's file (``model`` key, official
    names, patch merging in official channel order, a classifier head)."""
    official = to_official(weights)
    for k in list(official):
        if '.downsample.reduction.' in k:
            out_c, in_c = official[k].shape
            official[k] = official[k].reshape(out_c, in_c // 4, 4)[:, :, [0, 2, 1, 3]] \
                .transpose(1, 2).reshape(out_c, in_c)
        elif '.downsample.norm.' in k:
            official[k] = official[k].reshape(-1, 4)[:, [0, 2, 1, 3]].t().reshape(-1)
    official['head.weight'] = torch.zeros(10, 8)
    return {'model': official}


def test_url_checkpoint_is_cached_loaded_and_identified_by_its_sha256(tmp_path, served,
                                                                      monkeypatch):
    folder, base, stop = served
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    torch.manual_seed(0)
    source = build_model_without_weights(demo_config()).backbone
    with torch.no_grad():  # values a wrong conversion cannot keep
        for p in source.parameters():
            p.copy_(torch.randn_like(p))
    weights = {k: v for k, v in source.state_dict().items()
               if not k.startswith('tuner.') and 'relative_position_index' not in k}
    torch.save(official_checkpoint(weights), folder / NAME)
    served_bytes = (folder / NAME).read_bytes()
    url = f'{base}/{NAME}'
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / NAME

    model = build_model_without_weights(demo_config(url))
    assert not cache.exists()  # building reads nothing (count_params, benchmark)
    model.backbone.init_weights()
    assert cache.read_bytes() == served_bytes
    state = model.backbone.state_dict()
    for k, v in weights.items():
        assert torch.equal(state[k], v), k

    # the adapter-only checkpoint records the URL and the sha256 of the file read
    ckpt = make_adapter_checkpoint(model, dict(state_dict=model.state_dict()))
    assert ckpt['adapter']['backbones'] == [
        dict(prefix='backbone', path=url, sha256=hashlib.sha256(served_bytes).hexdigest())]

    # offline now: the cache serves both the identity check and the weights
    stop()
    again = build_model_without_weights(demo_config(url))
    assert check_backbones(again, ckpt) == [(again.backbone, url)]
    again.backbone.init_weights()
    assert torch.equal(again.backbone.state_dict()['patch_embed.projection.weight'],
                       weights['patch_embed.projection.weight'])
    # the local override with the same file is the same backbone (the content decides)
    local = tmp_path / 'pretrained' / NAME
    local.parent.mkdir()
    local.write_bytes(served_bytes)
    override = build_model_without_weights(demo_config(str(local)))
    assert check_backbones(override, ckpt) == [(override.backbone, str(local))]


def test_unreachable_url_says_which_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(('127.0.0.1', 0))
        url = f'http://127.0.0.1:{s.getsockname()[1]}/release/{NAME}'
    model = build_model_without_weights(demo_config(url))
    cache = osp.join(str(tmp_path / 'torch_home'), 'hub', 'checkpoints', NAME)
    with pytest.raises(FileNotFoundError) as error:
        model.backbone.init_weights()
    message = str(error.value)
    assert url in message and cache in message
    assert 'model.backbone.init_cfg.checkpoint=' in message
    assert not osp.exists(cache)
