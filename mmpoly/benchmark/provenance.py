"""What a benchmark report was measured on: the commit, and the files each case ran.

A saved report (``docs/benchmarks/*.json``) goes stale when the code it timed changes. Each
result records ``sources``: the git blob id of every file of this repository the case ran (its
config and ``_base_`` chain, the modules defining the model's classes, the benchmark harness);
the report records the commit (``git rev-parse HEAD``) and which of those files differed from
it (``dirty``). :func:`changed_sources` compares the recorded ids with today's files, without
needing git (``tests/docs/test_readme.py`` fails on any difference, naming the file).
"""
import hashlib
import inspect
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Set

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def blob_id(path: str) -> str:
    """git's object id of the file's content (``git hash-object PATH``)."""
    with open(path, 'rb') as f:
        data = f.read()
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def git_commit(repo: str = REPO) -> Optional[str]:
    """HEAD's commit, or None outside a git checkout."""
    try:
        out = subprocess.run(['git', '-C', repo, 'rev-parse', 'HEAD'], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def committed_blob_id(path: str, commit: str, repo: str = REPO) -> Optional[str]:
    """The blob id of ``path`` (relative to the repo) at ``commit``; None if it has none."""
    out = subprocess.run(['git', '-C', repo, 'rev-parse', f'{commit}:{path}'],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _config_files(path: str) -> List[str]:
    from mmengine.config import Config
    files, todo = [], [osp.abspath(path)]
    while todo:
        current = todo.pop()
        files.append(current)
        todo += [osp.normpath(osp.join(osp.dirname(current), base))
                 for base in Config._get_base_files(current)]
    return files


def _code_modules(model) -> Set[str]:
    """Names of the mmpoly modules a model runs: those defining its classes (and their base
    classes) and, transitively, the mmpoly modules whose functions or classes they use."""
    todo = {cls.__module__ for m in model.modules() for cls in inspect.getmro(type(m))}
    todo |= {'mmpoly.benchmark.cases', 'mmpoly.benchmark.memory'}
    done: Set[str] = set()
    while todo:
        name = todo.pop()
        module = sys.modules.get(name)
        if name in done or module is None or not name.startswith('mmpoly'):
            continue
        done.add(name)
        for value in vars(module).values():
            owner = value.__name__ if inspect.ismodule(value) else getattr(
                value, '__module__', None)
            if isinstance(owner, str) and owner.startswith('mmpoly') and (
                    inspect.ismodule(value) or inspect.isclass(value)
                    or inspect.isfunction(value)):
                todo.add(owner)
    return done - {__name__}  # this bookkeeping is not what is timed


def case_sources(config_path: str, model) -> Dict[str, str]:
    """repo-relative path -> blob id of every repository file a case on ``model`` (built from
    ``config_path``) runs: the config chain, the mmpoly modules of the model's classes and
    what they use, the benchmark harness."""
    files = set(_config_files(config_path))
    files |= {osp.abspath(sys.modules[name].__file__) for name in _code_modules(model)
              if getattr(sys.modules[name], '__file__', None)}
    inside = sorted(f for f in files if f.startswith(REPO + osp.sep))
    return {osp.relpath(f, REPO): blob_id(f) for f in inside}


def dirty_sources(sources: Dict[str, str], commit: Optional[str]) -> List[str]:
    """The files of ``sources`` whose content is not the commit's (uncommitted changes)."""
    if commit is None:
        return sorted(sources)
    return sorted(p for p, blob in sources.items() if committed_blob_id(p, commit) != blob)


def changed_sources(sources: Dict[str, str], repo: str = REPO) -> List[str]:
    """The files of ``sources`` whose content today differs from what was measured."""
    changed = []
    for path, blob in sorted(sources.items()):
        full = osp.join(repo, path)
        if not osp.isfile(full) or blob_id(full) != blob:
            changed.append(path)
    return changed
