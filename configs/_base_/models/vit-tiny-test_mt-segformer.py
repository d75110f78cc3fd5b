# A DINOv2-shaped ViT (same classes as DINOv2 ViT-S/14: mmpretrain's VisionTransformer with
# layer scale, patch 14, Feature2Pyramid; width 32, 4 layers) for CPU demos and tests: random
# init, so nothing has to be downloaded.
_base_ = ['./dinov2-s_mt-segformer.py']
model = dict(
    backbone=dict(
        encoder=dict(
            arch=dict(_delete_=True, embed_dims=32, num_layers=4, num_heads=2,
                      feedforward_channels=128),
            img_size=96,
            drop_path_rate=0.0),
        neck=dict(embed_dim=32),
        init_cfg=None),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=64))
