import os
import sys

import pytest
import torch

# Tests import the checkout they live in, even where another mmpoly is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if os.environ.get('PYTEST_XDIST_WORKER'):
    # `pytest -n N` runs N workers, one per core: torch's default of one thread per core
    # in every worker would oversubscribe the machine (and the tools the tests start).
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)


@pytest.fixture
def python():
    """The interpreter running the tests, for tools run as subprocesses."""
    return sys.executable
