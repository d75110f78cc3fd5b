import os
import sys

import pytest
import torch

# Tests import the checkout they live in, even where another mmpoly is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if os.environ.get('MMPOLY_TORCH_THREADS'):
    # tools/ci_matrix.sh: the suite under a given thread count (other matmul blockings)
    os.environ['OMP_NUM_THREADS'] = os.environ['MMPOLY_TORCH_THREADS']
    torch.set_num_threads(int(os.environ['MMPOLY_TORCH_THREADS']))
elif os.environ.get('PYTEST_XDIST_WORKER'):
    # `pytest -n N` runs N workers, one per core: torch's default of one thread per core
    # in every worker would oversubscribe the machine (and the tools the tests start).
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)


#: the files of the slow tests (tools run as subprocesses, several ranks, whole trainings):
#: started first, so that the `-n 2` workers share them instead of one of them running last
#: and alone while the other worker idles
SLOW_FIRST = ('tests/tools/', 'tests/utils/', 'tests/models/test_ddp_all_tuners.py',
              'tests/models/test_speed_features.py', 'tests/evaluation/test_nyud_metrics.py')


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))  # stable


@pytest.fixture
def python():
    """The interpreter running the tests, for tools run as subprocesses."""
    return sys.executable
