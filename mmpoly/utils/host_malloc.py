"""glibc's allocator set for training steps on the CPU: freed memory stays in the heap.

By default glibc serves every request of 32 MiB or more (the ceiling its dynamic mmap
threshold rises to) with a fresh ``mmap`` that ``free`` unmaps, and it gives the free top of
its heap back to the system beyond 64 MiB. A training step at 512 px allocates many tensors
that large, so every step faults their pages in again (the kernel zeroes each one first).
Under :func:`keep_freed_memory` (no mmap, no trimming) a step reuses the memory the previous
one freed. On the 2-core machine, both models in one process, medians of 4 interleaved
steps: the Swin-T single-pass floor's 512 px training step 1.74 -> 1.47 s, MTLoRA's 2.74 ->
2.12 s, the process's peak RSS 3.95 vs 3.99 GB. At the demos' 96 px no tensor reaches 32 MiB
and nothing changes.

The price: between steps the process stays at its peak resident size (as CUDA's caching
allocator holds GPU memory), and what one phase frees serves only this process's later
requests. ``tools/train.py`` and ``tools/test.py`` apply it unless
``env_cfg.keep_freed_memory=False``; ``tools/benchmark.py`` times its steps under it.
"""
import ctypes
from typing import Optional

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
#: glibc's default M_MMAP_MAX (how many blocks it may mmap at once)
GLIBC_MMAP_MAX = 65536
_INT_MAX = 2**31 - 1

_looked_up = False
_libc = None


def glibc() -> Optional[ctypes.CDLL]:
    """glibc with ``mallopt`` and ``malloc_trim``, or None where it cannot be reached (musl,
    macOS): then the allocator is left as it is."""
    global _looked_up, _libc
    if not _looked_up:
        _looked_up = True
        try:
            libc = ctypes.CDLL('libc.so.6')
            _libc = libc if hasattr(libc, 'mallopt') and hasattr(libc, 'malloc_trim') \
                else None
        except OSError:
            _libc = None
    return _libc


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never trim it (this process, from now on);
    False where glibc cannot be reached."""
    libc = glibc()
    if libc is None:
        return False
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX)
    return True
