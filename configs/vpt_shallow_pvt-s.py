# VPT-shallow: 50 prompt tokens at the first layer, one set per task.
# Backbone: PVT-Small (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_pvt-s.py']
model = dict(backbone=dict(tuner=dict(type='VPT', num_tokens=50, deep=False)))
