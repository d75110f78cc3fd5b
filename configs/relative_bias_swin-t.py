# Relative bias: Swin's relative-position-bias tables, one copy per task.
# Backbone: Swin-T (ImageNet-1k).
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(backbone=dict(tuner=dict(type='RelativeBias')))
