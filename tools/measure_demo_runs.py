"""Run the README's demo jobs and store their metrics with what they were measured on.

    python tools/measure_demo_runs.py main --out docs/benchmarks/main_job.json
    python tools/measure_demo_runs.py nyud --out docs/benchmarks/nyud_demo.json

Each job trains its configs one after another (``tools/train.py CONFIG --cfg-options
randomness.seed=0``, default threads), times each, and writes ``tools/summarize.py``'s JSON
rows with the commit (``git rev-parse HEAD``), the files that differed from it (``dirty``:
none for a publishable run), the command and the wall times. ``tests/docs/test_readme.py``
holds the README's tables to the file and refuses a file without a full commit.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

JOBS = {
    'main': {'polyhistor_lite': 'configs/demo/polyhistor_lite_swin-tiny_synthetic.py',
             'decoder_ft': 'configs/demo/decoder_ft_swin-tiny_synthetic.py'},
    'nyud': {'polyhistor_lite': 'configs/demo/polyhistor_lite_swin-tiny_synthetic_nyud.py',
             'decoder_ft': 'configs/demo/decoder_ft_swin-tiny_synthetic_nyud.py'},
}
COMMAND = ('python tools/train.py CONFIG --work-dir WORK_DIR/RUN --cfg-options '
           'randomness.seed=0 (default threads), then python tools/summarize.py WORK_DIRS '
           '--format json')


def git(*args) -> str:
    return subprocess.run(['git', '-C', REPO, *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def git_commit() -> str:
    from mmpoly.benchmark.provenance import git_commit as head  # the one HEAD lookup
    commit = head(REPO)
    if commit is None:
        sys.exit(f'{REPO} is not a git checkout: the runs need a commit to record')
    return commit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('job', choices=sorted(JOBS))
    parser.add_argument('--out', required=True, help='the JSON file to write')
    parser.add_argument('--work-dir', help='where the runs go (default: a temporary dir)')
    args = parser.parse_args(argv)
    commit = git_commit()
    dirty = git('status', '--porcelain', '--untracked-files=no', '--', 'mmpoly', 'configs',
                'tools').splitlines()
    root = args.work_dir or tempfile.mkdtemp(prefix=f'demo_{args.job}_')
    wall, dirs = {}, []
    for run, config in JOBS[args.job].items():
        work_dir = osp.join(root, run)
        start = time.perf_counter()
        subprocess.run([sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
                        '--cfg-options', 'randomness.seed=0'], cwd=REPO, check=True)
        wall[run] = round(time.perf_counter() - start, 2)
        dirs.append(work_dir)
    rows = json.loads(subprocess.run(
        [sys.executable, 'tools/summarize.py', *dirs, '--format', 'json'], cwd=REPO,
        capture_output=True, text=True, check=True).stdout)
    for row in rows:  # paths relative to the work root: the same on every machine
        for key in ('metrics_file', 'dumped_config'):
            if row.get(key):
                row[key] = osp.relpath(row[key], root)
        # the repository's config, not the run's dumped copy (gone with the temporary dir)
        row['config'] = JOBS[args.job][row['run']]
    record = dict(commit=commit, dirty=[line[3:] for line in dirty], command=COMMAND,
                  wall_s=wall, cpu_count=os.cpu_count(), runs=rows)
    with open(args.out, 'w') as f:
        json.dump(record, f, indent=1)
        f.write('\n')
    print(json.dumps({k: v for k, v in record.items() if k != 'runs'}, indent=1))


if __name__ == '__main__':
    main()
