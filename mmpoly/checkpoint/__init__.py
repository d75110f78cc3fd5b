"""Checkpoints: the adapter-only format (``adapter``: only the trained entries and the hashes
of the frozen backbone files they complete), atomic writes and loading errors that name the
file (``atomic``), and the torch unpickling allow-list of mmengine's checkpoints
(``safe_load``)."""
from . import adapter, atomic  # noqa: F401  (register the checkpoint hooks)
from .safe_load import allow_mmengine_checkpoints

__all__ = ['allow_mmengine_checkpoints']
