# CPU demo of configs/lora_swin-t.py (same tuner) on the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='LoRA', rank=4, scale=4.0)))
