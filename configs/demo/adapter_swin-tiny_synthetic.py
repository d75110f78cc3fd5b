# CPU demo of configs/adapter_swin-t.py (same tuner) on the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=2)))
