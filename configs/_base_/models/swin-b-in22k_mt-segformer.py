# Swin-B pretrained on ImageNet-22k (official release, window 7).
_base_ = ['./swin-b_mt-segformer.py']
model = dict(
    backbone=dict(init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/'
                                'swin_base_patch4_window7_224_22k.pth')))
