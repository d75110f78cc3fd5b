# A narrow Swin (same classes as Swin-T, 1/3 of its width, window 4) for CPU demos and tests:
# random init, so nothing has to be downloaded.
_base_ = ['./swin-t_mt-segformer.py']
model = dict(
    backbone=dict(
        pretrain_img_size=96,
        embed_dims=32,
        depths=[2, 2, 2, 2],
        num_heads=[1, 2, 4, 8],
        window_size=4,
        drop_path_rate=0.0,
        init_cfg=None),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64))
