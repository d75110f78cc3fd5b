# BitFit: every backbone bias and the relative-position-bias tables, one copy per task.
# Backbone: Swin-T (MoBY self-supervised).
_base_ = ['./_base_/setups/pascal_moby-t.py']
model = dict(backbone=dict(tuner=dict(type='BitFit')))
