"""A checkpoint hook whose write of one file is interrupted, for the kill-in-write tests.

Imported by the ``tools/train.py`` processes of ``test_resume_exact.py`` through
``custom_imports``: the product code has no test switch. When the file ``interrupt_at`` is
about to appear under its name, its temporary file is cut to half its size (what a kill
during the write leaves), a marker ``<interrupt_at>.writing`` is created beside it and the
process waits to be killed.
"""
import os
import os.path as osp
import time

from mmseg.registry import HOOKS
from mmpoly.checkpoint.atomic import AtomicCheckpointHook


@HOOKS.register_module()
class InterruptedWriteCheckpointHook(AtomicCheckpointHook):

    def __init__(self, interrupt_at: str, **kwargs):
        super().__init__(**kwargs)
        self.interrupt_at = interrupt_at

    def publish(self, tmp: str, path: str) -> None:
        if osp.basename(path) == self.interrupt_at:
            with open(tmp, 'r+b') as f:
                f.truncate(os.path.getsize(tmp) // 2)
            open(path + '.writing', 'w').close()
            while True:  # the test kills the process here
                time.sleep(1)
        super().publish(tmp, path)


def interrupt_options(filename: str) -> list:
    """``--cfg-options`` for ``tools/train.py`` that interrupt the write of ``filename``."""
    return ['custom_imports.imports=[mmpoly,tests.tools.interrupted_write]',
            'default_hooks.checkpoint.type=InterruptedWriteCheckpointHook',
            f'default_hooks.checkpoint.interrupt_at={filename}']
