import numpy as np
import pytest
import scipy.io as sio

from mmpoly.datasets import make_synthetic_pascal_mt


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """A read-only-by-convention synthetic PASCAL_MT root shared by the tests."""
    root = tmp_path_factory.mktemp('synthetic') / 'PASCAL_MT'
    make_synthetic_pascal_mt(str(root), num_train=16, num_val=8, image_size=(48, 64), seed=3)
    return root


@pytest.fixture
def fresh_root(tmp_path):
    """A tiny synthetic root a test may damage."""
    root = tmp_path / 'PASCAL_MT'
    make_synthetic_pascal_mt(str(root), num_train=4, num_val=2, image_size=(32, 40), seed=1)
    return root


def _save_parts_mat(path, objects):
    """Write a Pascal-Part annotation; ``objects`` is a list of (class id, mask, parts)
    with ``parts`` a list of (name, mask)."""
    struct = np.empty((1, len(objects)),
                      dtype=[('class', 'O'), ('class_ind', 'O'), ('mask', 'O'), ('parts', 'O')])
    for j, (cls, mask, parts) in enumerate(objects):
        if parts:
            part_struct = np.empty((1, len(parts)), dtype=[('part_name', 'O'), ('mask', 'O')])
            for k, (name, part_mask) in enumerate(parts):
                part_struct[0, k] = (name, part_mask.astype(np.uint8))
        else:
            part_struct = np.zeros((0, 0))
        struct[0, j] = ('obj', cls, mask.astype(np.uint8), part_struct)
    sio.savemat(str(path), {'anno': {'imname': 'x', 'objects': struct}})


@pytest.fixture
def save_parts_mat():
    return _save_parts_mat
