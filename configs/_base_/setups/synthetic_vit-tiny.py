# CPU demos: the DINOv2-shaped tiny ViT on the synthetic PASCAL_MT, a short schedule.
# Model, dataset, schedule and runtime; a method config inherits this and sets
# `model.backbone.tuner`.
_base_ = [
    '../models/vit-tiny-test_mt-segformer.py',
    '../datasets/synthetic_mt.py',
    '../schedules/schedule_demo.py',
    '../default_runtime.py',
]
# the one line joining them: the dataset's tasks, the class declaring their specs, its size
model = dict(tasks=_base_.tasks, task_source=_base_.dataset_type,
             data_preprocessor=dict(size=_base_.crop_size))
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=10, max_keep_ckpts=1))
