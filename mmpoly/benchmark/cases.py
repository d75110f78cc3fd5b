"""Benchmark cases: one model built from a config with random weights, its optimiser, a
random batch and its step (:class:`Case`); the timed, interleaved runs (:func:`run_cases`).
The model code opens its own profiler ranges (:mod:`mmpoly.models.profiling`); the step opens
the others (``RANGES``)."""

import copy
import math
import os
import statistics
import time
import logging
from contextlib import contextmanager, nullcontext
from typing import Dict, List, Optional, Sequence

import torch

from ..models.profiling import PREFIX, profile_range
from ..models.tuners.base import BaseTuner
from .memory import UPPER_BOUND_SUFFIX, MemoryProbe
from .provenance import case_sources


#: the README's benchmark tables as named suites (``tools/benchmark.py --suite NAME``):
#: the configs (the first is the ratios' reference) and the settings they were measured with
SUITES = {
    # (a) every method's training step vs single-task full fine-tuning; MTLoRA and DiTASK
    # (one shared pass, forks in 4 blocks) beside the T-pass methods
    'a': dict(specs=['configs/single_task_ft_swin-t.py'] + [
        f'configs/{m}_swin-t.py' for m in (
            'decoder_ft', 'multi_task_ft', 'bitfit', 'relative_bias', 'vpt_shallow',
            'vpt_deep', 'phm', 'compacter', 'compacter_pp', 'lora', 'adapter',
            'low_rank_adapter', 'shared_adapter', 'hyperformer', 'polyhistor',
            'polyhistor_lite', 'mtlora', 'ditask', 'free_sinewich', 'tadformer')],
        options=dict(iters=3, warmup=1, profile_iters=0)),
    # (d) inference vs the frozen forward: the T-pass floor first, then the frozen single
    # pass (decoder_ft: what merged MTLoRA is to be within 3 % of)
    'd': dict(specs=[
        'configs/floor_swin-t.py', 'configs/polyhistor_lite_swin-t.py',
        'configs/polyhistor_lite_swin-t.py@bench.eval_cache=0',
        'configs/lora_swin-t.py@model.backbone.tuner.input_norm=False@bench.merge_lora=1',
        'configs/lora_swin-t.py@model.backbone.tuner.input_norm=False',
        'configs/lora_swin-t.py', 'configs/decoder_ft_swin-t.py',
        'configs/mtlora_swin-t.py@bench.merge_lora=1', 'configs/mtlora_swin-t.py',
        'configs/ditask_swin-t.py@bench.merge_lora=1', 'configs/ditask_swin-t.py',
        'configs/free_sinewich_swin-t.py@bench.merge_lora=1', 'configs/free_sinewich_swin-t.py',
        'configs/tadformer_swin-t.py@bench.merge_lora=1', 'configs/tadformer_swin-t.py'],
        options=dict(mode='test', iters=6, warmup=2, profile_iters=0)),
    # (e) the one-pass methods against their floor: the frozen single pass with the backward
    # through the backbone, at each method's own arithmetic (FLOPs counted)
    'e': dict(specs=['configs/floor_single-pass_swin-t.py'] + [
        f'configs/{m}_swin-t.py' for m in ('mtlora', 'ditask', 'free_sinewich', 'tadformer')],
        options=dict(iters=3, warmup=1, profile_iters=0, flops=True)),
    # (f) an mmpretrain encoder: DINOv2 ViT-S/14 at 512 px, its T-pass floor first
    'f': dict(specs=[f'configs/{m}_dinov2-s.py' for m in ('floor', 'lora', 'polyhistor_lite')],
              options=dict(iters=3, warmup=1, profile_iters=0)),
    # (b) Polyhistor-Lite vs the frozen T-pass floor, with a profiled step each
    'b': dict(specs=[
        'configs/floor_swin-t.py', 'configs/polyhistor_lite_swin-t.py',
        'configs/polyhistor_lite_swin-t.py@model.backbone.with_cp=[0,1,2]',
        'configs/polyhistor_lite_swin-t.py@bench.amp=1', 'configs/single_task_ft_swin-t.py'],
        options=dict(iters=3, warmup=1)),
    # (b') activation checkpointing of the frozen blocks, all or some stages
    'b2': dict(specs=['configs/polyhistor_lite_swin-t.py'] + [
        f'configs/polyhistor_lite_swin-t.py@model.backbone.with_cp={cp}'
        for cp in ('True', '[0,1]', '[0]', '[0,1,2]')] + ['configs/single_task_ft_swin-t.py'],
        options=dict(iters=3, warmup=1, profile_iters=0)),
    # (c) the task-stacked pass vs a loop of T per-task passes
    'c': dict(specs=[
        f'configs/{m}_swin-t.py{loop}' for m in ('adapter', 'lora', 'polyhistor_lite')
        for loop in ('', '@model.backbone.task_batching=loop')],
        options=dict(iters=3, warmup=1, profile_iters=0)),
    # the tiny synthetic demo configs (96 x 96, batch 2)
    'tiny': dict(specs=[f'configs/demo/{m}_swin-tiny_synthetic.py' for m in (
        'single_task_ft', 'floor', 'polyhistor_lite', 'polyhistor', 'adapter', 'lora',
        'decoder_ft', 'multi_task_ft')],
        options=dict(batch_size=2, iters=5, warmup=2, profile_iters=0)),
}

#: profiler ranges, in step order; the model opens hypernet, backbone, decoders, losses
RANGES = ('data_preprocessor', 'hypernet', 'backbone', 'decoders', 'losses', 'backward',
          'optimizer')


# ------------------------------------------------------------------ inputs
def random_batch(tasks: Sequence[str], batch_size: int, img_size: int, seed: int = 0,
                 task_specs: Optional[dict] = None) -> dict:
    """What ``PackMultiTaskInputs`` + the dataloader give the model, with random content
    (each label its kind's ``random_label``): uint8 BGR images, class maps within range
    (with a few ignored pixels), saliency 0/1, unit normals (float32), regression values in
    [0.5, 1.5)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from ..tasks import resolve_task_specs
    specs = resolve_task_specs(tasks, task_specs, where='random_batch')
    g = torch.Generator().manual_seed(seed)
    S = img_size
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, S, S), generator=g, dtype=torch.uint8))
        sample = SegDataSample()
        for task in tasks:
            spec = specs[task]
            data = spec.task_kind.random_label(spec, S, g)
            sample.set_data({f'gt_{task}': PixelData(data=data)})
        sample.set_metainfo(dict(img_shape=(S, S), ori_shape=(S, S), tasks=tuple(tasks)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# ------------------------------------------------------------------ config
def parse_spec(spec: str):
    """``CONFIG[@key=value[@key=value...]]`` -> (config path, {key: value}). Keys starting
    with ``bench.`` are benchmark options (``bench.amp``, ``bench.mode``, ``bench.merge_lora``,
    ``bench.eval_cache``), the others config overrides as ``--cfg-options`` takes them."""
    from mmengine.config import DictAction
    path, *opts = spec.split('@')
    options = {}
    for opt in opts:
        if '=' not in opt:
            raise ValueError(f'{spec}: option {opt!r} is not key=value')
        key, value = opt.split('=', 1)
        options[key] = DictAction._parse_iterable(value)
    return path, options


def benchmark_config(path: str, cfg_options: Optional[dict] = None,
                     img_size: Optional[int] = None):
    """The config (``mmpoly.engine.load_config``) with random backbone init (no checkpoint
    is read) and the data preprocessor padding to ``img_size``."""
    from ..engine.config import load_config
    cfg = load_config(path, cfg_options)
    cfg.model.backbone.init_cfg = None
    if img_size is not None and cfg.model.get('data_preprocessor') is not None:
        cfg.model.data_preprocessor.size = (img_size, img_size)
    return cfg


def _truthy(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ('1', 'true', 'yes', 'on')


class Case:
    """One model to measure: built from a config with random weights (zeros with
    ``random_init=False``: building is faster, for checking that configs run), its optimiser,
    a random batch and the step function of ``mode``."""

    def __init__(self, spec: str, cfg_options: Optional[dict] = None, batch_size: int = 1,
                 img_size: Optional[int] = None, mode: str = 'train', device: str = 'cpu',
                 amp: bool = False, seed: int = 0, random_init: bool = True):
        from mmengine.optim import build_optim_wrapper

        from ..engine.optim_wrappers import amp_dtype
        from ..utils.param_count import build_model_without_weights, zero_filled_init
        path, options = parse_spec(spec)
        bench = {k[len('bench.'):]: v for k, v in options.items() if k.startswith('bench.')}
        unknown = set(bench) - {'amp', 'mode', 'merge_lora', 'eval_cache'}
        if unknown:
            raise ValueError(f'{spec}: unknown benchmark option(s) {sorted(unknown)}; known: '
                             f'bench.amp, bench.mode, bench.merge_lora, bench.eval_cache')
        overrides = dict(cfg_options or {})
        overrides.update({k: v for k, v in options.items() if not k.startswith('bench.')})
        self.spec, self.path = spec, path
        self.name = os.path.splitext(os.path.basename(path))[0] + ''.join(
            f' {k.split(".")[-1]}={v}' for k, v in options.items())
        self.mode = bench.get('mode', mode)
        if self.mode not in ('train', 'test'):
            raise ValueError(f'mode must be train or test, got {self.mode!r}')
        self.amp = _truthy(bench.get('amp', amp))
        self.merge_lora = _truthy(bench.get('merge_lora', False))
        self.eval_cache = _truthy(bench.get('eval_cache', True))
        self.device = device
        self.batch_size = batch_size

        cfg = benchmark_config(path, overrides, img_size)
        self.cfg = cfg
        self.img_size = img_size or int(
            (cfg.model.get('data_preprocessor') or {}).get('size', (512, 512))[0])
        torch.manual_seed(seed)
        with nullcontext() if random_init else zero_filled_init():
            model = build_model_without_weights(cfg)
            with _quiet_logs():  # init_weights logs every parameter
                model.init_weights()
        self.model = model.to(device)
        self.tasks = tuple(model.tasks)
        self.batch = random_batch(self.tasks, batch_size, self.img_size, seed,
                                  getattr(model, 'task_specs', None))

        self.optim_wrapper = None
        ow_cfg = copy.deepcopy(cfg.get('optim_wrapper') or dict(
            type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4)))
        if self.amp:  # as tools/train.py --amp
            ow_cfg.type = 'MixedPrecisionOptimWrapper'
            ow_cfg.setdefault('loss_scale', 'dynamic')
            ow_cfg.setdefault('dtype', 'auto')
        self.amp_dtype = amp_dtype(device.split(':')[0], ow_cfg.get('dtype')) if self.amp \
            else None
        if self.mode == 'train':
            self.optim_wrapper = build_optim_wrapper(self.model, ow_cfg)
        self.tuners = [m for m in self.model.modules() if isinstance(m, BaseTuner)]
        if self.merge_lora:
            merged = [t for t in self.tuners if hasattr(t, 'merge')]
            if not merged:
                raise ValueError(f'{spec}: bench.merge_lora=True but the tuner has no merge()')
            for t in merged:
                t.merge()
        self.step = self._train_step if self.mode == 'train' else self._test_step
        compile_cfg = cfg.get('compile', None)
        if compile_cfg:  # as mmengine's Runner: torch.compile the step
            compile_cfg = {} if compile_cfg is True else dict(compile_cfg)
            self.step = torch.compile(self.step, **compile_cfg)
        self.times: List[float] = []
        self.peaks: List[int] = []
        self.peak_methods: List[str] = []  # each recorded peak's MemoryProbe.last_method
        self.last_loss: Optional[float] = None
        self.last_task_losses: Optional[Dict[str, float]] = None  # train: parse_losses' vars
        self.last_outputs: Optional[Dict[str, dict]] = None  # test: each task's prediction

    # -------------------------------------------------------------- steps
    def _autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.split(':')[0], dtype=self.amp_dtype)

    def _train_step(self):
        """``BaseModel.train_step`` with profiler ranges: the optimiser wrapper's context
        (autocast with --amp), forward, ``update_params`` (backward with loss scaling for
        float16, step, zero_grad)."""
        model, ow = self.model, self.optim_wrapper
        model.train()
        with ow.optim_context(model):
            with profile_range('data_preprocessor'):
                data = model.data_preprocessor(self.batch, True)
            losses = model._run_forward(data, mode='loss')
            with profile_range('losses'):
                loss, log_vars = model.parse_losses(losses)
        self.last_task_losses = {k: float(v) for k, v in log_vars.items()}
        with profile_range('backward'):
            ow.backward(loss)
        with profile_range('optimizer'):
            ow.step()
            ow.zero_grad()
        return loss.detach()

    def _test_step(self):
        model = self.model
        model.eval()
        if not self.eval_cache:  # regenerate the hypernetworks' weights every batch
            for t in self.tuners:
                t.clear_cache()
        with torch.no_grad(), self._autocast():
            with profile_range('data_preprocessor'):
                data = model.data_preprocessor(self.batch, False)
            samples = model._run_forward(data, mode='predict')
        # what came out, per task (the smoke runs check every task's map and its values)
        self.last_outputs = {
            task: dict(shape=list(pred.shape), finite=bool(pred.isfinite().all()))
            for task, pred in ((t, samples[0].get(f'pred_{t}').data) for t in self.tasks)}
        return None

    def run_step(self, record: bool = True) -> float:
        """One timed step (seconds); ``record``: kept in ``times``. The allocator is as
        :func:`run_cases` set it for timing; memory is measured in steps of its own
        (:meth:`measure_memory_step`)."""
        sync = torch.cuda.synchronize if self.device.startswith('cuda') else (lambda: None)
        sync()
        t0 = time.perf_counter()
        out = self.step()
        sync()
        dt = time.perf_counter() - t0
        if out is not None:
            self.last_loss = float(out)
        if record:
            self.times.append(dt)
        return dt

    def measure_memory_step(self) -> int:
        """One step under the memory probe: its peak (bytes) and method are recorded."""
        mem = MemoryProbe(self.device)
        mem.start()
        out = self.step()
        peak = mem.stop()
        if out is not None:
            self.last_loss = float(out)
        self.peaks.append(peak)
        self.peak_methods.append(mem.last_method)
        return peak

    def peak_step(self):
        """(bytes, method, upper bound?) of the largest recorded step peak. The largest of
        per-step figures that are each exact or an upper bound is exact when an exact figure
        reaches it (it is then also the largest true peak), else an upper bound."""
        if not self.peaks:
            raise RuntimeError(f'{self.name}: no recorded step, no peak memory')
        peak = max(self.peaks)
        exact = [m for p, m in zip(self.peaks, self.peak_methods)
                 if p == peak and not m.endswith(UPPER_BOUND_SUFFIX)]
        if exact:
            return peak, exact[0], False
        return peak, self.peak_methods[self.peaks.index(peak)], True

    def state_bytes(self) -> int:
        """Parameters, buffers and optimiser state held between steps."""
        seen, total = set(), 0
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        if self.optim_wrapper is not None:
            for st in self.optim_wrapper.optimizer.state.values():
                tensors += [v for v in st.values() if torch.is_tensor(v)]
        for t in self.tuners:  # cached generated / merged weights
            tensors += t.cached_tensors()
        for t in tensors:
            key = (t.data_ptr(), t.numel())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
        return total

    # -------------------------------------------------------------- analysis
    def profile(self, iters: int = 1) -> Dict[str, float]:
        """ms per step inside each ``mmpoly::`` range (backbone without the hypernetwork)."""
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as tprofile
        activities = [ProfilerActivity.CPU]
        cuda = self.device.startswith('cuda')
        if cuda:
            activities.append(ProfilerActivity.CUDA)
        with tprofile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(iters):
                self.step()
            if cuda:
                torch.cuda.synchronize()
            total = (time.perf_counter() - t0) / iters * 1e3
        ms = {name: 0.0 for name in RANGES}
        for evt in prof.key_averages():
            if evt.key.startswith(PREFIX):
                name = evt.key[len(PREFIX):]
                t = evt.cpu_time_total
                if cuda:
                    t = max(t, getattr(evt, 'device_time_total', 0) or 0)
                ms[name] = ms.get(name, 0.0) + t / 1e3 / iters
        ms['backbone'] = max(0.0, ms['backbone'] - ms['hypernet'])
        ms['other'] = max(0.0, total - sum(ms[n] for n in RANGES))
        ms['profiled_step'] = total
        return ms

    def count_flops(self) -> int:
        """Floating-point operations of one step, forward and backward: the matrix products
        and convolutions, as ``torch.utils.flop_counter`` counts them (2 per multiply-add;
        elementwise work, norms and softmax are not counted)."""
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            self.step()
        return int(counter.get_total_flops())

    def hypernet_cost_ms(self, iters: int = 3) -> Optional[float]:
        """Generation of every adapter's weights, forward and backward, in isolation (the
        whole cost of the hypernetworks in a training step); None without hypernetworks."""
        tuners = [t for t in self.tuners if getattr(t, 'generates_weights', False)]
        if not tuners or self.mode != 'train':
            return None
        times = []
        sync = torch.cuda.synchronize if self.device.startswith('cuda') else (lambda: None)
        for _ in range(iters):
            sync()
            t0 = time.perf_counter()
            for t in tuners:
                out = t.generate_weights()
                total = sum(x.float().sum() for x in _tensors_in(out) if x.requires_grad)
                if torch.is_tensor(total):
                    total.backward()
            sync()
            times.append(time.perf_counter() - t0)
        self.model.zero_grad(set_to_none=True)
        return statistics.median(times) * 1e3

    def summary(self) -> dict:
        times = sorted(self.times)
        med = statistics.median(times)
        state = self.state_bytes()
        peak_step, mem_method, upper_bound = self.peak_step()
        return dict(
            config=self.path,
            name=self.name,
            mode=self.mode,
            device=self.device,
            amp=str(self.amp_dtype).replace('torch.', '') if self.amp else False,
            batch_size=self.batch_size,
            img_size=self.img_size,
            iters=len(times),
            step_time_s=dict(median=med, q25=_quantile(times, 0.25), q75=_quantile(times, 0.75),
                             min=times[0], max=times[-1], all=self.times),
            images_per_s=self.batch_size / med,
            peak_mem_mb=(state + peak_step) / 2**20,
            state_mb=state / 2**20,
            peak_step_mb=peak_step / 2**20,
            mem_method=mem_method,
            # the method ends in '_upper_bound': peak_step_mb and peak_mem_mb are upper bounds
            mem_upper_bound=upper_bound,
            loss=self.last_loss,
            spec=self.spec,
            task_losses=self.last_task_losses,
            outputs=self.last_outputs,
            trainable_params=sum(p.numel() for p in self.model.parameters()
                                 if p.requires_grad),
            # the repository files this case ran (config chain, model code): blob ids
            sources=case_sources(self.path, self.model),
        )


@contextmanager
def _quiet_logs():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _tensors_in(obj) -> List[torch.Tensor]:
    """Every tensor in nested dicts / tuples / lists / dataclasses."""
    if obj is None:
        return []
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v)]
    if hasattr(obj, '__dataclass_fields__'):
        return [t for f in obj.__dataclass_fields__ for t in _tensors_in(getattr(obj, f))]
    return []


# ------------------------------------------------------------------ runs
def run_cases(cases: Sequence[Case], iters: int, warmup: int, profile_iters: int = 1,
              log=print, flops: bool = False, memory_iters: int = 1) -> None:
    """Warm up every case and measure its peak memory (``memory_iters`` steps under the
    memory probe), then time them round-robin (``iters`` rounds, after one untimed step each)
    so that the load of a shared machine falls on all of them alike; then the profiled
    breakdown and ``flops`` (each step's arithmetic) of each.

    The CPU probe's allocator settings make every step fault its memory in afresh, so no
    timed step runs under them; and memory comes first, because activations freed into the
    heap under the timing settings would serve the probe's step from fragmented heap (its
    peak then varies by 10 % from step to step) instead of from pages mapped per tensor
    (see :mod:`.memory`)."""
    MemoryProbe.configure_malloc()
    for case in cases:
        for _ in range(warmup):
            case.run_step(record=False)
        for _ in range(memory_iters):
            case.measure_memory_step()
    MemoryProbe.configure_malloc_for_timing()
    for case in cases:  # the heap grows to a step's size under the timing settings
        case.run_step(record=False)
    for i in range(iters):
        for case in cases:
            dt = case.run_step()
            log(f'round {i + 1}/{iters} {case.name}: {dt:.3f} s')
    for case in cases:
        case.breakdown = case.profile(profile_iters) if profile_iters else None
        case.hypernet_ms = case.hypernet_cost_ms() if profile_iters else None
        case.flops = case.count_flops() if flops else None


def case_result(case: Case) -> dict:
    out = case.summary()
    bd = getattr(case, 'breakdown', None)
    out['breakdown_ms'] = bd
    if bd:
        out['breakdown_frac'] = {k: v / bd['profiled_step'] for k, v in bd.items()
                                 if k != 'profiled_step'}
    hn = getattr(case, 'hypernet_ms', None)
    out['hypernet_fwd_bwd_ms'] = hn
    out['hypernet_frac'] = None if hn is None else hn / 1e3 / out['step_time_s']['median']
    out['step_flops'] = getattr(case, 'flops', None)
    return out
