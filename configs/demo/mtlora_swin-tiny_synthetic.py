# CPU demo of configs/mtlora_swin-t.py (same tuner, a smaller TA rank for the narrow Swin) on
# the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='MTLoRA', rank=8, task_rank=4, shared_scale=4.0)))
