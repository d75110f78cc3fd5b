# Adapter (lambda = 16, the paper's setting on this backbone) beside every MLP, one per
# task; sweep lambda with --cfg-options model.backbone.tuner.reduction=8
# Backbone: PVT-Small (ImageNet-1k).
_base_ = [
    '_base_/models/pvt-s_mt-segformer.py', '_base_/datasets/pascal_context_mt.py',
    '_base_/schedules/schedule_60e.py', '_base_/default_runtime.py'
]
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=16)))
