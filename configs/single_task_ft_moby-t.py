# Single-task full fine-tuning: one backbone per task, each trained in full (the delta_m reference).
# Backbone: Swin-T (MoBY self-supervised).
_base_ = [
    '_base_/models/moby-t_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone_per_task=True, backbone=dict(tuner=dict(type='FullFineTuning')))
