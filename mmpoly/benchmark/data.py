"""The CPU work around the step, on a config's own dataset: the training pipeline's
throughput (``tools/benchmark.py --data``) and, in :mod:`.metric`, the validation metric.

Both read the config's data root, or ``--data-root``; where that is missing (the data is
not on this machine) a synthetic copy in the dataset's own on-disk format is generated at
its images' size, at the given ``--data-root`` or under ``data/synthetic_bench/<dataset
type>``. A synthetic image decodes faster than a real JPEG photo (flat regions compress
well), so real data is somewhat slower.
"""
import copy
import os
import time
from typing import Optional, Tuple

#: the images' size of each dataset (rows, columns), for its synthetic copy
IMAGE_SIZES = {'PascalContextMTDataset': (375, 500), 'NYUDMTDataset': (480, 640)}


def benchmark_dataset(cfg, split: str, num_samples: int,
                      data_root: Optional[str] = None) -> Tuple[object, dict]:
    """(the dataset, its config) of the loaded config ``cfg``'s ``split`` ('train' or 'val')
    loader.

    ``data_root`` replaces the config's root. A config without ``auto_generate`` whose root
    is missing reads a synthetic copy of ``num_samples`` images in each split, generated on
    first use: at ``data_root`` when it was given, else under
    ``data/synthetic_bench/<dataset type>`` (one root per dataset, cycled by a caller that
    asks for more samples than it holds). The returned config has ``auto_generate`` when the
    data is synthetic (the config's own generated dataset or such a copy; an existing
    ``data_root`` counts as real data)."""
    from mmengine.registry import init_default_scope

    import mmpoly  # noqa: F401
    from mmseg.registry import DATASETS
    if split not in ('train', 'val'):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    ds_cfg = copy.deepcopy(cfg.get(f'{split}_dataloader').dataset)
    if data_root is not None:
        ds_cfg.data_root = data_root
        if ds_cfg.get('auto_generate'):  # an explicit root: generating there is asked for
            ds_cfg.auto_generate['root'] = data_root
    if not ds_cfg.get('auto_generate') and not os.path.isdir(ds_cfg.get('data_root', '')):
        if data_root is None:
            ds_cfg.data_root = f'data/synthetic_bench/{ds_cfg.type}'
        ds_cfg.auto_generate = dict(num_train=num_samples, num_val=num_samples, seed=0,
                                    image_size=IMAGE_SIZES.get(ds_cfg.type, (375, 500)))
    return DATASETS.build(ds_cfg), ds_cfg


def data_throughput(path: str, num_samples: int = 32,
                    data_root: Optional[str] = None) -> dict:
    """Samples per second of the training pipeline in one process (= per dataloader worker),
    over ``num_samples`` samples (the dataset's, cycled if it has fewer) after one warm-up."""
    from mmengine.config import Config
    dataset, ds_cfg = benchmark_dataset(Config.fromfile(path), 'train', num_samples, data_root)
    dataset[0]  # warm up (lazy init, file cache)
    t0 = time.perf_counter()
    for i in range(num_samples):
        dataset[i % len(dataset)]
    dt = time.perf_counter() - t0
    sample = dataset[0]
    return dict(config=path, data_root=ds_cfg.data_root,
                synthetic=bool(ds_cfg.get('auto_generate')), samples=num_samples,
                distinct_samples=min(num_samples, len(dataset)), seconds=dt,
                samples_per_s_per_worker=num_samples / dt,
                sample_shape=list(sample['inputs'].shape))
