# PHM layer: PHM adapters (dimension 4) after attention and after the MLP, per task.
# Backbone: Swin-T (MoBY self-supervised).
_base_ = [
    '_base_/models/moby-t_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone=dict(tuner=dict(type='PHMAdapter', phm_dim=4)))
