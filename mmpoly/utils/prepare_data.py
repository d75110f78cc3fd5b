"""Get a multi-task dataset release in one command: download, check, extract, verify.

``tools/prepare_data.py {pascal_mt,nyud_mt}`` is a thin CLI over :func:`main`. The steps:

1. download the release the reference code (Multi-Task-Learning-PyTorch,
   ``data/pascal_context.py``, ``data/nyud.py``, ``data/google_drive.py``) downloads, from
   the same source (a URL, or a Google Drive file id whose "cannot scan for viruses" confirm
   page is answered); a partial download is kept as ``<archive>.part`` and resumed with an
   HTTP Range request, also across runs;
2. check the archive's size and sha256 where they are recorded (:data:`RELEASES`); a
   mismatch is an error and the file is moved aside to ``<archive>.bad``, never extracted;
3. extract it safely (no member may land outside the root: absolute paths, ``..``, links
   that point out, devices are refused) into a temporary folder renamed into place, so a
   failed extraction leaves no half tree;
4. verify the tree: for every split, each task's file exists for every image id, and the
   split lists the expected number of images; a table per task is printed and a missing
   file is an error naming it.

The sources can be redirected (tests, mirrors): ``--url`` replaces the release URL, and the
environment variable ``MMPOLY_GDRIVE_URL`` replaces Google Drive's download endpoint.
"""
import argparse
import hashlib
import html.parser
import http.client
import http.cookiejar
import os
import os.path as osp
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from ..datasets.nyud_mt import LABEL_FILES as NYUD_LABEL_FILES
from ..datasets.nyud_mt import NYUDMTDataset
from ..datasets.pascal_context_mt import PascalContextMTDataset

#: Google Drive's download endpoint (the reference's ``data/google_drive.py`` uses it too).
GDRIVE_URL = 'https://drive.google.com/uc'
GDRIVE_URL_ENV = 'MMPOLY_GDRIVE_URL'
USER_AGENT = 'mmpoly-prepare-data'
CHUNK = 1 << 20


class PrepareError(RuntimeError):
    """A download, archive or dataset tree is not what the release should be."""


@dataclass(frozen=True)
class Release:
    """One dataset release.

    Args:
        folder: the dataset folder the archive holds (and the configs' ``data_root`` name).
        archive: the archive's file name.
        url: where it is downloaded from, or None for a Google Drive file.
        gdrive_id: the Google Drive file id, or None for a URL.
        size: the archive's size in bytes, None where not recorded yet.
        sha256: the archive's sha256, None where not recorded yet.
        splits: split -> the number of images it lists.
        digest_note: where size and digest come from, or why they are not known.
    """
    folder: str
    archive: str
    url: Optional[str] = None
    gdrive_id: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    splits: Dict[str, int] = field(default_factory=dict)
    digest_note: str = ''


# Neither reference loader records a size or digest, and the releases cannot be reached from
# where this was written, so none is enforced yet: the tool prints the size and sha256 of
# what it downloaded, to be recorded here. A third-party Colab notebook records 4,215,751,725
# bytes and sha256 33338d895404a9144a2c6892a8b0d6d5c26b02021f945b12e36c431fb369fcb2 for the
# NYUD_MT Drive file; unconfirmed by us, so it is not enforced either.
RELEASES = {
    'pascal_mt': Release(
        folder='PASCAL_MT',
        archive='PASCAL_MT.tgz',
        url='https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz',
        splits=dict(train=4998, val=5105),
        digest_note='not recorded by the reference (data/pascal_context.py) nor by us yet'),
    'nyud_mt': Release(
        folder='NYUD_MT',
        archive='NYUD_MT.tgz',
        gdrive_id='14EAEMXmd3zs2hIMY63UhHPSFPDAkiTzw',
        splits=dict(train=795, val=654),
        digest_note='not recorded by the reference (data/nyud.py) nor by us yet'),
}

#: The NYUD_MT release layout, as the reference ``data/nyud.py`` (``NYUD_MT``) reads it and
#: ``NYUDMTDataset`` reads it (its label table ``LABEL_FILES`` gives the task entries):
#: entry -> path under the root, with ``{split}`` / ``{id}`` filled in. ``splits`` lists
#: one image id a line; every other entry is one file per image id: the RGB image, the
#: 40-class segmentation (0 = void), depth in metres (0 = invalid), surface normals and
#: edges (NumPy arrays). :func:`verify_tree` checks a tree with the dataset class's own rules.
NYUD_MT_LAYOUT = dict(
    splits='gt_sets/{split}.txt',
    image='images/{id}.jpg',
    **{task: f'{folder}/{{id}}{ext}' for task, (folder, ext) in NYUD_LABEL_FILES.items()},
)


# ------------------------------------------------------------------------ progress
def _human(n: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
        n /= 1024
    return f'{n:.1f} GiB'


class Progress:
    """Bytes done of the total, and the rate: a bar redrawn in place on a terminal, a plain
    line per update (at most one per ``interval`` seconds) otherwise."""

    def __init__(self, name: str, total: Optional[int], done: int = 0,
                 stream: Optional[TextIO] = None, interval: Optional[float] = None):
        self.name, self.total, self.done = name, total, done
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, 'isatty', lambda: False)()
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.start, self.start_done = time.monotonic(), done
        self.last, self.drawn = 0.0, None

    def update(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self.last >= self.interval:
            self._draw()

    def close(self) -> None:
        if self.drawn != self.done:
            self._draw()
        if self.tty:
            self.stream.write('\n')
        self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = '#' * int(30 * frac) + '-' * (30 - int(30 * frac))
            return (f'{self.name} [{bar}] {100 * frac:5.1f}% {_human(self.done)} / '
                    f'{_human(self.total)} {_human(rate)}/s')
        return f'{self.name} {_human(self.done)} {_human(rate)}/s'

    def _draw(self) -> None:
        self.last, self.drawn = time.monotonic(), self.done
        self.stream.write(('\r' + self.line()) if self.tty else self.line() + '\n')
        self.stream.flush()


# ------------------------------------------------------------------------ download
def _opener() -> urllib.request.OpenerDirector:
    # Cookies: older Drive pages hand the confirm token as a ``download_warning`` cookie.
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.cookiejar = jar
    return opener


class _DriveForm(html.parser.HTMLParser):
    """The download form of Drive's confirm page (action + hidden inputs), and its links."""

    def __init__(self):
        super().__init__()
        self.action, self.inputs, self.hrefs, self.title, self._in_title = None, {}, [], '', False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'form' and self.action is None and attrs.get('action'):
            self.action = attrs['action']
        elif tag == 'input' and attrs.get('name') and attrs.get('type', 'hidden') == 'hidden':
            self.inputs[attrs['name']] = attrs.get('value') or ''
        elif tag == 'a' and attrs.get('href'):
            self.hrefs.append(attrs['href'])
        elif tag == 'title':
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == 'title':
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def resolve_gdrive(file_id: str, opener: urllib.request.OpenerDirector,
                   base_url: Optional[str] = None) -> str:
    """The URL that serves Drive file ``file_id`` itself, past the confirm page large
    files get ("Google Drive can't scan this file for viruses")."""
    base_url = base_url or os.environ.get(GDRIVE_URL_ENV) or GDRIVE_URL
    url = f'{base_url}?' + urllib.parse.urlencode(dict(id=file_id, export='download'))
    by_hand = (f'download https://drive.google.com/file/d/{file_id}/view by hand and put it '
               'at the archive path')
    try:
        with opener.open(urllib.request.Request(url, headers={'User-Agent': USER_AGENT}),
                         timeout=60) as resp:
            if 'text/html' not in resp.headers.get('Content-Type', ''):
                return resp.geturl()  # small file: served directly
            page = resp.read(1 << 20).decode('utf-8', 'replace')
            final = resp.geturl()
    except (urllib.error.URLError, OSError) as e:
        raise PrepareError(f'cannot reach Google Drive at {url} ({e}); {by_hand}') from e
    form = _DriveForm()
    form.feed(page)
    if form.action and 'id' in form.inputs:  # today's page: a GET form
        return urllib.parse.urljoin(final, form.action) + '?' + urllib.parse.urlencode(
            form.inputs)
    token = None
    for cookie in getattr(opener, 'cookiejar', []) or []:
        if cookie.name.startswith('download_warning'):
            token = cookie.value
    match = re.search(r'confirm=([0-9A-Za-z_-]+)', page)
    token = token or (match.group(1) if match else None)
    if token:  # the older page: a confirm token in a cookie or a link
        return f'{base_url}?' + urllib.parse.urlencode(
            dict(id=file_id, export='download', confirm=token))
    page_title = form.title.strip() or 'an HTML page without a download form'
    raise PrepareError(f'Google Drive did not offer file {file_id} ({page_title}: quota '
                       f'exceeded, or not shared?); {by_hand}')


def _content_range(resp) -> Tuple[Optional[int], Optional[int]]:
    """(first byte, total size) of a 206 reply's ``Content-Range: bytes a-b/total``."""
    match = re.match(r'bytes (\d+)-\d+/(\d+|\*)', resp.headers.get('Content-Range', ''))
    if not match:
        return None, None
    return int(match.group(1)), (None if match.group(2) == '*' else int(match.group(2)))


def download(url: str, dest: str, opener: Optional[urllib.request.OpenerDirector] = None,
             retries: int = 3, retry_wait: float = 2.0,
             stream: Optional[TextIO] = None) -> str:
    """Download ``url`` to ``dest`` through ``dest + '.part'``, resuming the part file (also
    one an earlier run left) with a Range request, retrying a lost connection ``retries``
    times. Returns ``dest``."""
    opener = opener or _opener()
    part = dest + '.part'
    name = osp.basename(dest)
    for attempt in range(retries + 1):
        have = osp.getsize(part) if osp.isfile(part) else 0
        headers = {'User-Agent': USER_AGENT}
        if have:
            headers['Range'] = f'bytes={have}-'
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=60) as resp:
                if 'text/html' in resp.headers.get('Content-Type', ''):
                    raise PrepareError(f'{url} returned an HTML page, not the archive {name}')
                length = resp.headers.get('Content-Length')
                if have and resp.status == 206:
                    first, total = _content_range(resp)
                    if first != have:
                        raise PrepareError(f'{url} answered the range request for bytes '
                                           f'{have}- with bytes {first}-')
                else:
                    if have:
                        print(f'{url} ignores range requests: restarting {name}',
                              file=stream or sys.stderr)
                    have, total = 0, (int(length) if length else None)
                expected = int(length) if length else None  # bytes of this reply's body
                progress = Progress(name, total, have, stream)
                got = 0
                with open(part, 'ab' if have else 'wb') as f:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        got += len(chunk)
                        progress.update(len(chunk))
                progress.close()
                if expected is not None and got < expected:
                    # http.client returns b'' on a dropped connection: the count tells
                    raise http.client.IncompleteRead(b'', expected - got)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing after byte `have`: whole, or not this file
                match = re.match(r'bytes \*/(\d+)', e.headers.get('Content-Range', ''))
                if match and int(match.group(1)) == have:
                    os.replace(part, dest)
                    return dest
                os.remove(part)
                continue
            raise PrepareError(f'download of {url} failed: HTTP {e.code} {e.reason}') from e
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                socket.timeout) as e:
            kept = osp.getsize(part) if osp.isfile(part) else 0
            if attempt == retries:
                raise PrepareError(
                    f'download of {url} failed after {retries + 1} tries ({e!r}); {part} keeps '
                    f'the {kept} bytes fetched: run the command again to resume') from e
            print(f'{name}: connection lost at {kept} bytes ({e!r}); resuming',
                  file=stream or sys.stderr)
            time.sleep(retry_wait * (attempt + 1))
    raise PrepareError(f'download of {url} failed: the server refused every range request')


# ------------------------------------------------------------------------ checks
def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def check_archive(path: str, size: Optional[int], sha256: Optional[str],
                  note: str = '') -> str:
    """Compare the archive with the recorded size and sha256; on a mismatch move it to
    ``<path>.bad`` and raise. Returns its sha256."""
    actual_size, digest = osp.getsize(path), sha256_of(path)
    problems = []
    if size is not None and actual_size != size:
        problems.append(f'size {actual_size} bytes, expected {size}')
    if sha256 is not None and digest != sha256.lower():
        problems.append(f'sha256 {digest}, expected {sha256.lower()}')
    if problems:
        os.replace(path, path + '.bad')
        raise PrepareError(f'{path} is not the release: ' + '; '.join(problems) +
                           f'. Moved it to {path}.bad (not extracted); run again to download '
                           'it anew')
    if size is None or sha256 is None:
        print(f'{osp.basename(path)}: {actual_size} bytes, sha256 {digest}. The release\'s '
              f'{"size and " if size is None else ""}digest are {note or "not recorded"}: '
              'nothing to compare with (record them in mmpoly/utils/prepare_data.py RELEASES)')
    return digest


def _safe_member(member: tarfile.TarInfo, dest: str) -> None:
    """Refuse a member that would land outside ``dest`` or is not a file, folder or link
    inside it."""
    def inside(path):
        full = osp.realpath(osp.join(dest, path))
        return full == osp.realpath(dest) or full.startswith(osp.realpath(dest) + os.sep)

    name = member.name
    if osp.isabs(name) or '..' in name.replace('\\', '/').split('/') or not inside(name):
        raise PrepareError(f'archive member {name!r} would be written outside the root')
    if member.issym():
        if not inside(osp.join(osp.dirname(name), member.linkname)):
            raise PrepareError(f'archive member {name!r} links outside the root '
                               f'({member.linkname!r})')
    elif member.islnk():
        if not inside(member.linkname):
            raise PrepareError(f'archive member {name!r} links outside the root '
                               f'({member.linkname!r})')
    elif not (member.isfile() or member.isdir()):
        raise PrepareError(f'archive member {name!r} is not a file, folder or link')


def extract(archive: str, root: str, folder: str) -> str:
    """Extract ``archive`` (holding ``folder/``) to ``root/folder``; returns that path.

    Extracts into a temporary folder under ``root`` and renames ``folder`` into place."""
    target = osp.join(root, folder)
    tmp = tempfile.mkdtemp(prefix=f'.{folder}.extract.', dir=root)
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                _safe_member(member, tmp)
                name = re.sub(r'^(\./)+', '', member.name.replace('\\', '/'))
                if name in ('', '.'):
                    continue  # the archive's own top entry
                top = name.split('/')[0]
                if top != folder:
                    raise PrepareError(f'{archive}: member {member.name!r} is not under '
                                       f'{folder}/ (not the {folder} release?)')
                if hasattr(tarfile, 'data_filter'):
                    tar.extract(member, tmp, filter='data')
                else:  # Python < 3.11.4: _safe_member did the checks
                    tar.extract(member, tmp)
        if not osp.isdir(osp.join(tmp, folder)):
            raise PrepareError(f'{archive} holds no {folder}/ folder')
        os.rename(osp.join(tmp, folder), target)
    except tarfile.TarError as e:
        raise PrepareError(f'{archive} is not a readable tar archive ({e})') from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------------ tree
def _read_ids(split_file: str) -> List[str]:
    if not osp.isfile(split_file):
        raise PrepareError(f'split file not found: {split_file}')
    with open(split_file) as f:
        return [line.strip() for line in f if line.strip()]


def _dataset_rows(dataset_cls, split_file: str):
    """The rows of a dataset class that reads ``data_root`` and ``tasks`` in
    ``_data_info(img_id)``: its own path rules, called on the tree (one row per task of its
    METAINFO, and 'image' for the image alone)."""

    def rows(root: str):
        def rule(tasks):
            view = types.SimpleNamespace(data_root=root, tasks=tasks)
            return lambda img_id: dataset_cls._data_info(view, img_id)

        checks = {'image': rule(())}
        for task in dataset_cls.METAINFO['task_specs']:
            checks[task] = rule((task, ))
        return (lambda split: osp.join(root, split_file.format(split=split))), checks

    return rows


TREE_RULES = dict(
    pascal_mt=_dataset_rows(PascalContextMTDataset, 'ImageSets/Context/{split}.txt'),
    nyud_mt=_dataset_rows(NYUDMTDataset, NYUD_MT_LAYOUT['splits']))


def verify_tree(dataset: str, root: str, expected: Dict[str, int],
                stream: Optional[TextIO] = None, show: int = 5) -> List[dict]:
    """Check every task's file for every image id of every split of ``root`` (the
    dataset folder); print a table (task, split, expected, found, missing). Raises
    PrepareError naming the first missing files (and their count) or a split whose image
    count is not ``expected[split]``. Returns the table rows."""
    stream = stream or sys.stdout
    if not osp.isdir(root):
        raise PrepareError(f'{dataset} tree not found: {root}')
    split_file, checks = TREE_RULES[dataset](root)
    rows, errors, count_errors = [], [], []
    for split, count in expected.items():
        ids = _read_ids(split_file(split))
        if len(ids) != count:
            count_errors.append(f'{split_file(split)} lists {len(ids)} images, the release '
                                f'has {count}')
        for task, check in checks.items():
            missing = []
            for img_id in ids:
                try:
                    check(img_id)
                except FileNotFoundError as e:
                    missing.append(str(e))
            rows.append(dict(task=task, split=split, expected=count, found=len(ids) - len(
                missing), missing=len(missing)))
            errors += [m for m in missing if m not in errors]
    print(f'{dataset} at {root}', file=stream)
    print(f'{"task":<12} {"split":<6} {"expected":>8} {"found":>8} {"missing":>8}', file=stream)
    for r in rows:
        print(f'{r["task"]:<12} {r["split"]:<6} {r["expected"]:>8} {r["found"]:>8} '
              f'{r["missing"]:>8}', file=stream)
    problems = count_errors[:]
    if errors:
        problems.append(f'{len(errors)} files missing, e.g. ' + '; '.join(errors[:show]))
    if problems:
        raise PrepareError(f'{dataset} at {root} is incomplete: ' + ' | '.join(problems))
    return rows


# ------------------------------------------------------------------------ command
def prepare(dataset: str, root: str = 'data', check_only: bool = False,
            url: Optional[str] = None, sha256: Optional[str] = None,
            size: Optional[int] = None, expected: Optional[Dict[str, int]] = None,
            retries: int = 3, retry_wait: float = 2.0) -> str:
    """Download, check, extract and verify ``dataset`` under ``root``; returns the dataset
    folder. ``url`` / ``sha256`` / ``size`` / ``expected`` override the release's."""
    release = RELEASES[dataset]
    expected = dict(release.splits, **(expected or {}))
    target = osp.join(root, release.folder)
    if check_only or osp.isdir(target):
        if not check_only:
            print(f'{target} exists: verifying it (remove it to download again)')
        verify_tree(dataset, target, expected)
        return target
    os.makedirs(root, exist_ok=True)
    archive = osp.join(root, release.archive)
    if not osp.isfile(archive):
        opener = _opener()
        source = url or release.url or resolve_gdrive(release.gdrive_id, opener)
        print(f'downloading {source} to {archive}')
        download(source, archive, opener, retries=retries, retry_wait=retry_wait)
    else:
        print(f'{archive} exists: checking it (remove it to download again)')
    check_archive(archive, size if size is not None else release.size,
                  sha256 or release.sha256, release.digest_note)
    print(f'extracting {archive} to {target}')
    extract(archive, root, release.folder)
    verify_tree(dataset, target, expected)
    print(f'{target} is complete ({archive} can be removed)')
    return target


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Download, check, extract and verify a multi-task dataset release.')
    parser.add_argument('dataset', choices=sorted(RELEASES))
    parser.add_argument('--root', default='data',
                        help='folder that receives the archive and the dataset folder')
    parser.add_argument('--check', action='store_true',
                        help='only verify an existing tree (no download)')
    parser.add_argument('--url', help='download from this URL instead of the release source '
                        f'(a mirror; Google Drive\'s endpoint: env {GDRIVE_URL_ENV})')
    parser.add_argument('--sha256', help='expected sha256 of the archive (overrides the '
                        'recorded one)')
    parser.add_argument('--size', type=int, help='expected archive size in bytes')
    parser.add_argument('--expect', nargs='+', default=[], metavar='SPLIT=N',
                        help='images per split, if not the release\'s (e.g. train=10)')
    parser.add_argument('--retries', type=int, default=3,
                        help='resumes after a lost connection')
    parser.add_argument('--retry-wait', type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.expect = {k: int(v) for k, v in (item.split('=', 1) for item in args.expect)}
    except ValueError:
        parser.error(f'--expect takes SPLIT=N, got {args.expect}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        prepare(args.dataset, args.root, args.check, args.url, args.sha256, args.size,
                args.expect, args.retries, args.retry_wait)
    except PrepareError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0
