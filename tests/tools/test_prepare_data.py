"""tools/prepare_data.py offline: a local HTTP server (Range requests, a Google-Drive-like
confirm page, a connection dropped once) serves small archives of a synthetic PASCAL_MT and
a hand-written NYUD_MT tree; the oracles are the archive's own bytes and sha256, the source
trees, and the files the tests remove."""
import hashlib
import http.server
import io
import os
import os.path as osp
import re
import runpy
import sys
import tarfile
import threading
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from mmpoly.datasets import PascalContextMTDataset, make_synthetic_pascal_mt
from mmpoly.utils.prepare_data import (GDRIVE_URL_ENV, NYUD_MT_LAYOUT, RELEASES, PrepareError,
                                     extract, main)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class ReleaseServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) at ``/<name>`` with ``Range: bytes=N-`` support, and
    Drive's two steps: ``/uc?id=..`` answers an HTML confirm page whose GET form leads to
    ``/download?id=..&confirm=t``. ``drop_after``: the next file reply sends that many bytes
    and closes the connection (once). ``requests`` logs (path, Range header)."""

    def __init__(self, files, drop_after=None, drive_page='form'):
        self.files, self.drop_after, self.requests = files, drop_after, []
        self.drive_page = drive_page
        super().__init__(('127.0.0.1', 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs=dict(poll_interval=0.05),
                         daemon=True).start()

    def url(self, path):
        return f'http://127.0.0.1:{self.server_address[1]}{path}'


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get('Range')))
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == '/uc' and query.get('confirm') == 'TOKEN42':
            name = query['id']  # the older page's second step: the file itself
        elif url.path == '/uc' and server.drive_page == 'cookie':
            page = b'<html><title>Google Drive</title>Download anyway?</html>'  # cookie only
            self.send_response(200)
            self.send_header('Set-Cookie', 'download_warning_1234=TOKEN42; Path=/')
            self.send_header('Content-Type', 'text/html')
            self.send_header('Content-Length', str(len(page)))
            self.end_headers()
            return self.wfile.write(page)
        elif url.path == '/uc':
            page = (f'<html><head><title>Google Drive - Virus scan warning</title></head><body>'
                    f'<form id="download-form" action="/download" method="get">'
                    f'<input type="hidden" name="id" value="{query["id"]}">'
                    f'<input type="hidden" name="export" value="download">'
                    f'<input type="hidden" name="confirm" value="t">'
                    f'<input type="submit" value="Download anyway"></form></body></html>')
            return self._reply(200, page.encode(), 'text/html; charset=utf-8')
        elif url.path == '/download' and query.get('confirm') == 't':
            name = query.get('id')
        else:
            name = url.path.lstrip('/')
        if name not in server.files:
            return self._reply(404, b'not found', 'text/plain')
        data = server.files[name]
        match = re.match(r'bytes=(\d+)-$', self.headers.get('Range') or '')
        start = int(match.group(1)) if match else 0
        if start >= len(data):
            self.send_response(416)
            self.send_header('Content-Range', f'bytes */{len(data)}')
            self.send_header('Content-Length', '0')
            return self.end_headers()
        self.send_response(206 if match else 200)
        if match:
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        if server.drop_after is not None:
            self.wfile.write(data[start:start + server.drop_after])
            server.drop_after = None
            return  # HTTP/1.0: the connection closes, short of Content-Length
        self.wfile.write(data[start:])

    def _reply(self, code, body, content_type):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve():
    servers = []

    def start(files, drop_after=None, drive_page='form'):
        servers.append(ReleaseServer(files, drop_after, drive_page))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def tgz(src_root, folder):
    """A .tgz of ``src_root/folder`` holding ``folder/...``, as the releases do."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        tar.add(osp.join(src_root, folder), arcname=folder)
    return buf.getvalue()


def tree(root):
    """relative path -> bytes of every file under ``root``."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def table(text):
    """(task, split) -> (expected, found, missing) of the printed table."""
    rows = re.findall(r'^(\w+)\s+(train|val)\s+(\d+)\s+(\d+)\s+(\d+)$', text, re.M)
    return {(t, s): tuple(map(int, n)) for t, s, *n in rows}


@pytest.fixture(scope='module')
def pascal_src(tmp_path_factory):
    src = str(tmp_path_factory.mktemp('src'))
    ids = make_synthetic_pascal_mt(osp.join(src, 'PASCAL_MT'), num_train=5, num_val=3,
                                   image_size=(32, 40), seed=1)
    return src, ids, tgz(src, 'PASCAL_MT')


def test_pascal_download_resumes_after_a_dropped_connection(tmp_path, serve, capsys,
                                                            pascal_src):
    src, ids, archive = pascal_src
    digest = hashlib.sha256(archive).hexdigest()
    drop = len(archive) // 3
    server = serve({'PASCAL_MT.tgz': archive}, drop_after=drop)
    root = str(tmp_path / 'data')
    assert main(['pascal_mt', '--root', root, '--url', server.url('/PASCAL_MT.tgz'),
                 '--sha256', digest, '--expect', 'train=5', 'val=3', '--retry-wait', '0']) == 0
    out, err = capsys.readouterr()

    # one request dropped after `drop` bytes, then one that asked for the rest
    assert server.requests == [('/PASCAL_MT.tgz', None), ('/PASCAL_MT.tgz', f'bytes={drop}-')]
    with open(osp.join(root, 'PASCAL_MT.tgz'), 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    assert not osp.exists(osp.join(root, 'PASCAL_MT.tgz.part'))
    assert 'connection lost' in err and re.search(r'\d B/s|iB/s', err)  # progress with rate
    assert tree(osp.join(root, 'PASCAL_MT')) == tree(osp.join(src, 'PASCAL_MT'))
    # every task the dataset class reads, for every image id of both splits
    tasks = ['image', *PascalContextMTDataset.METAINFO['task_specs']]
    expected = {(t, s): (len(ids[s]), len(ids[s]), 0) for t in tasks for s in ('train', 'val')}
    assert table(out) == expected


def test_a_later_run_resumes_the_part_file(tmp_path, serve, capsys, pascal_src):
    _, _, archive = pascal_src
    server = serve({'PASCAL_MT.tgz': archive}, drop_after=1000)
    root = tmp_path / 'data'
    args = ['pascal_mt', '--root', str(root), '--url', server.url('/PASCAL_MT.tgz'),
            '--expect', 'train=5', 'val=3']
    assert main(args + ['--retries', '0']) == 1
    assert 'run the command again to resume' in capsys.readouterr().err
    assert (root / 'PASCAL_MT.tgz.part').read_bytes() == archive[:1000]
    assert not (root / 'PASCAL_MT').exists()
    assert main(args) == 0
    assert server.requests[1] == ('/PASCAL_MT.tgz', 'bytes=1000-')
    assert (root / 'PASCAL_MT.tgz').read_bytes() == archive


def test_a_whole_part_file_is_not_downloaded_again(tmp_path, serve, pascal_src):
    _, _, archive = pascal_src
    server = serve({'PASCAL_MT.tgz': archive})
    root = tmp_path / 'data'
    root.mkdir()
    (root / 'PASCAL_MT.tgz.part').write_bytes(archive)  # a run that died before the rename
    assert main(['pascal_mt', '--root', str(root), '--url', server.url('/PASCAL_MT.tgz'),
                 '--expect', 'train=5', 'val=3']) == 0
    assert server.requests == [('/PASCAL_MT.tgz', f'bytes={len(archive)}-')]  # 416: whole
    assert (root / 'PASCAL_MT.tgz').read_bytes() == archive


def test_checksum_mismatch_keeps_the_file_aside_and_extracts_nothing(tmp_path, serve,
                                                                      capsys, pascal_src):
    _, _, archive = pascal_src
    server = serve({'PASCAL_MT.tgz': archive})
    root = str(tmp_path / 'data')
    assert main(['pascal_mt', '--root', root, '--url', server.url('/PASCAL_MT.tgz'),
                 '--sha256', '0' * 64]) == 1
    err = capsys.readouterr().err
    assert 'sha256' in err and '0' * 64 in err and 'PASCAL_MT.tgz.bad' in err
    assert sorted(os.listdir(root)) == ['PASCAL_MT.tgz.bad']  # no tree, no temporary folder
    with open(osp.join(root, 'PASCAL_MT.tgz.bad'), 'rb') as f:
        assert f.read() == archive


def test_check_fails_naming_a_missing_file(tmp_path, pascal_src, monkeypatch, capsys):
    src, ids, _ = pascal_src
    root = tmp_path / 'data'
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(pascal_src[2])) as tar:
        tar.extractall(root, filter='data')
    gone = osp.join(str(root), 'PASCAL_MT', 'sal_distill', f'{ids["val"][1]}.png')
    os.remove(gone)
    # the command line tool itself, as a user runs it
    monkeypatch.setattr(sys, 'argv', ['prepare_data.py', 'pascal_mt', '--root', str(root),
                                      '--check', '--expect', 'train=5', 'val=3'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(osp.join(REPO, 'tools', 'prepare_data.py'), run_name='__main__')
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    assert f'1 files missing, e.g. sal label not found: {gone}' in err
    rows = table(out)
    assert rows[('sal', 'val')] == (3, 2, 1)
    assert rows[('sal', 'train')] == (5, 5, 0) and rows[('semseg', 'val')] == (3, 3, 0)
    # the release's image counts are the default
    with pytest.raises(SystemExit):
        main(['pascal_mt', '--expect', 'train'])
    assert main(['pascal_mt', '--root', str(root), '--check']) == 1
    assert 'train.txt lists 5 images, the release has 4998' in capsys.readouterr().err


def write_nyud(root, splits):
    """A tiny NYUD_MT tree following NYUD_MT_LAYOUT."""
    rng = np.random.default_rng(0)
    for split, ids in splits.items():
        path = osp.join(root, NYUD_MT_LAYOUT['splits'].format(split=split))
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(''.join(f'{i}\n' for i in ids))
        for img_id in ids:
            files = dict(
                image=Image.fromarray(rng.integers(0, 255, (8, 10, 3), np.uint8)),
                semseg=Image.fromarray(rng.integers(0, 41, (8, 10), np.uint8)),
                depth=rng.uniform(0, 10, (8, 10)).astype(np.float32),
                normals=rng.uniform(-1, 1, (8, 10, 3)).astype(np.float32),
                edge=(rng.uniform(size=(8, 10)) > 0.8).astype(np.float32))
            for entry, value in files.items():
                path = osp.join(root, NYUD_MT_LAYOUT[entry].format(id=img_id))
                os.makedirs(osp.dirname(path), exist_ok=True)
                if isinstance(value, np.ndarray):
                    np.save(path, value)
                else:
                    value.save(path)


@pytest.mark.parametrize('drive_page', ['form', 'cookie'])
def test_nyud_from_google_drive_then_check(tmp_path, serve, capsys, monkeypatch, drive_page):
    src = str(tmp_path / 'src')
    splits = dict(train=['0003', '0005', '0010'], val=['0001', '0002'])
    write_nyud(osp.join(src, 'NYUD_MT'), splits)
    archive = tgz(src, 'NYUD_MT')
    # today's confirm page (a GET form) or the older one (a download_warning cookie)
    server = serve({RELEASES['nyud_mt'].gdrive_id: archive}, drive_page=drive_page)
    monkeypatch.setenv(GDRIVE_URL_ENV, server.url('/uc'))
    root = str(tmp_path / 'data')
    assert main(['nyud_mt', '--root', root, '--expect', 'train=3', 'val=2']) == 0
    out = capsys.readouterr().out
    # the confirm page, then the file with the page's answer
    second = '/download' if drive_page == 'form' else '/uc'
    assert [urllib.parse.urlparse(p).path for p, _ in server.requests] == ['/uc', second]
    answer = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(server.requests[1][0]).query))
    assert answer['confirm'] == ('t' if drive_page == 'form' else 'TOKEN42')
    assert tree(osp.join(root, 'NYUD_MT')) == tree(osp.join(src, 'NYUD_MT'))
    entries = [e for e in NYUD_MT_LAYOUT if e != 'splits']
    assert table(out) == {(e, s): (len(ids), len(ids), 0) for e in entries
                          for s, ids in splits.items()}

    gone = osp.join(root, 'NYUD_MT', 'depth', '0005.npy')
    os.remove(gone)
    assert main(['nyud_mt', '--root', root, '--check', '--expect', 'train=3', 'val=2']) == 1
    captured = capsys.readouterr()
    assert f'depth label of image 0005 not found: {gone}' in captured.err
    assert table(captured.out)[('depth', 'train')] == (3, 2, 1)


def test_extract_refuses_a_member_outside_the_root(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name in ('PASCAL_MT/ok.txt', 'PASCAL_MT/../../evil.txt'):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b'hi'))
    archive = tmp_path / 'PASCAL_MT.tgz'
    archive.write_bytes(buf.getvalue())
    root = tmp_path / 'data'
    root.mkdir()
    with pytest.raises(PrepareError, match=r'evil.txt.*outside the root'):
        extract(str(archive), str(root), 'PASCAL_MT')
    assert os.listdir(root) == [] and not (tmp_path / 'evil.txt').exists()
