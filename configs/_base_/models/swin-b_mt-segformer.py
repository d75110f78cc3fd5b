# Swin-B (ImageNet-1k, official release, window 7) + one SegFormer decoder per task.
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(
        embed_dims=128,
        depths=[2, 2, 18, 2],
        num_heads=[4, 8, 16, 32],
        init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/'
                      'swin_base_patch4_window7_224.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
