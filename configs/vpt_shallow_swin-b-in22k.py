# VPT-shallow: 50 prompt tokens at the first layer, one set per task.
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='VPT', num_tokens=50, deep=False)))
