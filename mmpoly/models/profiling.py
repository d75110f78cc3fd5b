"""Profiler ranges the model code opens (``hypernet``, ``backbone``, ``decoders``,
``losses``): ``mmpoly::<name>`` while ``torch.profiler`` records, else a no-op.

The models' own helper: model code imports nothing from the tools or the benchmark, which
reads these ranges back (``mmpoly/benchmark/``).
"""
from contextlib import nullcontext

import torch
from torch.autograd.profiler import record_function

#: prefix of every range name
PREFIX = 'mmpoly::'


def profile_range(name: str):
    """A ``torch.profiler`` range named ``mmpoly::<name>`` while a profiler records, else a
    no-op context (so the ranges cost nothing in training and never break ``torch.compile``)."""
    if torch.compiler.is_compiling() or not torch.autograd._profiler_enabled():
        return nullcontext()
    return record_function(PREFIX + name)
