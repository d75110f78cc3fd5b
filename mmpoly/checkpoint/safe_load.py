"""Let torch >= 2.6 (``weights_only=True`` by default) load mmengine's own checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. Its checkpoints hold, besides
tensors, the message hub's ``HistoryBuffer`` objects (numpy arrays inside) and numpy scalars.
Rather than turning the safety check off, we allow exactly those types, so a checkpoint with
any other pickled object is still refused (a test checks a malicious one is).

``HistoryBuffer`` pickles its statistics as ``getattr(HistoryBuffer, 'mean')``, so
``getattr`` is allowed too: the weights-only unpickler still calls nothing outside the
allow list, so it can only look up attributes of the allowed classes.
"""
import builtins

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals():
    multiarray = getattr(np, '_core', None) or np.core  # numpy 2 renamed np.core
    dtype_classes = [
        type(np.dtype(name))
        for name in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
                     'uint64', 'float16', 'float32', 'float64')
    ]
    return [multiarray.multiarray._reconstruct, multiarray.multiarray.scalar, np.ndarray,
            np.dtype, *dtype_classes]


def allow_mmengine_checkpoints() -> None:
    """Add mmengine's checkpoint types to torch's weights-only allow list (idempotent)."""
    torch.serialization.add_safe_globals(
        [HistoryBuffer, builtins.getattr, *_numpy_globals()])
