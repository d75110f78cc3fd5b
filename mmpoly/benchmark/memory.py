"""Peak memory. On CUDA it is ``torch.cuda.max_memory_allocated``. On CPU it is resident memory
(RSS): before every step the kernel's high-water mark is reset to the current RSS
(``/proc/self/clear_refs`` = 5) and the peak added by the step is ``VmHWM - VmRSS(before)``.
glibc's dynamic mmap threshold would otherwise keep freed activations in the heap (so later
steps would look free), so the threshold is fixed at 64 KiB (``mallopt``) and freed heap is
trimmed before each step. Those settings make a step fault every activation's pages in
afresh (the Swin-T floor's training step at 512 px: 2.97 s under them, 1.62 s with glibc's
defaults), so steps are timed under :meth:`MemoryProbe.configure_malloc_for_timing`, the
settings training runs under (:mod:`mmpoly.utils.host_malloc`: freed memory stays in the
heap; 1.47 s), and memory is measured in steps of its own (``Case.measure_memory_step``)
before any timed step: once timed steps have freed activations into the heap, the probe's
step is served from that heap and reads 1.35-1.43 GB instead of 1.11 GB (the same floor
step, three steps, with glibc's long-run settings).
Both devices report
``peak_mem_mb = state_mb + peak_step_mb``: the exact bytes of parameters, buffers and
optimiser state held between steps, plus the peak the step adds on top of them (activations,
gradients, temporaries). It is comparable across models built in the same process, which is
what ``--compare`` needs.

Each measurement names its method (``MemoryProbe.last_method``) and says whether it is exact
or only an upper bound (``MemoryProbe.upper_bound``); nothing falls back silently:

- ``cuda_max_memory_allocated``, ``rss_hwm_reset``: exact.
- ``rss_hwm_lifetime``: ``clear_refs`` cannot be written (an old kernel, a sandbox), so
  ``VmHWM`` is the process's lifetime peak. When the step raised it, it is the step's peak
  (exact); otherwise ``VmHWM - VmRSS(before)`` is only an upper bound (an earlier, larger
  peak hides the step's): the method then reads ``rss_hwm_lifetime_upper_bound``.
- no ``/proc/self/status`` (``VmRSS`` / ``VmHWM``) or no glibc ``malloc_trim``:
  :class:`MemoryUnavailable`. ``getrusage``'s ``ru_maxrss`` is not used: it is the lifetime
  peak with no current RSS to subtract, so a step's peak cannot be had from it.
"""

import re
from typing import Optional

import torch

from ..utils.host_malloc import (GLIBC_MMAP_MAX, M_MMAP_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD,
                                 glibc, keep_freed_memory)


class MemoryUnavailable(RuntimeError):
    """The peak memory of a step cannot be measured on this machine."""


# ------------------------------------------------------------------ memory
_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'

CUDA_METHOD = 'cuda_max_memory_allocated'
RESET_METHOD = 'rss_hwm_reset'
LIFETIME_METHOD = 'rss_hwm_lifetime'
UPPER_BOUND_SUFFIX = '_upper_bound'


def _proc_kb(field: str) -> int:
    """``field`` of /proc/self/status in kB; :class:`MemoryUnavailable` when it cannot be
    read (never a default: a base of 0 made the step's peak the whole process's RSS)."""
    try:
        with open(_STATUS) as f:
            text = f.read()
    except OSError as e:
        raise MemoryUnavailable(
            f'CPU peak memory needs {_STATUS} (VmRSS, VmHWM), which cannot be read ({e}); '
            'getrusage ru_maxrss is the lifetime peak with no current RSS to subtract') from e
    m = re.search(rf'{field}:\s+(\d+) kB', text)
    if m is None:
        raise MemoryUnavailable(f'{_STATUS} has no {field} line: CPU peak memory cannot be '
                                'measured')
    return int(m.group(1))


class MemoryProbe:
    """Peak memory a step adds (bytes): CUDA max allocated, or the RSS high-water mark.

    After :meth:`stop`, ``last_method`` is the method of that measurement and
    ``upper_bound`` whether its figure is only an upper bound (see the module doc)."""
    def __init__(self, device: str):
        self.cuda = device.startswith('cuda')
        self.last_method: Optional[str] = None
        self.upper_bound: Optional[bool] = None

    @staticmethod
    def configure_malloc() -> bool:
        """The probe's settings: a fixed 64 KiB mmap threshold and 128 KiB trim threshold
        (freed activations go back to the OS; see module doc). False when glibc's allocator
        cannot be reached (the CPU probe then refuses)."""
        libc = glibc()
        if libc is None:
            return False
        libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)  # undo keep_freed_memory's "no mmap"
        libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
        return True

    @staticmethod
    def configure_malloc_for_timing() -> None:
        """Settings for timed steps: the ones training runs under
        (:func:`mmpoly.utils.host_malloc.keep_freed_memory`: freed memory stays in the heap,
        so a step does not fault its large tensors in afresh); nothing where glibc cannot be
        reached."""
        keep_freed_memory()

    @staticmethod
    def can_reset_hwm() -> bool:
        """Reset VmHWM to the current RSS; False when ``clear_refs`` cannot be written."""
        try:
            with open(_CLEAR_REFS, 'w') as f:
                f.write('5')
            return True
        except OSError:
            return False

    @classmethod
    def method(cls, device: str) -> str:
        """The method a probe on ``device`` measures with; :class:`MemoryUnavailable` (with
        the reason) when it cannot measure. (A lifetime-HWM measurement may still come out
        as ``rss_hwm_lifetime_upper_bound``: see ``last_method``.)"""
        if device.startswith('cuda'):
            return CUDA_METHOD
        cls._check_cpu()
        return RESET_METHOD if cls.can_reset_hwm() else LIFETIME_METHOD

    @classmethod
    def _check_cpu(cls) -> None:
        if not cls.configure_malloc():
            raise MemoryUnavailable(
                "CPU peak memory needs glibc's mallopt / malloc_trim (libc.so.6): without "
                'them freed activations stay resident and later steps look free')
        _proc_kb('VmRSS'), _proc_kb('VmHWM')

    def start(self) -> None:
        self.last_method = self.upper_bound = None
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            self._method = CUDA_METHOD
            return
        self._check_cpu()
        glibc().malloc_trim(0)
        self._method = RESET_METHOD if self.can_reset_hwm() else LIFETIME_METHOD
        self.base = _proc_kb('VmRSS') * 1024
        self.base_hwm = _proc_kb('VmHWM') * 1024

    def stop(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            self.last_method, self.upper_bound = self._method, False
            return torch.cuda.max_memory_allocated() - self.base
        hwm = _proc_kb('VmHWM') * 1024
        # with the mark reset it is the step's peak; else only when the step raised it
        exact = self._method == RESET_METHOD or hwm > self.base_hwm
        self.upper_bound = not exact
        self.last_method = self._method + ('' if exact else UPPER_BOUND_SUFFIX)
        return max(0, hwm - self.base)
