# Shared Adapter: one adapter set for all tasks, task-specific adapter norms.
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='SharedAdapter', reduction=2)))
