# DINOv2 ViT-B/14 (mmpretrain's VisionTransformer, unmodified; vit-base-p14_dinov2-pre_3rdparty
# in mmpretrain's model index): the ViT-S/14 architecture at width 768.
_base_ = ['./dinov2-s_mt-segformer.py']
model = dict(
    backbone=dict(
        encoder=dict(arch='base'),
        neck=dict(embed_dim=768),
        init_cfg=dict(checkpoint=('https://download.openmmlab.com/mmpretrain/v1.0/dinov2/'
                                  'vit-base-p14_dinov2-pre_3rdparty_20230426-ba246503.pth'))),
    decode_head=dict(in_channels=[768, 768, 768, 768]))
