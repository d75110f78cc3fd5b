"""The benchmark's peak-memory probe (mmpoly/benchmark/memory.py) against allocations of a
known size, and its refusals: it never reports a figure it did not measure.

Tolerance of the CPU checks (``TOL``, 1 MiB either way around N = 64 MiB on up to 64 CPUs).
RSS is counted in whole pages; the kernel folds a thread's RSS changes into the total in
per-CPU batches of up to max(32, 2 x CPUs) pages (a reading lags by at most a batch: about
60 KiB seen here on 2 CPUs, two readings per figure); the measured region also holds a few
small Python objects (the list of chunks, malloc's 16-byte chunk headers: about 0.1 MiB for
2048 chunks). The failures this guards against are off by 16 MiB or far more: a base of 0
reports the whole process (hundreds of MiB: 282 MiB for a 64 MiB step with the old
fallback), a high-water mark that is not reset reports an earlier larger peak (128 MiB
below), freed heap reused without trimming reports about 0."""
import os
import os.path as osp
import runpy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmpoly.benchmark import Case, MemoryProbe, memory
from mmpoly.benchmark.memory import MemoryUnavailable
from .conftest import REPO

MiB = 2**20
N = 64 * MiB
TOL = max(1 * MiB, 2 * max(32, 2 * (os.cpu_count() or 1)) * 4096)


def touched_numpy(nbytes):
    a = np.empty(nbytes, np.uint8)
    a.fill(1)  # every page written: resident
    return a


def touched_torch(nbytes):
    return torch.empty(nbytes, dtype=torch.uint8).fill_(1)


def measure(step, device='cpu'):
    probe = MemoryProbe(device)
    probe.start()
    step()
    return probe.stop(), probe


def needs_hwm_reset():
    if not MemoryProbe.can_reset_hwm():
        pytest.skip('/proc/self/clear_refs cannot be written here (the probe reports '
                    'rss_hwm_lifetime; tested below with the reset taken away)')


@pytest.mark.parametrize('alloc', [touched_numpy, touched_torch], ids=['numpy', 'torch'])
def test_cpu_peak_of_a_known_allocation(alloc):
    """An N MiB buffer written and freed inside the step: the step's peak is N MiB."""
    needs_hwm_reset()
    measure(lambda: alloc(N))  # first use: lazy initialisation (torch's) is not the step's
    for _ in range(3):
        peak, probe = measure(lambda: alloc(N))
        assert abs(peak - N) <= TOL, peak / MiB
        assert (probe.last_method, probe.upper_bound) == ('rss_hwm_reset', False)


def test_cpu_sees_a_lower_peak_after_a_higher_one():
    """The high-water mark is reset before every step: a 32 MiB step after a 128 MiB step in
    the same process reports 32 (``ru_maxrss``, or a mark not reset, would say 128)."""
    needs_hwm_reset()
    high, _ = measure(lambda: touched_numpy(2 * N))
    low, probe = measure(lambda: touched_numpy(N // 2))
    assert abs(high - 2 * N) <= TOL and abs(low - N // 2) <= TOL, (high / MiB, low / MiB)
    assert not probe.upper_bound


def test_cpu_counts_freed_heap_reused_by_the_next_step():
    """2048 chunks of 32 KiB (below the mmap threshold: from the heap) freed at the end of
    each step, with a chunk kept alive above them so that the heap's top cannot shrink: the
    next step reuses the same addresses. The probe trims freed heap before each step, so each
    step's pages are faulted in again and counted (without the trim: about 0)."""
    needs_hwm_reset()
    kept = []

    def step():
        chunks = [touched_numpy(32 * 1024) for _ in range(N // (32 * 1024))]
        kept.append(touched_numpy(32 * 1024))
        del chunks

    for _ in range(3):
        peak, _ = measure(step)
        assert abs(peak - N) <= TOL, peak / MiB


def test_cpu_without_hwm_reset_marks_upper_bounds(monkeypatch):
    """``clear_refs`` not writable: VmHWM is the lifetime peak. A step that raises it is
    measured exactly; a smaller step after it gets the larger figure, reported as an upper
    bound (method ``rss_hwm_lifetime_upper_bound``), never as the step's peak."""
    monkeypatch.setattr(memory, '_CLEAR_REFS', '/nonexistent/clear_refs')
    assert not MemoryProbe.can_reset_hwm()
    assert MemoryProbe.method('cpu') == 'rss_hwm_lifetime'
    MemoryProbe.configure_malloc()
    memory.glibc().malloc_trim(0)
    above = (memory._proc_kb('VmHWM') - memory._proc_kb('VmRSS')) * 1024 + N  # past the mark
    big, probe = measure(lambda: touched_numpy(above))
    assert abs(big - above) <= TOL, (big / MiB, above / MiB)
    assert (probe.last_method, probe.upper_bound) == ('rss_hwm_lifetime', False)
    small, probe = measure(lambda: touched_numpy(N // 2))
    assert (probe.last_method, probe.upper_bound) == ('rss_hwm_lifetime_upper_bound', True)
    assert small >= N // 2 - TOL and small > N // 2 + 16 * MiB  # a bound, not the peak


def test_case_reports_the_method_and_bound_of_its_largest_peak(monkeypatch):
    """``Case.measure_memory_step`` keeps each step's method; the summary's peak is exact
    when an exact measurement reaches the largest figure, else marked as an upper bound."""
    def fake_case(sizes):
        case = SimpleNamespace(device='cpu', times=[], peaks=[], peak_methods=[],
                               last_loss=None, name='fake')
        for size in sizes:
            def step(size=size):
                touched_numpy(size)  # as a test step: no loss returned

            case.step = step
            Case.measure_memory_step(case)
        return case

    needs_hwm_reset()
    case = fake_case([N // 4, N])
    peak, method, upper = Case.peak_step(case)
    assert abs(peak - N) <= TOL and (method, upper) == ('rss_hwm_reset', False)

    monkeypatch.setattr(memory, '_CLEAR_REFS', '/nonexistent/clear_refs')
    case = fake_case([N // 4])  # under the 64 MiB step's mark
    assert case.peak_methods == ['rss_hwm_lifetime_upper_bound']
    assert Case.peak_step(case)[1:] == ('rss_hwm_lifetime_upper_bound', True)

    def summary_of(peaks, methods):
        return Case.peak_step(SimpleNamespace(peaks=peaks, peak_methods=methods, name='x'))

    ub, life = 'rss_hwm_lifetime_upper_bound', 'rss_hwm_lifetime'
    assert summary_of([5, 9], [life, ub]) == (9, ub, True)
    assert summary_of([9, 9], [ub, life]) == (9, life, False)  # an exact 9 is the true max
    assert summary_of([9, 5], [life, ub]) == (9, life, False)
    with pytest.raises(RuntimeError, match='no recorded step'):
        summary_of([], [])


def test_cpu_refuses_without_proc_status(monkeypatch):
    """No /proc/self/status: no base RSS (it used to be 0, making the step's peak the
    process's whole RSS) and no mark: a clear error, for the probe and the tool alike."""
    monkeypatch.setattr(memory, '_STATUS', '/nonexistent/status')
    with pytest.raises(MemoryUnavailable, match='/nonexistent/status'):
        MemoryProbe.method('cpu')
    with pytest.raises(MemoryUnavailable, match='ru_maxrss'):
        MemoryProbe('cpu').start()
    assert MemoryProbe.method('cuda') == 'cuda_max_memory_allocated'  # not a CPU matter
    main = runpy.run_path(osp.join(REPO, 'tools', 'benchmark.py'))['main']
    with pytest.raises(SystemExit, match='peak memory cannot be measured'):
        main([osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_synthetic.py'),
              '--iters', '1'])


def test_cpu_refuses_without_glibc_trim(monkeypatch):
    """Without malloc_trim freed activations stay resident and later steps look free (see
    test_cpu_counts_freed_heap_reused_by_the_next_step): refused, not measured."""
    monkeypatch.setattr(memory, 'glibc', lambda: None)
    with pytest.raises(MemoryUnavailable, match='malloc_trim'):
        MemoryProbe('cpu').start()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_cuda_peak_of_a_known_allocation():
    """The caching allocator's max allocated, reset per step: N MiB (a multiple of its
    512-byte blocks) exactly, also after a larger step."""
    measure(lambda: torch.empty(2 * N, dtype=torch.uint8, device='cuda'), 'cuda')
    held = torch.ones(N // 4, dtype=torch.uint8, device='cuda')  # held across: not the step's
    for _ in range(2):
        peak, probe = measure(
            lambda: torch.empty(N, dtype=torch.uint8, device='cuda').fill_(1), 'cuda')
        assert peak == N
        assert (probe.last_method, probe.upper_bound) == ('cuda_max_memory_allocated', False)
    del held
