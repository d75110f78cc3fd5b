import os
import sys

import pytest

# Tests import the checkout they live in, even where another mmpoly is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def python():
    """The interpreter running the tests, for tools run as subprocesses."""
    return sys.executable
