"""After re-measuring: the README's benchmark tables and targets from ``docs/benchmarks``.

    python tools/benchmark.py --suite b2 --json > docs/benchmarks/b2_checkpointing.json  # ...
    python tools/update_readme_numbers.py

Rewrites every benchmark table (each report's ``--markdown`` rendering, found by its list of
configs) and the targets table's 'measured' and 'met?' cells (as
``tests/docs/test_readme.py`` computes them), then prints each prose sentence of
``tests/docs/test_readme_prose.py`` that the README does not hold yet, to paste in place of
the old one. A maintainer's tool: it reads the checks from ``tests/docs``.
"""
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    from mmpoly.benchmark import format_markdown
    from tests.docs import test_readme as checks
    from tests.docs.test_readme_prose import Reports, normalized, sentences
    with open(checks.README) as f:
        lines = f.read().split('\n')
    reports = checks.benchmark_reports()
    for name, report in reports.items():
        rendered = format_markdown(report).splitlines()
        configs = [checks.split_row(r)[0] for r in rendered[2:]]
        match = [t for t in checks.tables() if checks.is_benchmark(t)
                 and [r[0] for r in t.rows] == configs]
        if len(match) != 1:
            sys.exit(f'docs/benchmarks/{name}: {len(match)} README tables list {configs}')
        start = match[0].line - 1  # the same number of rows: later tables keep their lines
        lines[start:start + 2 + len(match[0].rows)] = rendered
    (targets, ) = [t for t in checks.tables() if checks.is_targets(t)]
    expected = checks.targets_from(reports)
    for i, row in enumerate(targets.rows):
        measured, met = expected[checks.plain(row[0])]
        lines[targets.line + 1 + i] = f'| {row[0]} | {measured} | {met} |'
    with open(checks.README, 'w') as f:
        f.write('\n'.join(lines))
    readme = normalized('\n'.join(lines))
    missing = [s for s in sentences(Reports()) if normalized(s) not in readme]
    print(f'{len(reports)} tables and the targets rewritten; prose sentences to paste: '
          f'{len(missing)}')
    for sentence in missing:
        print(f'- {sentence}')


if __name__ == '__main__':
    main()
