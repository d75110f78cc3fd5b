# VPT-deep: 50 prompt tokens at every layer, one set per task.
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone=dict(tuner=dict(type='VPT', num_tokens=50, deep=True)))
