"""mmengine checkpoints load with torch's weights-only unpickler; foreign code does not."""
import io
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import mmpoly  # noqa: F401  (allows mmengine's checkpoint types)


def test_message_hub_state_loads_weights_only(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(np.float64(2.5))
    state = {'message_hub': {'log_scalars': {'train/loss': buffer},
                             'runtime_info': {'iter': np.int64(3), 'arr': np.ones(2)}},
             'state_dict': {'w': torch.ones(2)}}
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 2.0
    assert loaded['message_hub']['runtime_info']['iter'] == 3


def _pickle_archive(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('archive/data.pkl', payload)
        z.writestr('archive/version', '3\n')
        z.writestr('archive/byteorder', 'little')
    return buf.getvalue()


def _unicode(s: str) -> bytes:
    return b'X' + len(s).to_bytes(4, 'little') + s.encode()


def test_code_execution_through_the_allowed_getattr_is_refused(tmp_path):
    # getattr(getattr(getattr, '__self__'), 'eval')('...'): reaches eval, must not call it
    payload = (b'\x80\x02c__builtin__\ngetattr\nq\x01'
               b'h\x01h\x01' + _unicode('__self__') + b'\x86Rq\x00'
               b'h\x01h\x00' + _unicode('eval') + b'\x86Rq\x02'
               b'h\x02' + _unicode('1 + 1') + b'\x85R\x86.')
    path = tmp_path / 'evil.pth'
    path.write_bytes(_pickle_archive(payload))
    with pytest.raises(Exception, match='eval'):
        torch.load(path, weights_only=True)


class Custom:
    pass


def test_other_pickled_objects_are_still_refused(tmp_path):
    path = tmp_path / 'custom.pth'
    torch.save({'x': Custom()}, path)
    with pytest.raises(Exception, match='Custom'):
        torch.load(path, weights_only=True)


def test_atomic_save_checkpoint_leaves_the_old_file_or_the_new_one(tmp_path):
    from mmpoly.checkpoint.atomic import atomic_save_checkpoint
    path = tmp_path / 'adapter.pth'
    atomic_save_checkpoint({'state_dict': {'w': torch.ones(2)}}, str(path))
    before = path.read_bytes()
    with pytest.raises(Exception):  # a lambda cannot be pickled: the write fails midway
        atomic_save_checkpoint({'state_dict': {'w': torch.zeros(2)}, 'bad': lambda: 0},
                               str(path))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == \
        ['adapter.pth']  # the old file, and no temporary one
    atomic_save_checkpoint({'state_dict': {'w': torch.zeros(2)}}, str(path))
    assert torch.load(path, weights_only=True)['state_dict']['w'].eq(0).all()
