# SwinV2-T (window 8) + SegFormer heads on PASCAL-Context (the paper's protocol).
# Model, dataset, schedule and runtime; a method config inherits this and sets
# `model.backbone.tuner`.
_base_ = [
    '../models/swinv2-t_mt-segformer.py',
    '../datasets/pascal_context_mt.py',
    '../schedules/schedule_60e.py',
    '../default_runtime.py',
]
# the one line joining them: the dataset's tasks, the class declaring their specs, its size
model = dict(tasks=_base_.tasks, task_source=_base_.dataset_type,
             data_preprocessor=dict(size=_base_.crop_size))
