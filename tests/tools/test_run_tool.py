"""The tool runner of these tests: a run that hangs is stopped whole (its children too) and
shows where each of its Python processes was."""
import os
import sys
import textwrap
import time

import pytest

from .conftest import ToolHung, run_once, run_tool

# a parent that starts a child and waits; both sleep in functions named for the check
HANGING = textwrap.dedent('''
    import subprocess, sys, time

    def child_waits_here():
        time.sleep(3600)

    def parent_waits_here(child):
        child.wait()

    if len(sys.argv) > 1:
        child_waits_here()
    child = subprocess.Popen([sys.executable, __file__, 'child'])
    print(child.pid, flush=True)
    parent_waits_here(child)
''')


def test_a_hanging_run_is_stopped_with_the_stacks_of_parent_and_child(tmp_path):
    script = tmp_path / 'hang.py'
    script.write_text(HANGING)
    env = dict(os.environ, PYTHONFAULTHANDLER='1')
    with pytest.raises(ToolHung) as hung:
        run_once([sys.executable, str(script)], env, timeout=3)
    out = hung.value.output
    assert 'parent_waits_here' in out and 'child_waits_here' in out, out
    child = int(out.split()[0])
    for _ in range(50):  # the child was stopped with its parent
        if not running(child):
            break
        time.sleep(0.1)
    assert not running(child)


def running(pid):
    """Whether ``pid`` runs (a killed child may stay a zombie until someone reaps it)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ('Z', 'X')


def test_a_run_that_ends_gives_its_output_and_code(tmp_path):
    proc = run_once([sys.executable, '-c', 'import sys; print("out"); sys.exit(3)'],
                    dict(os.environ), timeout=60)
    assert proc.returncode == 3 and proc.stdout == 'out\n'


# writes into --work-dir; hangs on its first run (no marker yet), ends on the next
FIRST_RUN_HANGS = textwrap.dedent('''
    import os, sys, time

    def first_run_waits_here():
        time.sleep(3600)

    work, marker = sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(marker):
        open(marker, 'w').close()
        open(os.path.join(work, 'partial'), 'w').close()
        first_run_waits_here()
    open(os.path.join(work, 'done'), 'w').close()
''')


def test_a_run_that_hangs_once_runs_again_from_the_work_dir_it_found(tmp_path):
    script, work = tmp_path / 'once.py', tmp_path / 'work'
    script.write_text(FIRST_RUN_HANGS)
    work.mkdir()
    (work / 'epoch_1.pth').write_text('a checkpoint to resume from')
    with pytest.warns(UserWarning, match='first_run_waits_here'):
        run_tool('python', script, '--work-dir', work, tmp_path / 'marker', timeout=3)
    assert sorted(os.listdir(work)) == ['done', 'epoch_1.pth']  # not the hung run's file
    assert not (tmp_path / 'work.before_run').exists()


def test_a_run_that_hangs_twice_fails_with_both_stacks(tmp_path):
    script = tmp_path / 'hang.py'
    script.write_text(HANGING)
    with pytest.warns(UserWarning), pytest.raises(AssertionError) as failed:
        run_tool('python', script, timeout=3)
    assert str(failed.value).count('child_waits_here') == 2
