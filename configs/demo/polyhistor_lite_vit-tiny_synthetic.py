# CPU demo of configs/polyhistor_lite_dinov2-s.py (same tuner) on the DINOv2-shaped tiny ViT
# (mmpretrain's VisionTransformer) and the synthetic PASCAL_MT.
_base_ = ['../_base_/setups/synthetic_vit-tiny.py']
model = dict(
    backbone=dict(
        tuner=dict(type='PolyhistorLite', reduction=2, rank_ratio=0.25, task_embed_dim=64)))
