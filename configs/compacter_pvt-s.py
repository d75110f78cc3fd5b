# Compacter: PHM adapters (dimension 4) with rank-1 fast weights, after attention and MLP.
# Backbone: PVT-Small (ImageNet-1k).
_base_ = [
    '_base_/models/pvt-s_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone=dict(tuner=dict(type='Compacter', phm_dim=4)))
