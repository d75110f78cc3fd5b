# CPU demo of configs/floor_swin-t.py: the frozen narrow Swin run once per task, no tuner.
_base_ = ['../_base_/demo_swin-tiny_synthetic.py']
model = dict(backbone=dict(tuner=dict(type='FrozenTaskStacked')))
