# CPU demo of configs/tadformer_swin-t.py (the same tuner, rank 8 for the narrow Swin) on the
# narrow Swin and the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='TADFormer', rank=8)))
