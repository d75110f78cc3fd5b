"""Peak memory. On CUDA it is ``torch.cuda.max_memory_allocated``. On CPU it is resident memory
(RSS): before every step the kernel's high-water mark is reset to the current RSS
(``/proc/self/clear_refs`` = 5) and the peak added by the step is ``VmHWM - VmRSS(before)``.
glibc's dynamic mmap threshold would otherwise keep freed activations in the heap (so later
steps would look free), so the threshold is fixed at 64 KiB (``mallopt``) and freed heap is
trimmed before each step. Both devices report ``peak_mem_mb = state_mb + peak_step_mb``:
the exact bytes of parameters, buffers and optimiser state held between steps, plus the peak
the step adds on top of them (activations, gradients, temporaries). It is comparable across
models built in the same process, which is what ``--compare`` needs.
"""

import ctypes
import re
from typing import Optional

import torch


# ------------------------------------------------------------------ memory
_STATUS = '/proc/self/status'


def _proc_kb(field: str) -> Optional[int]:
    try:
        with open(_STATUS) as f:
            m = re.search(rf'{field}:\s+(\d+) kB', f.read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


class MemoryProbe:
    """Peak memory a step adds (bytes): CUDA max allocated, or the RSS high-water mark."""
    _libc = None
    _configured = False

    def __init__(self, device: str):
        self.cuda = device.startswith('cuda')

    @classmethod
    def configure_malloc(cls) -> None:
        """Fixed mmap threshold (freed activations go back to the OS; see module doc)."""
        if cls._configured:
            return
        cls._configured = True
        try:
            cls._libc = ctypes.CDLL('libc.so.6')
            cls._libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
            cls._libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            cls._libc = None

    @staticmethod
    def can_reset_hwm() -> bool:
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            return True
        except OSError:
            return False

    @classmethod
    def method(cls, device: str) -> str:
        if device.startswith('cuda'):
            return 'cuda_max_memory_allocated'
        if cls.can_reset_hwm():
            return 'rss_hwm_reset'
        return 'ru_maxrss'  # monotonic: only the first step's growth is visible

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        self.configure_malloc()
        if self._libc is not None:
            self._libc.malloc_trim(0)
        self.can_reset_hwm()
        self.base = (_proc_kb('VmRSS') or 0) * 1024
        self.base_hwm = self._hwm()

    def _hwm(self) -> int:
        kb = _proc_kb('VmHWM')
        if kb is None:
            import resource
            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb * 1024

    def stop(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return max(0, self._hwm() - max(self.base, 0))
