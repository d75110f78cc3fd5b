"""A new dataset is one module plus one config, outside this repository: the module
registers a dataset class whose METAINFO declares its tasks (here a depth-like regression
task and a 5-class task), the config inherits a demo config; the tools train, test and count
it without any change to mmpoly (tasks are data: every component reads the task's kind)."""
import json
import os.path as osp
import textwrap

import numpy as np
from PIL import Image

from .conftest import REPO, run_tool

DATASET = textwrap.dedent('''
    """A toy dataset with a depth-like regression task and a 5-class task (a user's)."""
    import os.path as osp

    from mmseg.registry import DATASETS
    from mmpoly.datasets import MultiTaskDataset


    @DATASETS.register_module()
    class ToyDepthDataset(MultiTaskDataset):
        METAINFO = dict(
            tasks=('depth', 'five'),
            task_specs=dict(
                depth=dict(kind='regression', num_outputs=1, label_format='npy',
                           ignore_index=0),
                five=dict(kind='class', num_outputs=5, label_format='class_png',
                          classes=('a', 'b', 'c', 'd', 'e'))))

        def __init__(self, split='train', **kwargs):
            self.split = split
            super().__init__(**kwargs)

        def load_data_list(self):
            with open(osp.join(self.data_root, self.split + '.txt')) as f:
                ids = f.read().split()
            return [dict(img_path=osp.join(self.data_root, i + '.jpg'), img_id=i,
                         label_paths=dict(depth=osp.join(self.data_root, i + '_depth.npy'),
                                          five=osp.join(self.data_root, i + '_five.png')))
                    for i in ids]
''')

CONFIG = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['mmpoly', 'toy_depth'], allow_failed_imports=False)
tasks = ('depth', 'five')
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='MTRandomFlip', prob=0.5),
    dict(type='MTResize', scale=(32, 32)),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MTResize', scale=(32, 32)),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
model = dict(
    tasks=tasks,
    task_source='ToyDepthDataset',  # the class declaring the tasks: each kind gives its loss
    data_preprocessor=dict(size=(32, 32)))
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    loader, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_delete_=True, type='ToyDepthDataset', data_root={root!r}, split='train',
                 pipeline=pipeline))
val_dataloader = dict(
    loader, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_delete_=True, type='ToyDepthDataset', data_root={root!r}, split='val',
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='MultiTaskMetric', tasks=tasks,
                     reference=dict(depth=1.0, five=20.0))
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True)]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1), logger=dict(interval=1))
'''


def make_data(root):
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (('train', 4), ('val', 2)):
        ids = [f'{split}{i}' for i in range(n)]
        (root / f'{split}.txt').write_text('\n'.join(ids))
        for i in ids:
            Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(
                root / f'{i}.jpg')
            depth = rng.uniform(0.5, 5.0, (24, 40)).astype(np.float32)
            depth[:2] = 0  # no measurement
            np.save(root / f'{i}_depth.npy', depth)
            five = rng.integers(0, 5, (24, 40)).astype(np.uint8)
            five[-1] = 255
            Image.fromarray(five).save(root / f'{i}_five.png')


def test_a_dataset_from_outside_the_repository(tmp_path, python):
    (tmp_path / 'toy_depth.py').write_text(DATASET)
    make_data(tmp_path / 'toy')
    config = tmp_path / 'toy_swin-tiny.py'
    base = osp.join(REPO, 'configs', 'demo', 'lora_swin-tiny_synthetic.py')
    config.write_text(CONFIG.format(base=base, root=str(tmp_path / 'toy')))

    proc = run_tool(python, 'tools/count_params.py', str(config), '--json',
                    pythonpath=[tmp_path])
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    # a SegFormer decoder per task, 64 wide on the demo Swin (widths 32, 64, 128, 256): four
    # 1x1 convs + BN, the fusion conv + BN, then a 1x1 conv to the task's outputs: 1 + 5 here
    shared = 64 * (32 + 64 + 128 + 256) + 4 * 128 + 4 * 64 * 64 + 128
    assert counts['groups']['decoders'] == 2 * shared + 65 * (1 + 5)
    assert counts['groups']['per-task output norms'] == 2 * 2 * (32 + 64 + 128 + 256)

    work = tmp_path / 'work'
    run_tool(python, 'tools/train.py', str(config), '--work-dir', str(work),
             pythonpath=[tmp_path])
    log = next(work.glob('*/*.log')).read_text()
    assert 'loss_depth' in log and 'loss_five' in log

    proc = run_tool(python, 'tools/test.py', str(config), str(work / 'epoch_1.pth'),
                    '--work-dir', str(work / 'test'), '--out', str(tmp_path / 'pred'),
                    pythonpath=[tmp_path])
    metrics = json.loads((work / 'test' / 'test_metrics.json').read_text())
    metrics = metrics.get('metrics', metrics)
    assert {'depth/rmse', 'depth/mae', 'five/mIoU', 'delta_m'} <= set(metrics)
    assert np.isfinite(metrics['depth/rmse']) and metrics['depth/rmse'] > 0
    assert sorted(p.name for p in (tmp_path / 'pred' / 'depth').iterdir()) == [
        'val0.npy', 'val1.npy']
    assert np.load(tmp_path / 'pred' / 'depth' / 'val0.npy').shape == (1, 24, 40)
