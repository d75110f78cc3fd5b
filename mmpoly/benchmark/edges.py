"""The cost of the edge metric (ODS / OIS over 99 thresholds) on one image.

A synthetic label of straight edges and a prediction that peaks on them with noise
everywhere (so that low thresholds keep many pixels, as a network's early maps do), at the
NYUD-v2 size and tolerance by default. ``tools/benchmark_edges.py`` prints the result.
"""
import time

import numpy as np


def synthetic_edge_pair(height: int, width: int, seed: int = 0, lines: int = 40):
    """(probability map float32 (H, W), binary label uint8 (H, W))."""
    from scipy.ndimage import distance_transform_edt
    rng = np.random.default_rng(seed)
    label = np.zeros((height, width), np.uint8)
    for _ in range(lines):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        angle, length = rng.uniform(0, np.pi), rng.integers(height // 10, height // 2 + 2)
        t = np.arange(length)
        ys = np.clip((y0 + t * np.sin(angle)).astype(int), 0, height - 1)
        xs = np.clip((x0 + t * np.cos(angle)).astype(int), 0, width - 1)
        label[ys, xs] = 1
    near = np.exp(-distance_transform_edt(label == 0) / 3.0)
    prob = near * rng.uniform(0.5, 1.0, label.shape) + rng.uniform(0, 0.3, label.shape)
    return np.clip(prob, 0, 1).astype(np.float32), label


def time_edge_eval(height: int = 480, width: int = 640, images: int = 2,
                   max_dist: float = 0.011, seed: int = 0, impl: str = 'compiled') -> dict:
    """Seconds per image of ``edge_image_stats`` (thinning and matching at 99 thresholds),
    ``impl`` 'compiled' or 'reference' (scikit-image and scipy, the implementation before);
    the compiled kernels are loaded (or compiled) on a small pair first, untimed."""
    from ..evaluation.metrics.functional import edge_image_stats, edge_scores
    edge_image_stats(*synthetic_edge_pair(24, 32, seed), max_dist=max_dist, impl=impl)
    seconds, cpu_seconds, stats = [], [], []
    for i in range(images):
        prob, label = synthetic_edge_pair(height, width, seed + i)
        start, cpu_start = time.perf_counter(), time.process_time()
        stats.append(edge_image_stats(prob, label, max_dist=max_dist, impl=impl))
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return dict(height=height, width=width, max_dist=max_dist, images=images, impl=impl,
                seconds_per_image=float(np.median(seconds)), seconds=seconds,
                cpu_seconds_per_image=float(np.median(cpu_seconds)),
                label_pixels=[int(s[1, 0]) for s in stats],
                odsF=edge_scores(stats)['odsF'])
