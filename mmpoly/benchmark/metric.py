"""Milliseconds per image of a config's validation metric (``tools/benchmark.py --metric``).

The validation loop scores each image on the CPU between two forward passes, so on a GPU
this time adds to every image's. The labels are the validation pipeline's (at each image's
original size, as evaluated), the predictions random logits through each task kind's
``predict``: the metric's work does not depend on how good they are. The data is the
config's or a synthetic copy in its format (:func:`.data.benchmark_dataset`).
"""
import time
from typing import Optional

import torch

from .data import benchmark_dataset


def metric_time(path: str, num_images: int = 16, data_root: Optional[str] = None,
                seed: int = 0) -> dict:
    """Median milliseconds of ``val_evaluator``'s ``process`` per image (one image a call),
    each image once after one untimed warm-up call; ``metrics``: the keys the evaluator then
    reports over all of them."""
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.structures import PixelData

    from mmpoly.tasks import TaskSpec
    cfg = Config.fromfile(path)
    dataset, ds_cfg = benchmark_dataset(cfg, 'val', num_images + 1, data_root)
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    specs = {task: TaskSpec.from_any(spec, f'task_specs.{task}')
             for task, spec in dataset.metainfo['task_specs'].items()}
    generator = torch.Generator().manual_seed(seed)

    def scored_sample(index):
        sample = dataset[index % len(dataset)]['data_samples']
        for task, spec in specs.items():
            gt = getattr(sample, f'gt_{task}', None)
            if gt is None:
                continue
            logits = torch.randn(spec.num_outputs, *gt.shape, generator=generator)
            sample.set_data({f'pred_{task}': PixelData(data=spec.task_kind.predict(logits))})
        return sample

    samples = [scored_sample(i) for i in range(num_images + 1)]
    tasks = sorted(task for task in specs if f'pred_{task}' in samples[0])
    evaluator.process([samples[0]])  # warm-up: lazy imports, compiled kernels
    times = []
    for sample in samples[1:]:
        t0 = time.perf_counter()
        evaluator.process([sample])
        times.append(time.perf_counter() - t0)
    times.sort()
    scores = evaluator.evaluate(len(samples))  # every task scored: nothing was skipped
    return dict(config=path, data_root=ds_cfg.data_root, images=num_images,
                tasks=tasks, image_shape=list(samples[1].ori_shape),
                ms_per_image=1e3 * times[len(times) // 2],
                ms_range=[1e3 * times[0], 1e3 * times[-1]], metrics=sorted(scores))
