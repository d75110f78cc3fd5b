# CPU demo of configs/floor_swin-t.py: the frozen narrow Swin run once per task, no tuner.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='FrozenTaskStacked')))
