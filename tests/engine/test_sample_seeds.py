"""Per-sample seeds (``EpochSeededDataset``): a sample's augmentations are those its seed
gives every generator a transform may use; loading in the main process (num_workers=0) leaves
that process's generators, the GPUs' included, as they were."""
import random

import numpy as np
import torch
from mmengine.registry import init_default_scope

import mmpoly  # noqa: F401  (registration)
from mmpoly.datasets import make_synthetic_pascal_mt
from mmpoly.engine.config import load_config
from mmpoly.engine.exact_resume import EpochSeededDataset

DEMO = 'configs/demo/polyhistor_lite_swin-tiny_synthetic.py'


def train_dataset(root):
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    cfg = load_config(DEMO, {'train_dataloader.dataset.data_root': root})
    return DATASETS.build(cfg.train_dataloader.dataset)


def same_sample(a, b):
    assert a['inputs'].dtype == b['inputs'].dtype and torch.equal(a['inputs'], b['inputs'])
    la, lb = a['data_samples'], b['data_samples']
    tasks = [k for k in la.keys() if k.startswith('gt_')]
    assert len(tasks) == 4 and sorted(tasks) == sorted(k for k in lb.keys() if k.startswith('gt_'))
    for task in tasks:
        assert torch.equal(la.get(task).data, lb.get(task).data), task


def test_a_sample_is_its_seeds_draw_and_the_main_process_generators_stay(
        tmp_path, monkeypatch):
    root = str(tmp_path / 'synthetic_mt')
    make_synthetic_pascal_mt(root, num_train=4, num_val=1, image_size=(96, 128), seed=0)
    dataset = train_dataset(root)
    assert isinstance(dataset, EpochSeededDataset)
    dataset.set_sample_seed(123, epoch=2)
    reseeded = []
    monkeypatch.setattr(torch.cuda, 'manual_seed_all', lambda seed: reseeded.append(seed))

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    reseeded.clear()
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    samples = [dataset[i] for i in range(4)]
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
    assert reseeded == []  # no GPU generator was reseeded

    # the oracle: every generator seeded with the sample's seed, then the plain dataset
    for i, sample in enumerate(samples):
        seed = dataset.sample_seed(i)
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
        same_sample(sample, super(EpochSeededDataset, dataset).__getitem__(i))
    assert len({dataset.sample_seed(i) for i in range(4)}) == 4
    dataset.set_sample_seed(123, epoch=3)  # another epoch: other draws
    assert not torch.equal(dataset[0]['inputs'], samples[0]['inputs'])
