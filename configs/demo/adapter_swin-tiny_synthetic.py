# CPU demo of configs/adapter_swin-t.py (same tuner) on the synthetic PASCAL_MT.
_base_ = ['../_base_/demo_swin-tiny_synthetic.py']
model = dict(backbone=dict(tuner=dict(type='Adapter', reduction=2)))
