# Shared Adapter: one adapter set for all tasks, task-specific adapter norms.
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone=dict(tuner=dict(type='SharedAdapter', reduction=2)))
