"""The benchmark harness of tools/benchmark.py: timing, profiling and memory measurement of
training / inference steps. Nothing under ``mmpoly.models`` imports it.

- ``cases``: a model from a config with random weights and its step (:class:`Case`), the
  timed, interleaved runs (:func:`run_cases`);
- ``data``: the training pipeline's throughput (:func:`data_throughput`) on the config's
  dataset or a synthetic copy in its format (:func:`data.benchmark_dataset`);
- ``memory``: peak memory of a step (:class:`MemoryProbe`, CUDA and CPU);
- ``reports``: ratios, machine description, text / markdown / JSON reports;
- ``metric``: the validation metric's time per image (:func:`metric.metric_time`).
"""
from .cases import (RANGES, SUITES, Case, benchmark_config, case_result, parse_spec,
                    random_batch, run_cases)
from .data import data_throughput
from .memory import MemoryProbe
from .reports import format_markdown, format_report, machine_info, ratios, to_json

__all__ = ['RANGES', 'SUITES', 'Case', 'benchmark_config', 'case_result', 'data_throughput',
           'parse_spec', 'random_batch', 'run_cases', 'MemoryProbe', 'format_markdown',
           'format_report', 'machine_info', 'ratios', 'to_json']
