# ConvNeXt-V2-T (FCMAE pre-trained) + SegFormer heads on NYUD-v2 (the reference's recipe).
# Model, dataset, schedule and runtime; a method config inherits this and sets
# `model.backbone.tuner`.
_base_ = [
    '../models/convnextv2-t_mt-segformer.py',
    '../datasets/nyud_mt.py',
    '../schedules/schedule_100e.py',
    '../default_runtime.py',
]
# the one line joining them: the dataset's tasks, the class declaring their specs, its size
model = dict(tasks=_base_.tasks, task_source=_base_.dataset_type,
             data_preprocessor=dict(size=_base_.crop_size))
