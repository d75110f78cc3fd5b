# Relative bias: Swin's relative-position-bias tables, one copy per task.
# Backbone: Swin-B (ImageNet-22k).
_base_ = ['./_base_/setups/pascal_swin-b-in22k.py']
model = dict(backbone=dict(tuner=dict(type='RelativeBias')))
