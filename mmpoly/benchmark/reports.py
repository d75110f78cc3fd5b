"""Benchmark reports: ratios against the first case, the machine, text / markdown / JSON."""

import json
import os
import platform
import statistics
from typing import List, Sequence

import torch

from .cases import RANGES


def ratios(results: Sequence[dict]) -> List[dict]:
    """Each result against the first: ratio of median step times, median of the per-round
    ratios (with interleaved rounds a slow moment hits both), peak memory ratio; with FLOPs
    counted, each against its floor: its own FLOPs at the first's time per FLOP, i.e. the
    per-round time ratio times (the first's FLOPs / its FLOPs)."""
    ref = results[0]
    out = []
    for r in results:
        paired = [a / b for a, b in zip(r['step_time_s']['all'], ref['step_time_s']['all'])]
        row = dict(
            name=r['name'],
            time_ratio=r['step_time_s']['median'] / ref['step_time_s']['median'],
            time_ratio_paired=statistics.median(paired),
            time_ratio_paired_min=min(paired),
            time_ratio_paired_max=max(paired),
            mem_ratio=r['peak_mem_mb'] / ref['peak_mem_mb'] if ref['peak_mem_mb'] else None)
        if r.get('step_flops') and ref.get('step_flops'):
            arithmetic = r['step_flops'] / ref['step_flops']
            row.update(flops_ratio=arithmetic,
                       floor_s=ref['step_time_s']['median'] * arithmetic,
                       floor_ratio_paired=statistics.median(paired) / arithmetic,
                       floor_ratio_paired_min=min(paired) / arithmetic,
                       floor_ratio_paired_max=max(paired) / arithmetic)
        out.append(row)
    return out


# ------------------------------------------------------------------ report
def machine_info(device: str) -> dict:
    info = dict(platform=platform.platform(), cpu=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), torch=torch.__version__,
                torch_threads=torch.get_num_threads())
    try:
        info['loadavg'] = os.getloadavg()
    except OSError:
        pass
    if device.startswith('cuda') and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def format_report(report: dict) -> str:
    lines = []
    m = report['machine']
    lines.append(f"machine: {m.get('cpu_count')} CPUs, torch {m['torch']} "
                 f"({m['torch_threads']} threads), {m.get('gpu', 'no GPU')}, "
                 f"load {tuple(round(x, 2) for x in m.get('loadavg', ()))}")
    for r in report['results']:
        st = r['step_time_s']
        lines.append(
            f"{r['name']}: {r['mode']} B={r['batch_size']} {r['img_size']}px "
            f"amp={r['amp']}  step {st['median']:.4f} s (IQR {st['q25']:.4f}-{st['q75']:.4f}, "
            f"min {st['min']:.4f}, max {st['max']:.4f}, n={r['iters']})  "
            f"{r['images_per_s']:.2f} img/s  peak mem {r['peak_mem_mb']:.1f} MB "
            f"(state {r['state_mb']:.1f} + step {r['peak_step_mb']:.1f}, {r['mem_method']})")
        bd = r.get('breakdown_ms')
        if bd:
            parts = ', '.join(f'{k} {bd[k]:.1f}' for k in (*RANGES, 'other') if bd.get(k))
            lines.append(f"    breakdown (ms, one profiled step of {bd['profiled_step']:.1f}):"
                         f' {parts}')
        if r.get('hypernet_fwd_bwd_ms') is not None:
            lines.append(f"    hypernetwork generation fwd+bwd: {r['hypernet_fwd_bwd_ms']:.2f} ms"
                         f" = {100 * r['hypernet_frac']:.2f}% of the step")
        if r.get('step_flops'):
            lines.append(f"    arithmetic: {r['step_flops'] / 1e9:.1f} GFLOP per step")
    if len(report['results']) > 1:
        lines.append('ratios to the first (time: median of interleaved per-round ratios '
                     '[min-max]; memory: peak):')
        for q in report['ratios']:
            mem = 'n/a' if q['mem_ratio'] is None else f"{q['mem_ratio']:.3f}"
            lines.append(f"  {q['name']}: time x{q['time_ratio_paired']:.3f} "
                         f"[{q['time_ratio_paired_min']:.3f}-{q['time_ratio_paired_max']:.3f}]"
                         f" (medians x{q['time_ratio']:.3f})  memory x{mem}")
            if 'floor_ratio_paired' in q:
                lines.append(f"    vs its floor ({q['floor_s']:.3f} s: its FLOPs at the "
                             f"first's rate): x{q['floor_ratio_paired']:.3f} "
                             f"[{q['floor_ratio_paired_min']:.3f}-"
                             f"{q['floor_ratio_paired_max']:.3f}]")
    if report.get('metric'):
        m = report['metric']
        lines.append(f"validation metric {m['config']} ({m['data_root']}, "
                     f"{m['image_shape'][0]} x {m['image_shape'][1]}): {m['ms_per_image']:.2f} "
                     f"ms per image [{m['ms_range'][0]:.2f}-{m['ms_range'][1]:.2f}]")
    if report.get('data'):
        d = report['data']
        lines.append(f"data pipeline {d['config']} ({d['data_root']}): "
                     f"{d['samples_per_s_per_worker']:.2f} samples/s per worker")
        for r in report['results']:
            if r['mode'] == 'train':
                need = r['images_per_s'] / d['samples_per_s_per_worker']
                lines.append(f"  {r['name']} consumes {r['images_per_s']:.2f} img/s: "
                             f'{need:.2f} workers keep up')
    return '\n'.join(lines)


def format_markdown(report: dict) -> str:
    """The report as the README's tables: one row per config, ratios to the first."""
    results, ratio_rows = report['results'], report['ratios']
    with_breakdown = any(r.get('breakdown_ms') for r in results)
    with_floor = any('floor_ratio_paired' in q for q in ratio_rows)
    head = ['config', 'step (s, median) [min-max]', 'time vs first [min-max]',
            'peak memory (MB) (state + step)', 'memory vs first']
    if with_floor:
        head += ['GFLOP per step', 'floor (s): its FLOPs at the first\'s rate',
                 'time vs its floor [min-max]']
    if with_breakdown:
        head.append('breakdown of a profiled step')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r, q in zip(results, ratio_rows):
        st = r['step_time_s']
        mem = 'n/a' if q['mem_ratio'] is None else f"{q['mem_ratio']:.2f}"
        row = [f"`{r['name']}`", f"{st['median']:.2f} [{st['min']:.2f}-{st['max']:.2f}]",
               f"{q['time_ratio_paired']:.3f} [{q['time_ratio_paired_min']:.3f}-"
               f"{q['time_ratio_paired_max']:.3f}]",
               f"{r['peak_mem_mb']:.0f} ({r['state_mb']:.0f} + {r['peak_step_mb']:.0f})", mem]
        if with_floor:
            row += [f"{r['step_flops'] / 1e9:.1f}", f"{q['floor_s']:.2f}",
                    f"{q['floor_ratio_paired']:.3f} [{q['floor_ratio_paired_min']:.3f}-"
                    f"{q['floor_ratio_paired_max']:.3f}]"]
        if with_breakdown:
            frac = r.get('breakdown_frac') or {}
            part = ', '.join(f'{k} {100 * frac[k]:.0f}%' for k in RANGES[1:]
                             if frac.get(k, 0) >= 5e-4)
            if r.get('hypernet_fwd_bwd_ms') is not None:
                part += (f"; hypernet fwd+bwd alone {r['hypernet_fwd_bwd_ms']:.0f} ms = "
                         f"{100 * r['hypernet_frac']:.2f}% of the step")
            row.append(part)
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def to_json(report: dict) -> str:
    return json.dumps(report, default=str)
