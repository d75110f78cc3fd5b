# CPU demo of configs/polyhistor_swin-t.py (same tuner) on the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_swin-tiny.py']
model = dict(
    backbone=dict(
        tuner=dict(type='Polyhistor', reduction=16, rank_ratio=0.25, task_embed_dim=64)))
