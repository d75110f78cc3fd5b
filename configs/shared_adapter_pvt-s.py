# Shared Adapter: one adapter set for all tasks, task-specific adapter norms.
# Backbone: PVT-Small (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_pvt-s.py']
model = dict(backbone=dict(tuner=dict(type='SharedAdapter', reduction=2)))
