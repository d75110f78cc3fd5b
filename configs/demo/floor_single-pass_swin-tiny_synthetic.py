# CPU demo of configs/floor_single-pass_swin-t.py (benchmarks and tests only): the frozen
# narrow Swin run once on B images, backpropagated through every layer.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='FrozenSharedPass')))
