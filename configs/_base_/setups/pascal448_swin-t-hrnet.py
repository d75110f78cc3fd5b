# the MTLoRA protocol: Swin-T + HRNet-style heads on PASCAL-Context at 448.
# Model, dataset, schedule and runtime; a method config inherits this and sets
# `model.backbone.tuner`.
_base_ = [
    '../models/swin-t_mt-hrnet.py',
    '../datasets/pascal_context_mt_448.py',
    '../schedules/schedule_mtlora.py',
    '../default_runtime.py',
]
# the one line joining them: the dataset's tasks, the class declaring their specs, its size
model = dict(tasks=_base_.tasks, task_source=_base_.dataset_type,
             data_preprocessor=dict(size=_base_.crop_size))
