# Shared Adapter: one adapter set for all tasks, task-specific adapter norms.
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='SharedAdapter', reduction=2)))
